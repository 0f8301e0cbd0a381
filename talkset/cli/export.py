"""``talkset export`` (:mod:`talkset.export`) and ``talkset compact`` (:mod:`talkset.storage.compact`)."""

from __future__ import annotations

import argparse
import json
import re
import sys


def parse_size(text: str) -> int:
    """``"512MB"``, ``"1GiB"``, ``"2e9"`` -> bytes (decimal units KB/MB/GB, binary KiB/MiB/GiB)."""
    m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([KMGT]i?B?|B)?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 512MB, 1GiB, 2e9)")
    unit = (m.group(2) or "B").upper().rstrip("B") or ""
    mult = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}[unit]
    n = int(float(m.group(1)) * mult)
    if n <= 0:
        raise argparse.ArgumentTypeError(f"size must be > 0: {text!r}")
    return n


def _export(args: argparse.Namespace) -> int:
    clip_ids = args.clip or None
    if args.format == "webdataset":
        from talkset.export.webdataset import export_webdataset

        idx = export_webdataset(args.root, args.out, shard_bytes=args.shard_size, clip_ids=clip_ids)
        print(f"wrote {idx['samples']} samples in {len(idx['shards'])} shards to {args.out} "
              f"({sum(s['bytes'] for s in idx['shards']) / 2**20:.1f} MiB); {len(idx['failed'])} clips failed")
        for f in idx["failed"]:
            print(f"  FAILED {f['clip_id']}: {f['error']}", file=sys.stderr)
        return 0
    from talkset.export.mit import export_mit

    s = export_mit(args.root, args.out, clip_ids=clip_ids, max_frames=args.max_frames)
    print(f"wrote {len(s['clips'])} clips ({sum(c['frames'] for c in s['clips'])} frames) to {args.out}; "
          f"data config {s['data_config']}; {len(s['failed'])} clips failed")
    print(f"  {s['audio_embeddings']}")
    for f in s["failed"]:
        print(f"  FAILED {f['clip_id']}: {f['error']}", file=sys.stderr)
    return 0


def _compact(args: argparse.Namespace) -> int:
    from talkset.storage.compact import compact

    results = compact(args.root, log=print)
    failed = [r for r in results if r.status.startswith("failed")]
    print(json.dumps({"sources": len(results), "compacted": sum(r.status == "compacted" for r in results),
                      "already_compact": sum(r.status == "already compact" for r in results), "failed": len(failed),
                      "files_before": sum(r.files_before for r in results),
                      "files_after": sum(r.files_after for r in results)}))
    return 0


def register(sub) -> None:
    e = sub.add_parser("export", help="export a dataset root as WebDataset shards or in the MIT training layout")
    e.add_argument("root", help="dataset root")
    e.add_argument("out", help="output folder")
    e.add_argument("--format", required=True, choices=("webdataset", "mit"))
    e.add_argument("--clip", action="append", help="only this clip id (repeatable)")
    e.add_argument("--shard-size", type=parse_size, default=parse_size("1GiB"),
                   help="webdataset: target bytes per tar shard (default 1GiB)")
    e.add_argument("--max-frames", type=int, default=None, help="mit: at most this many frames per clip")
    e.set_defaults(func=_export)
    c = sub.add_parser("compact", help="rewrite each source's shards into one Parquet file per table (atomic, resumable)")
    c.add_argument("root", help="dataset root")
    c.set_defaults(func=_compact)
