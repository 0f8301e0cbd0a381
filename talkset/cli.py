"""The ``talkset`` console command."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from talkset import commands

    parser = commands.build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
