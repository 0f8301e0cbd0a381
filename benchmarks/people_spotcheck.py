"""Spot-check the people stage: draw its person tracks on a few frames of a shot, to look at.

Runs :class:`talkset.stages.people.PeopleStage` on one shot of a video, then draws every kept track's box
(colour per track id, id and box score) and its 17 body keypoints (score >= 0.5) on ``--frames``
evenly spaced clip frames, tiled into one PNG. Prints the shot decision, the seconds taken and
per-track figures (presence, box size ranges, median keypoint score).

    .venv/bin/python benchmarks/people_spotcheck.py                       # blackjournal two-shot
    .venv/bin/python benchmarks/people_spotcheck.py --start 11.378 --end 31.378 --out runs/ppl.png
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from talkset import env  # noqa: E402

env.configure(threads=1)

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from talkset import media  # noqa: E402
from talkset.items import Clip, Shot, Source, clip_id_for, source_id_for  # noqa: E402
from talkset.stages.people import PeopleStage  # noqa: E402

COLOURS = [(0, 200, 255), (255, 120, 0), (0, 220, 0), (220, 0, 220)]
# COCO body skeleton (keypoint index pairs)
SKELETON = [(5, 7), (7, 9), (6, 8), (8, 10), (5, 6), (5, 11), (6, 12), (11, 12), (11, 13), (13, 15),
            (12, 14), (14, 16), (0, 1), (0, 2), (1, 3), (2, 4)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--video", default=str(REPO.parent / "shared/data/clips/dvscripts_blackjournal.mp4"))
    ap.add_argument("--start", type=float, default=11.378)
    ap.add_argument("--end", type=float, default=73.007)
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--out", default=str(REPO / "runs/people_spotcheck.png"))
    args = ap.parse_args()

    info = media.probe(args.video)
    sid = source_id_for(args.video)
    video = Source(url=args.video, source_id=sid, video_path=args.video, fps=info.fps,
                      width=info.width, height=info.height)
    shot = Shot(sid, 0, round(args.start * info.fps), round(args.end * info.fps), args.start, args.end)
    task = Clip(source=video, shot=shot, clip_id=clip_id_for(sid, 0), clip_fps=25.0)

    stage = PeopleStage()
    stage.setup()
    t0 = time.perf_counter()
    task = stage.process(task)
    dt = time.perf_counter() - t0
    n = int(round((args.end - args.start) * task.clip_fps))
    summary = {
        "video": args.video, "start_s": args.start, "end_s": args.end, "clip_frames": n,
        "seconds": round(dt, 1), "kept": task.shot.kept, "reason": task.shot.reason,
        "num_people": task.shot.num_people, "camera_motion": task.shot.camera_motion, "tracks": [],
    }
    for tr in task.person_tracks:
        b = tr.boxes
        summary["tracks"].append({
            "track_id": tr.track_id, "frames": len(tr), "presence": round(len(tr) / n, 3),
            "box_h_px_min_med_max": np.percentile(b[:, 3] - b[:, 1], [0, 50, 100]).round(1).tolist(),
            "centre_x_px_min_med_max": np.percentile((b[:, 0] + b[:, 2]) / 2, [0, 50, 100]).round(1).tolist(),
            "median_box_score": round(float(np.median(tr.scores)), 3),
            "median_kpt_score": round(float(np.median(tr.body_kpts[:, :, 2])), 3),
        })
    print(json.dumps(summary, indent=1))

    picks = set(np.linspace(0, n - 1, args.frames).round().astype(int).tolist())
    tiles = []
    for k, _t, img in media.iter_frames(args.video, args.start, args.end, fps=task.clip_fps):
        if k not in picks:
            continue
        img = img.copy()
        for tr in task.person_tracks:
            hit = np.nonzero(tr.frame_idx == k)[0]
            if not len(hit):
                continue
            j, c = hit[0], COLOURS[tr.track_id % len(COLOURS)]
            x1, y1, x2, y2 = tr.boxes[j].round().astype(int)
            cv2.rectangle(img, (x1, y1), (x2, y2), c, 2)
            cv2.putText(img, f"id{tr.track_id} {tr.scores[j]:.2f}", (x1 + 3, y1 + 16),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.5, c, 1, cv2.LINE_AA)
            kp = tr.body_kpts[j]
            for a, b in SKELETON:
                if kp[a, 2] >= 0.5 and kp[b, 2] >= 0.5:
                    cv2.line(img, tuple(kp[a, :2].round().astype(int)), tuple(kp[b, :2].round().astype(int)), c, 1)
            for x, y, s in kp:
                if s >= 0.5:
                    cv2.circle(img, (int(round(x)), int(round(y))), 3, c, -1)
        cv2.putText(img, f"clip frame {k}", (5, img.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(img)
    cols = 2
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    grid = np.vstack([np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out), grid)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
