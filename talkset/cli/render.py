"""``talkset render``: a clip with boxes, skeletons and speaking-score curves (:mod:`talkset.render`)."""

from __future__ import annotations

import argparse

from talkset.render import render


def _cmd(args: argparse.Namespace) -> int:
    out = render(args.root, args.clip_id, args.out, max_frames=args.max_frames)
    print(f"wrote {out}")
    return 0


def register(sub) -> None:
    r = sub.add_parser("render", help="draw boxes, skeletons and speaking-score curves of a clip to a video")
    r.add_argument("clip_id")
    r.add_argument("out", help="output .mp4")
    r.add_argument("--root", required=True, help="dataset root")
    r.add_argument("--max-frames", type=int, default=None)
    r.set_defaults(func=_cmd)
