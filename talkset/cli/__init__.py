"""The ``talkset`` console command: one module per group of sub-commands.

``collect`` / ``sql`` (:mod:`talkset.cli.collect`), ``train`` / ``evaluate``
(:mod:`talkset.cli.train`), ``render`` (:mod:`talkset.cli.render`), ``server`` / ``deploy``
(:mod:`talkset.cli.server`). Each module exposes ``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from talkset.cli import collect, render, server, train
    from talkset.cli import report as report_cli  # issue 14: report, interactions

    p = argparse.ArgumentParser(prog="talkset", description="Multi-person talking-video datasets (MIT) and CovOG.")
    sub = p.add_subparsers(dest="command")
    for module in (collect, train, render, server):
        module.register(sub)
    report_cli.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
