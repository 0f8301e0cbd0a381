"""Cost of the ``turns`` / ``interactions`` views (talkset.interactions) at MIT's size.

Builds a ``frames`` table of ``--clips`` clips x ``--people`` tracks x ``--frames`` frames (default
2160 x 2 x 750 = 3.24 M rows, MIT's 12 h at 25 fps) with synthetic speaking-score curves (each
person alternates speech and silence, segment lengths exponential with mean 3 s, noise +-0.3), as
one Parquet file plus a ``clips`` file, then times the queries a user runs: the issue's "clips with
>= 3 turns per minute and >= 10 % overlap", every turn, patterns per clip, and a plain ``frames``
aggregate for comparison, all in one run and one process.

    python benchmarks/interactions_scale.py [--clips 2160] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from talkset.interactions import create_views


def build(tmp: Path, clips: int, people: int, frames: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n = clips * people * frames
    score = np.empty(n, np.float32)
    for k in range(clips * people):
        x = np.empty(frames, np.float32)
        i, on = 0, bool(rng.integers(2))
        while i < frames:
            m = max(1, int(rng.exponential(75)))
            x[i:i + m] = 0.6 if on else -0.7
            i += m
            on = not on
        score[k * frames:(k + 1) * frames] = np.clip(x + rng.uniform(-0.3, 0.3, frames), -1, 1)
    clip_ids = np.repeat(np.array([f"c{i:05d}" for i in range(clips)]), people * frames)
    pq.write_table(pa.table({
        "clip_id": clip_ids,
        "track_id": np.tile(np.repeat(np.arange(people, dtype=np.int32), frames), clips),
        "frame_idx": np.tile(np.arange(frames, dtype=np.int32), clips * people),
        "speaking_score": score,
    }), tmp / "frames.parquet", row_group_size=122_880)
    pq.write_table(pa.table({
        "clip_id": [f"c{i:05d}" for i in range(clips)], "source": ["s"] * clips,
        "fps": np.full(clips, 25.0, np.float32), "num_frames": np.full(clips, frames, np.int32),
        "duration_s": np.full(clips, frames / 25.0),
    }), tmp / "clips.parquet")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=2160)
    ap.add_argument("--people", type=int, default=2)
    ap.add_argument("--frames", type=int, default=750)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        t = time.perf_counter()
        build(tmp, args.clips, args.people, args.frames)
        print(f"built {args.clips * args.people * args.frames:,} frames rows in {time.perf_counter() - t:.1f} s")
        con = duckdb.connect()
        con.execute(f"SET threads={args.threads}")
        con.execute(f"CREATE VIEW frames AS SELECT * FROM read_parquet('{tmp / 'frames.parquet'}')")
        con.execute(f"CREATE VIEW clips AS SELECT * FROM read_parquet('{tmp / 'clips.parquet'}')")
        create_views(con)
        queries = {
            "frames: speaking share per person": "SELECT clip_id, track_id, avg((speaking_score > 0)::INT) "
                                                 "FROM frames GROUP BY ALL",
            "turns: count, mean duration": "SELECT count(*), avg(duration_s), sum(backchannel::INT) FROM turns",
            "interactions: >= 3 turns/min and >= 10 % overlap": "SELECT count(*) FROM interactions "
                                                                "WHERE turns_per_min >= 3 AND share_2plus >= 0.10",
            "interactions: clips per pattern": "SELECT pattern, count(*) FROM interactions GROUP BY ALL ORDER BY ALL",
        }
        base = None
        for name, sql in queries.items():
            best = min(_timed(con, sql) for _ in range(3))
            base = base or best
            print(f"{best:6.2f} s  ({best / base:4.1f}x the frames aggregate)  {name}")
        print(con.execute(queries["interactions: clips per pattern"]).fetchall())


def _timed(con, sql: str) -> float:
    t = time.perf_counter()
    con.execute(sql).fetchall()
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
