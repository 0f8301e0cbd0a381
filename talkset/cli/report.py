"""``talkset report ROOT -o report.html`` (:mod:`talkset.report`) and ``talkset interactions ROOT``
(:mod:`talkset.interactions`)."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields

from talkset.interactions import InteractionConfig


def _report(args: argparse.Namespace) -> int:
    from talkset.report import build_report

    try:
        out = build_report(args.root, args.out, thumbnails=args.thumbnails)
    except FileNotFoundError as exc:
        print(f"talkset report: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def _interactions(args: argparse.Namespace) -> int:
    from talkset.cli.collect import format_table
    from talkset.interactions import create_views
    from talkset.storage.catalog import connect

    overrides = {f.name: getattr(args, f.name) for f in fields(InteractionConfig)}
    try:
        cfg = InteractionConfig.from_dict({k: v for k, v in overrides.items() if v is not None}).validate()
        con = connect(args.root)
        create_views(con, cfg)
    except ValueError as exc:
        print(f"talkset interactions: {exc}", file=sys.stderr)
        return 2
    table = "turns" if args.turns else "interactions"
    where, params = ("WHERE clip_id = ?", [args.clip]) if args.clip else ("", [])
    order = "clip_id, turn_idx" if args.turns else "clip_id"
    cur = con.execute(f"SELECT * FROM {table} {where} ORDER BY {order}", params)
    cols = [d[0] for d in cur.description]
    rows = cur.fetchall()
    if args.json:
        print(json.dumps([dict(zip(cols, r)) for r in rows], default=str, indent=1))
    else:
        print(format_table(cols, rows, max_rows=args.max_rows))
    return 0


def register(sub) -> None:
    r = sub.add_parser("report", help="write a self-contained HTML dataset card of a dataset root")
    r.add_argument("root", help="dataset root")
    r.add_argument("-o", "--out", default="report.html", help="output HTML file (default report.html)")
    r.add_argument("--thumbnails", type=int, default=4, help="clips shown as an annotated frame (default 4)")
    r.set_defaults(func=_report)

    i = sub.add_parser("interactions", help="print the interactions (or turns) of a dataset root's clips")
    i.add_argument("root", help="dataset root")
    i.add_argument("--turns", action="store_true", help="print the turns instead of one row per clip")
    i.add_argument("--clip", default=None, help="only this clip_id")
    i.add_argument("--json", action="store_true")
    i.add_argument("--max-rows", type=int, default=50)
    for f in fields(InteractionConfig):
        i.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=float, default=None,
                       help=f"default {f.default} (talkset.interactions.InteractionConfig)")
    i.set_defaults(func=_interactions)
