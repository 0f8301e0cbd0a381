"""The ``talkset`` console command: one module per group of sub-commands.

``collect`` / ``sql`` (:mod:`talkset.cli.collect`), ``train`` / ``evaluate``
(:mod:`talkset.cli.train`), ``render`` (:mod:`talkset.cli.render`), ``server`` / ``deploy``
(:mod:`talkset.cli.server`), ``export`` / ``compact`` (:mod:`talkset.cli.export`), ``report`` / ``interactions``
(:mod:`talkset.cli.report`). Each module exposes
``register(subparsers)``.
"""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    from talkset.cli import collect, export, render, report, server, train

    p = argparse.ArgumentParser(prog="talkset", description="Multi-person talking-video datasets (MIT) and CovOG.")
    sub = p.add_subparsers(dest="command")
    for module in (collect, train, render, server, export, report):
        module.register(sub)
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
