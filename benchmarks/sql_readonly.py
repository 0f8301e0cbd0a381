"""What the locked, root-confined ``talkset sql`` connection costs (issue 12 §1; goal: within 10 %).

    python benchmarks/sql_readonly.py                      # a synthetic root written through DatasetRoot
    python benchmarks/sql_readonly.py --root demo-root     # a collected root
    python benchmarks/sql_readonly.py --clips 400 --reps 21

The README's queries, each timed two ways, alternating unlocked / locked so load on a shared machine
falls on both alike (medians of ``--reps``, of wall time and of the process's CPU time: DuckDB's
threads run in this process, and CPU time is the less disturbed by other jobs on a shared machine):

- ``call``: one ``talkset sql`` call as the CLI makes it. Unlocked is the code before issue 12
  (``catalog.connect`` + a statement-type check + execute + fetch); locked is
  :func:`talkset.storage.catalog.query` (``connect_locked``: the views, the DuckDB settings, the
  statement filter, then execute + fetch).
- ``execute``: the query alone on an open connection (``connect`` vs ``connect_locked``), to see
  whether ``enable_external_access=false`` / ``allowed_directories`` slow the Parquet scans.

The synthetic root (``--clips`` clips of ``--frames`` frames and ``--people`` people over
``--sources`` sources) is written through :class:`talkset.storage.root.DatasetRoot`, in the layout a
collect writes: one ``frames`` and one ``clips`` shard per clip, one ``shots`` shard per source. Speaking
scores are a seeded random walk in [-1, 1]; boxes and 17 body keypoints are random but typed as the
schema says. Prints per-query medians and ratios, then the geometric mean ratio of each way.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np
import pyarrow as pa

from talkset.storage import schema as S
from talkset.storage.catalog import connect, connect_locked, query
from talkset.storage.root import DatasetRoot

# the README's queries (scripts/demo.sh) plus a listing of clips and a join
QUERIES = {
    "shots listing": "SELECT source, shot_idx, round(start_s, 3) AS start_s, round(end_s, 3) AS end_s, kept, reason, "
    "num_people, round(camera_motion, 5) AS camera_motion FROM shots ORDER BY source, shot_idx",
    "per-track frames": "SELECT clip_id, track_id, count(*) AS frames, round(avg(box[3] - box[1]), 1) AS mean_box_w, "
    "count(face_track_id) AS face_frames, round(avg(speaking_score), 3) AS mean_speaking, "
    "count(*) FILTER (WHERE speaking_score > 0) / 25.0 AS speaking_s FROM frames GROUP BY ALL ORDER BY ALL",
    "who speaks at once": "SELECT round(avg((n >= 2)::INT), 3) AS two_at_once, round(avg((n = 1)::INT), 3) AS one, "
    "round(avg((n = 0)::INT), 3) AS nobody FROM (SELECT clip_id, frame_idx, "
    "count(*) FILTER (WHERE speaking_score > 0) AS n FROM frames GROUP BY ALL)",
    "clips listing": "SELECT clip_id, round(end_s - start_s, 2) AS seconds, num_people, num_frames, width, height "
    "FROM clips ORDER BY clip_id",
    "speaking time per person": "SELECT f.clip_id, f.track_id, count(*) FILTER (WHERE f.speaking_score > 0) / "
    "any_value(c.fps) AS speaking_s FROM frames f JOIN clips c USING (clip_id) GROUP BY ALL "
    "ORDER BY speaking_s DESC, f.clip_id, f.track_id LIMIT 20",
}


def _lists(values, size: int) -> pa.ListArray:
    """Consecutive runs of ``size`` values as a list array (list<float32>, list<list<float32>>)."""
    values = pa.array(values) if isinstance(values, np.ndarray) else values
    return pa.ListArray.from_arrays(pa.array(np.arange(0, len(values) + 1, size, dtype=np.int32)), values)


def build_root(path: Path, sources: int, clips: int, frames: int, people: int, seed: int = 0) -> DatasetRoot:
    rng = np.random.default_rng(seed)
    root = DatasetRoot(path)
    root.make_dirs()
    now = datetime.now(UTC)
    per_source = max(1, clips // sources)
    for s in range(sources):
        sid = f"src{s:03d}"
        shots = []
        for k in range(per_source):
            cid = f"{sid}-s{k:04d}"
            n = frames * people
            walk = np.clip(np.cumsum(rng.normal(0, 0.2, n)), -1, 1).astype(np.float32)
            x1 = rng.uniform(0, 400, n).astype(np.float32)
            boxes = np.stack([x1, x1 * 0 + 20, x1 + 120, x1 * 0 + 340], 1)
            kp = rng.uniform(0, 480, (n, 17, 3)).astype(np.float32)
            tbl = pa.table({
                "clip_id": pa.array([cid] * n),
                "track_id": pa.array(np.repeat(np.arange(people, dtype=np.int32), frames)),
                "frame_idx": pa.array(np.tile(np.arange(frames, dtype=np.int32), people)),
                "time_s": pa.array(np.tile(np.arange(frames) / 25.0, people)),
                "box": _lists(boxes.ravel(), 4),
                "box_score": pa.array(rng.uniform(0.5, 1, n).astype(np.float32)),
                "body_keypoints": _lists(_lists(kp.ravel(), 3), 17),
                "face_track_id": pa.array(np.repeat(np.arange(people, dtype=np.int32), frames)),
                "speaking_score": pa.array(walk),
            })
            full = pa.table({name: tbl.column(name) if name in tbl.column_names else pa.nulls(n, typ)
                             for name, typ in zip(S.FRAMES.names, S.FRAMES.types)}, schema=S.FRAMES)
            clip = {"clip_id": cid, "url": f"/data/{sid}.mp4", "shot_idx": k, "start_s": 10.0 * k,
                    "end_s": 10.0 * k + frames / 25, "duration_s": frames / 25, "fps": 25.0, "num_frames": frames,
                    "width": 480, "height": 360, "num_people": people, "camera_motion": 0.001, "run_id": "bench",
                    "created_at": now}
            root.commit_clip(sid, cid, clip, full)
            shots.append({"shot_idx": k, "start_frame": 250 * k, "end_frame": 250 * k + frames, "start_s": 10.0 * k,
                          "end_s": 10.0 * k + frames / 25, "kept": True, "reason": "", "num_people": people,
                          "camera_motion": 0.001, "clip_id": cid, "run_id": "bench"})
        root.write_shard("shots", sid, "shots", shots)
    return root


def unlocked_call(root: Path, sql: str):
    """``talkset sql`` before issue 12: the views, a statement-type check, execute, fetch."""
    con = connect(root)
    stmts = con.extract_statements(sql)
    if len(stmts) != 1 or stmts[0].type.name not in {"SELECT", "EXPLAIN", "PRAGMA"}:
        raise ValueError(sql)
    cur = con.execute(sql)
    out = [d[0] for d in cur.description], cur.fetchall()
    con.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", help="a collected root (default: build a synthetic one in a temporary folder)")
    ap.add_argument("--sources", type=int, default=8)
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--frames", type=int, default=250, help="frames per clip (10 s at 25 fps)")
    ap.add_argument("--people", type=int, default=3)
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--keep", action="store_true", help="keep the synthetic root")
    args = ap.parse_args()

    work = None
    if args.root:
        root = Path(args.root)
    else:
        work = Path(tempfile.mkdtemp(prefix="talkset-sqlbench-"))
        t0 = time.perf_counter()
        root = build_root(work / "root", args.sources, args.clips, args.frames, args.people).root
        print(f"built {root} in {time.perf_counter() - t0:.1f} s")
    droot = DatasetRoot(root)
    print(f"root: {droot.count_rows('frames')} frames rows, {droot.count_rows('clips')} clips, "
          f"{droot.count_rows('shots')} shots; {platform.node()} {os.cpu_count()} CPUs; reps {args.reps}")

    results = {(way, clock): [] for way in ("call", "execute") for clock in ("wall", "cpu")}
    print(f"\n{'query':26} {'way':8} {'unlocked s':>11} {'locked s':>10} {'ratio':>7} {'cpu ratio':>10}")
    con_u, con_l = connect(root), connect_locked(root)
    for name, sql in QUERIES.items():
        assert unlocked_call(root, sql) == query(root, sql), name  # same answer both ways
        times = {(way, clock): ([], []) for way, clock in results}
        for _ in range(args.reps):
            for locked in (False, True):
                for way in ("call", "execute"):
                    t, c = time.perf_counter(), time.process_time()
                    if way == "call":
                        query(root, sql) if locked else unlocked_call(root, sql)
                    else:
                        (con_l if locked else con_u).execute(sql).fetchall()
                    times[way, "wall"][locked].append(time.perf_counter() - t)
                    times[way, "cpu"][locked].append(time.process_time() - c)
        for way in ("call", "execute"):
            row = []
            for clock in ("wall", "cpu"):
                u, lk = (statistics.median(x) for x in times[way, clock])
                results[way, clock].append(lk / u)
                row.append((u, lk, lk / u))
            (wu, wl, wr), (_, _, cr) = row
            print(f"{name:26} {way:8} {wu:11.4f} {wl:10.4f} {wr:7.3f} {cr:10.3f}")
    print()
    for (way, clock), ratios in results.items():
        gm = math.exp(statistics.fmean(math.log(r) for r in ratios))
        print(f"{way:8} {clock:4} time, locked / unlocked (medians of {args.reps}): geometric mean over queries "
              f"{gm:.3f}, worst {max(ratios):.3f} ({'within' if gm <= 1.10 else 'over'} the 10 % goal)")
    if work and not args.keep:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
