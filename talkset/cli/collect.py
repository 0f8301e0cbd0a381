"""``talkset collect`` and ``talkset sql``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _collect(args: argparse.Namespace) -> int:
    from talkset.config import CollectConfig

    overrides = {}
    if getattr(args, "preset", None):
        from talkset.config import preset

        overrides.update(preset(args.preset))
    if args.config:
        import yaml

        overrides.update(yaml.safe_load(Path(args.config).read_text()) or {})
    for key in ("detector", "threshold", "min_shot_s", "min_people", "max_people", "pose_backend", "pose_model"):
        val = getattr(args, key, None)
        if val is not None:
            overrides[key] = val
    if args.no_annotate:
        overrides["annotate"] = False
    if args.concurrency:
        overrides["concurrency"] = {k: int(v) for k, v in (c.split("=") for c in args.concurrency)}
    CollectConfig.from_dict({**overrides, "root": args.root})  # validate before starting anything
    from talkset.flows.collect import collect
    from talkset.sources import read_sources

    sources = read_sources(args.sources, args.sources_file)
    if not sources:
        print("talkset collect: no sources given (pass URLs/paths or --sources-file FILE)", file=sys.stderr)
        return 2
    summary = collect(sources=sources, root=args.root, config=overrides, ray_address=args.ray_address)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    return 0


def _sql(args: argparse.Namespace) -> int:
    import duckdb

    from talkset.storage.catalog import ReadOnlyError, query

    try:
        cols, rows = query(args.root, args.query)
    except ReadOnlyError as exc:
        msg = str(exc)
        print(msg if msg.startswith("talkset sql") else f"talkset sql: {msg}", file=sys.stderr)
        return 2
    except (duckdb.Error, OSError) as exc:  # a missing column, an unreadable shard: show it plainly
        print(f"talkset sql: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(json.dumps([dict(zip(cols, r)) for r in rows], default=str, indent=1))
    elif args.format == "csv":
        import csv

        w = csv.writer(sys.stdout)
        w.writerow(cols)
        w.writerows(rows)
    else:
        print(format_table(cols, rows, max_rows=args.max_rows))
    return 0


def format_table(cols: list[str], rows: list[tuple], max_rows: int = 50) -> str:
    """A plain text table (what the README shows)."""

    def cell(v):
        if isinstance(v, float):
            return f"{v:.4g}"
        s = str(v)
        return s if len(s) <= 60 else s[:57] + "..."

    shown = [[cell(v) for v in r] for r in rows[:max_rows]]
    widths = [max([len(c)] + [len(r[i]) for r in shown]) for i, c in enumerate(cols)]
    out = [" | ".join(c.ljust(w) for c, w in zip(cols, widths)), "-+-".join("-" * w for w in widths)]
    out += [" | ".join(v.ljust(w) for v, w in zip(r, widths)) for r in shown]
    if len(rows) > max_rows:
        out.append(f"... {len(rows) - max_rows} more rows")
    out.append(f"({len(rows)} rows)")
    return "\n".join(out)


def register(sub) -> None:
    c = sub.add_parser("collect", help="run the collection flow on sources (URLs or local paths)")
    c.add_argument("sources", nargs="*", help="URLs (yt-dlp) or local video paths")
    c.add_argument("--sources-file", help="file with one source per line")
    c.add_argument("--root", required=True, help="dataset root (created if missing)")
    c.add_argument("--config", help="YAML file of CollectConfig fields")
    c.add_argument("--ray-address", default=None, help="Ray cluster address (default: $RAY_ADDRESS or a local Ray)")
    c.add_argument("--preset", choices=["mit"], help="CollectConfig preset (talkset/config.py PRESETS), before --config")
    c.add_argument("--detector", choices=["content", "adaptive", "transnetv2"])
    c.add_argument("--threshold", type=float)
    c.add_argument("--min-shot-s", type=float)
    c.add_argument("--min-people", type=int)
    c.add_argument("--max-people", type=int)
    c.add_argument("--pose-backend", choices=["mediapipe", "onnx", "mmpose"])
    c.add_argument("--pose-model", help="ONNX / mmpose checkpoint for those pose backends")
    c.add_argument("--no-annotate", action="store_true", help="skip pose / faces / speaking score")
    c.add_argument("--concurrency", nargs="*", metavar="STAGE=N", help="actors per stage, e.g. people=2 pose=4")
    c.add_argument("--json", action="store_true", help="print the run summary as JSON")
    c.set_defaults(func=_collect)

    s = sub.add_parser(
        "sql",
        help="run one read-only SELECT over a dataset root's tables (DuckDB, confined to ROOT/tables)",
        description="One SELECT (or EXPLAIN [ANALYZE] of one) over the views clips, frames, shots, failures "
        "(and splits / eval when present). DuckDB is confined to ROOT/tables with its configuration locked; "
        "anything that writes, changes a setting, loads an extension or reads another path exits 2.",
    )
    s.add_argument("query")
    s.add_argument("--root", required=True)
    s.add_argument("--format", choices=["table", "csv", "json"], default="table")
    s.add_argument("--max-rows", type=int, default=50)
    s.set_defaults(func=_sql)
