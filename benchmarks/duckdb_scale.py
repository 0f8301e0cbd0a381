"""DuckDB at MIT's size: a ~3.2M-row ``frames`` table (12 h at 25 fps, 3 people) built by
replicating real rows of a collected root, in talkset's own layout, then the README queries timed
before and after ``talkset compact`` (:mod:`talkset.storage.compact`) in the same run.

    python benchmarks/duckdb_scale.py --src-root demo-root        # replicate that root's rows
    python benchmarks/duckdb_scale.py                             # collect 2 shared clips first

Layout written (a temporary root, removed at the end unless ``--keep``): one ``frames`` and one
``clips`` shard per clip, ``shots`` one shard per source, hive-partitioned by source, exactly as
:class:`talkset.storage.root.DatasetRoot` writes them. Each synthetic clip is ``--clip-s`` seconds of a
real clip's rows (a track's rows are cycled to the clip length), with a third person copied from
one of the real tracks. Speaking scores come from the real rows; when the source root has none
(collected without annotation) they are drawn from a seeded random walk in [-1, 1] and the output
says so. The 133-keypoint (and 59-keypoint) columns are the real rows' (the source root must have
them: it is an error otherwise; from 4 s of the blackjournal two-shot they made 1.2 GB of shards,
344 MiB compacted); ``--no-wholebody`` writes them as nulls, as this benchmark did before issue 14.

Then the whole root is compacted (one file per table and source) and the same queries are timed
again; both tables are printed (wall-clock min and median of ``--repeats`` runs, and the process's
CPU time, min, which a loaded machine disturbs less), with the compaction's own time and the file counts.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from talkset import env  # noqa: E402

env.configure(threads=1)
os.environ.setdefault("TALKSET_WEIGHTS", str(REPO.parent / "shared" / "weights"))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402

# the README's queries (scripts/demo.sh) and two speaking queries over the same views
QUERIES = {
    "shots listing": "SELECT source, shot_idx, round(start_s,3) AS start_s, round(end_s,3) AS end_s, kept, reason "
    "FROM shots ORDER BY source, shot_idx",
    "clips listing": "SELECT clip_id, round(end_s-start_s,2) AS seconds, num_people, num_frames, width, height FROM clips",
    "per-track frames + mean speaking": "SELECT clip_id, track_id, count(*) AS frames, round(avg(box[3]-box[1]),1) AS mean_box_w, "
    "round(avg(speaking_score),3) AS mean_speaking FROM frames GROUP BY ALL ORDER BY ALL",
    "share of frames with 2+ speaking": "SELECT avg((n >= 2)::INT) AS share FROM (SELECT clip_id, frame_idx, "
    "count(*) FILTER (WHERE speaking_score > 0) AS n FROM frames GROUP BY ALL)",
    "speaking time per person": "SELECT f.clip_id, f.track_id, count(*) FILTER (WHERE f.speaking_score > 0) / any_value(c.fps) "
    "AS speaking_s FROM frames f JOIN clips c USING (clip_id) GROUP BY ALL ORDER BY speaking_s DESC LIMIT 20",
    # README "Interaction patterns" (talkset.interactions): the turns / interactions views over frames
    "interactions (README)": "SELECT clip_id FROM interactions WHERE turns_per_min >= 3 AND share_2plus >= 0.10",
}


def collect_source_root(work: Path) -> Path:
    from talkset.flows.collect import collect

    clips = REPO.parent / "shared" / "data" / "clips"
    root = work / "src-root"
    collect(sources=[str(clips / "clearervoice_tse_001.avi"), str(clips / "visualvoice_interview.mp4")],
            root=str(root), run_id="duckdb-src")
    return root


def build(src_root: Path, dst: Path, hours: float, fps: float, people: int, clip_s: float, clips_per_source: int,
          wholebody: bool, seed: int = 0) -> dict:
    from talkset.storage import schema as S
    from talkset.storage.root import DatasetRoot, read_table

    frames = read_table(src_root, "frames")
    clips = read_table(src_root, "clips")
    committed = set(clips.column("clip_id").to_pylist())
    frames = frames.filter(pc.is_in(frames.column("clip_id"), pa.array(sorted(committed))))
    if frames.num_rows == 0:
        raise SystemExit(f"{src_root}: no committed frames to replicate")
    has_speaking = frames.column("speaking_score").null_count < frames.num_rows
    if wholebody and frames.column("keypoints").null_count == frames.num_rows:
        raise SystemExit(f"{src_root}: the keypoints column is all null (collected without the pose stage); "
                         "collect with pose, or pass --no-wholebody")
    per_clip = int(round(clip_s * fps))
    n_clips = int(round(hours * 3600 / clip_s))
    frames = frames.drop_columns(["source"])
    if not wholebody:
        frames = frames.set_column(frames.schema.get_field_index("keypoints"), "keypoints", pa.nulls(frames.num_rows, S.KPTS))
        frames = frames.set_column(frames.schema.get_field_index("keypoints_59"), "keypoints_59", pa.nulls(frames.num_rows, S.KPTS))

    # one template per real clip: `people` tracks x `per_clip` frames, as row indices into `frames`
    templates = []
    ids = np.asarray(frames.column("clip_id").to_pylist())
    tids = frames.column("track_id").to_numpy()
    fidx = frames.column("frame_idx").to_numpy()
    clip_rows = {r["clip_id"]: r for r in clips.to_pylist()}
    for cid in sorted(committed):
        tracks = sorted(set(tids[ids == cid]))
        if not tracks:
            continue
        take, track_col = [], []
        for p in range(people):
            t = tracks[p % len(tracks)]
            rows = np.flatnonzero((ids == cid) & (tids == t))
            rows = rows[np.argsort(fidx[rows])]
            take.append(rows[np.arange(per_clip) % len(rows)])
            track_col.append(np.full(per_clip, p, dtype=np.int32))
        tbl = frames.take(pa.array(np.concatenate(take)))
        tbl = tbl.set_column(tbl.schema.get_field_index("track_id"), "track_id", pa.array(np.concatenate(track_col)))
        fi = np.tile(np.arange(per_clip, dtype=np.int32), people)
        tbl = tbl.set_column(tbl.schema.get_field_index("frame_idx"), "frame_idx", pa.array(fi))
        tbl = tbl.set_column(tbl.schema.get_field_index("time_s"), "time_s", pa.array(fi / fps))
        templates.append((cid, tbl))

    root = DatasetRoot(dst)
    root.make_dirs()
    rng = np.random.default_rng(seed)
    n_rows = 0
    t0 = time.perf_counter()
    shots_rows: list[dict] = []
    for i in range(n_clips):
        src_cid, tbl = templates[i % len(templates)]
        source = f"scale-src{i // clips_per_source:04d}"
        shot_idx = i % clips_per_source
        clip_id = f"{source}-s{shot_idx:04d}"
        tbl = tbl.set_column(0, "clip_id", pa.array([clip_id] * tbl.num_rows, pa.string()))
        if not has_speaking:  # a random walk per person, clipped to [-1, 1]
            walk = np.clip(np.cumsum(rng.normal(0, 0.15, tbl.num_rows).reshape(people, per_clip), axis=1), -1, 1)
            tbl = tbl.set_column(tbl.schema.get_field_index("speaking_score"), "speaking_score",
                                 pa.array(walk.reshape(-1).astype(np.float32)))
        row = dict(clip_rows[src_cid])
        row.pop("source", None)
        start = shot_idx * clip_s
        row.update(clip_id=clip_id, shot_idx=shot_idx, start_s=start, end_s=start + clip_s, duration_s=clip_s,
                   num_frames=per_clip, num_people=people, run_id="duckdb-scale")
        root.commit_clip(source, clip_id, row, tbl, {"run_id": "duckdb-scale", "replicated_from": src_cid})
        shots_rows.append({"shot_idx": shot_idx, "start_frame": int(start * fps), "end_frame": int((start + clip_s) * fps),
                           "start_s": start, "end_s": start + clip_s, "kept": True, "reason": "", "num_people": people,
                           "camera_motion": row.get("camera_motion"), "clip_id": clip_id, "run_id": "duckdb-scale"})
        if shot_idx == clips_per_source - 1 or i == n_clips - 1:
            root.write_shard("shots", source, "shots", shots_rows)
            shots_rows = []
        n_rows += tbl.num_rows
    size = sum(p.stat().st_size for p in Path(dst).rglob("*.parquet"))
    return {"rows": n_rows, "clips": n_clips, "sources": -(-n_clips // clips_per_source), "templates": len(templates),
            "write_s": time.perf_counter() - t0, "bytes": size, "speaking_from": "real rows" if has_speaking else "random walk"}


def time_queries(root: Path, repeats: int) -> list[tuple[str, float, float, float, int]]:
    """``(name, wall min s, wall median s, process CPU min s, rows)`` for connecting, a count and each
    query of :data:`QUERIES`, ``repeats`` times each (connect: a new connection each time)."""
    from talkset.storage.catalog import connect

    def timed(fn):
        walls, cpus = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            out = fn()
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        return min(walls), statistics.median(walls), min(cpus), out

    out = []
    lo, med, cpu, con = timed(lambda: connect(root))
    out.append(("connect (create views)", lo, med, cpu, 0))
    con.execute("SET enable_progress_bar = false")
    lo, med, cpu, n = timed(lambda: con.execute("SELECT count(*) FROM frames").fetchone()[0])
    out.append(("count(*) FROM frames", lo, med, cpu, n))
    for name, q in QUERIES.items():
        lo, med, cpu, rows = timed(lambda q=q: con.execute(q).fetchall())
        out.append((name, lo, med, cpu, len(rows)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src-root", help="a collected dataset root whose rows are replicated (default: collect 2 shared clips)")
    ap.add_argument("--hours", type=float, default=12.0)
    ap.add_argument("--fps", type=float, default=25.0)
    ap.add_argument("--people", type=int, default=3)
    ap.add_argument("--clip-s", type=float, default=15.0, help="seconds per synthetic clip")
    ap.add_argument("--clips-per-source", type=int, default=10)
    ap.add_argument("--no-wholebody", dest="wholebody", action="store_false",
                    help="write the 133- and 59-keypoint columns as nulls (default: the real rows')")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--keep", help="write the big root here and keep it")
    args = ap.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="talkset-duckdb-"))
    try:
        src = Path(args.src_root) if args.src_root else collect_source_root(work)
        dst = Path(args.keep) if args.keep else work / "big-root"
        info = build(src, dst, args.hours, args.fps, args.people, args.clip_s, args.clips_per_source, args.wholebody)
        import duckdb

        print(f"machine: {platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
              f"duckdb {duckdb.__version__}, pyarrow {pa.__version__}")
        print(f"built: {info['rows']:,} frames rows = {args.hours:g} h x {args.fps:g} fps x {args.people} people, "
              f"{info['clips']} clips in {info['sources']} sources, from {info['templates']} real clips of {src}; "
              f"speaking scores from {info['speaking_from']}; {info['bytes'] / 2**20:.0f} MiB of Parquet "
              f"({2 * info['clips'] + info['sources']} shards), written in {info['write_s']:.0f} s")
        before = time_queries(dst, args.repeats)
        from talkset.storage.compact import compact

        n_before = sum(1 for _ in (dst / "tables").rglob("*.parquet"))
        t0 = time.perf_counter()
        results = compact(dst)
        compact_s = time.perf_counter() - t0
        n_after = sum(1 for _ in (dst / "tables").rglob("*.parquet"))
        size = sum(p.stat().st_size for p in (dst / "tables").rglob("*.parquet"))
        print(f"compact: {len(results)} sources, {n_before} -> {n_after} Parquet files, {size / 2**20:.0f} MiB, "
              f"{compact_s:.0f} s")
        after = time_queries(dst, args.repeats)
        print(f"load average now {os.getloadavg()[0]:.1f}")
        print(f"\n{'query':36} {'before min s':>12} {'median s':>9} {'CPU s':>7} {'after min s':>12} {'median s':>9} "
              f"{'CPU s':>7} {'rows':>9}")
        for (name, lo, med, cpu, n), (_, lo2, med2, cpu2, n2) in zip(before, after):
            assert n == n2, (name, n, n2)
            print(f"{name:36} {lo:12.3f} {med:9.3f} {cpu:7.3f} {lo2:12.3f} {med2:9.3f} {cpu2:7.3f} {n:9,}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
