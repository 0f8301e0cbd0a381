"""``talkset compact``: one file per table and source, same rows, resume and failure keys intact,
and a process killed between any two steps loses and duplicates nothing (talkset.storage.compact).

Built on the README demo root (session fixture ``blackjournal_root``): its real clip is committed
again under three more clip ids (one of them in a second source), with failures, a ``frames``
shard of a clip that was never committed, and one shard in an older schema (without the issue-11
columns), so compaction has several shards per table to merge.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from talkset.storage import schema as S
from talkset.storage.catalog import connect
from talkset.storage.compact import COMPACTED, JOURNAL_DIR, compact, recover
from talkset.storage.root import DatasetRoot, read_table

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo_root(request) -> Path:
    """The collected demo root; ``TALKSET_TEST_ROOT`` may name an already collected root of the
    same clip (a copy is used) to iterate without collecting again."""
    given = os.environ.get("TALKSET_TEST_ROOT")
    if given:
        return Path(given)
    root, _summary = request.getfixturevalue("blackjournal_root")
    return Path(root)


def _build_multi(demo: Path, dst: Path) -> Path:
    shutil.copytree(demo, dst, symlinks=True)
    root = DatasetRoot(dst)
    clips = read_table(dst, "clips").to_pylist()
    assert clips, "the demo root has no committed clip"
    clip = clips[0]
    src = clip.pop("source")
    frames = read_table(dst, "frames")
    frames = frames.filter(pc.equal(frames.column("clip_id"), clip["clip_id"])).drop_columns(["source"])
    other = "second-source-00000000"
    for i, source in ((7, src), (8, src), (9, other)):
        cid = f"{source}-s{i:04d}"
        tbl = frames.set_column(0, "clip_id", pa.array([cid] * frames.num_rows, pa.string()))
        root.commit_clip(source, cid, {**clip, "clip_id": cid, "shot_idx": i}, tbl, {"run_id": f"replica-{i}"})
    # an older shard: the issue-11 columns missing (as before that schema change)
    old = root.shard_path("frames", src, f"{src}-s0008")
    t = pq.read_table(old)
    pq.write_table(t.drop_columns(["lip_aperture", "lip_sync", "asd_vad_score"]), old)
    # a frames shard whose clip was never committed (crash between the two shards)
    orphan = frames.slice(0, 10)
    orphan = orphan.set_column(0, "clip_id", pa.array([f"{src}-s0042"] * 10, pa.string()))
    root.write_shard("frames", src, f"{src}-s0042", orphan)
    root.write_failure(src, "people", f"{src}-s0003", "boom", "r1")
    root.write_failure(src, "pose", f"{src}-s0004", "bad pose", "r1")
    root.write_failure(other, "clip", f"{other}-s0001", "no audio", "r1")
    root.write_shard("shots", other, "shots", [{"shot_idx": 9, "start_frame": 0, "end_frame": 10, "start_s": 0.0,
                                                "end_s": 0.4, "kept": True, "reason": "", "clip_id": f"{other}-s0009"}])
    return dst


@pytest.fixture
def multi_root(demo_root, tmp_path) -> Path:
    return _build_multi(demo_root, tmp_path / "root")


def _snapshot(root: Path) -> dict:
    """Everything a query or a resume sees, in a comparable form."""
    con = connect(root)
    out = {
        "clips": con.execute("SELECT * EXCLUDE (created_at) FROM clips ORDER BY clip_id").fetchall(),
        "frames_per_clip": con.execute("SELECT source, clip_id, count(*), count(DISTINCT (track_id, frame_idx)), "
                                       "sum(speaking_score), sum(box[1]), sum(keypoints[10][2]), count(lip_aperture) "
                                       "FROM frames GROUP BY ALL ORDER BY ALL").fetchall(),
        "frames_all": con.execute("SELECT count(*) FROM frames_all").fetchone()[0],
        "failures": con.execute("SELECT source, stage, item, error FROM failures ORDER BY ALL").fetchall(),
        "shots": con.execute("SELECT * FROM shots ORDER BY ALL").fetchall(),
    }
    droot = DatasetRoot(root)
    for source in ("second-source-00000000", *{r[0] for r in out["frames_per_clip"]}):
        out[f"resume:{source}"] = (sorted(droot.committed_clip_ids(source)), droot.source_complete(source))
    return out


def _frames_sorted(root: Path) -> pa.Table:
    t = read_table(root, "frames")
    return t.sort_by([("source", "ascending"), ("clip_id", "ascending"), ("track_id", "ascending"),
                      ("frame_idx", "ascending")])


def _files(root: Path, table: str) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / "tables" / table).rglob("*") if p.is_file())


def test_compact_keeps_rows_resume_and_failure_keys(demo_root, multi_root):
    before = _snapshot(multi_root)
    frames_before = _frames_sorted(multi_root)
    n_clips, n_fail = DatasetRoot(demo_root).count_rows("clips"), DatasetRoot(demo_root).count_rows("failures")
    assert len(before["clips"]) == n_clips + 3 and len(before["failures"]) == n_fail + 3
    assert before["frames_all"] == sum(r[2] for r in before["frames_per_clip"]) + 10  # + the orphan shard
    src = next(r[0] for r in before["frames_per_clip"] if r[0] != "second-source-00000000")

    results = compact(multi_root)
    assert {r.status for r in results} == {"compacted"} and {src, "second-source-00000000"} <= {r.source for r in results}
    assert _snapshot(multi_root) == before
    after = _frames_sorted(multi_root)
    assert after.equals(frames_before)  # every value of every column, the 133 keypoints included
    # one file per table and source; the orphan frames shard stays (not committed, not visible)
    src_dir = f"source={src}"
    n_sources = len(results)
    assert _files(multi_root, "clips") == sorted(f"tables/clips/source={r.source}/{COMPACTED}.parquet" for r in results)
    assert f"tables/frames/{src_dir}/{src}-s0042.parquet" in _files(multi_root, "frames")
    assert len(_files(multi_root, "frames")) == n_sources + 1 and len(_files(multi_root, "failures")) == n_sources
    meta = pq.ParquetFile(multi_root / "tables" / "frames" / src_dir / f"{COMPACTED}.parquet").schema_arrow.metadata
    assert b"talkset.compacted_parts" in meta and b"replica-7" in meta[b"talkset.compacted_parts"]

    # resume reads the compacted manifest
    droot = DatasetRoot(multi_root)
    assert droot.clip_committed(src, f"{src}-s0007") and not droot.clip_committed(src, f"{src}-s0042")
    row = droot.committed_clip_row(src, f"{src}-s0008")
    assert row["clip_id"] == f"{src}-s0008" and row["shot_idx"] == 8
    assert droot.committed_clip_row(src, f"{src}-s0042") is None

    # failure keys: the same (stage, item) overwrites, never duplicates; clearing a stage works
    droot.write_failure(src, "people", f"{src}-s0003", "boom again", "r2")
    q = "SELECT stage, item, error FROM failures WHERE source = ? AND item IN (?, ?) ORDER BY ALL"
    fails = connect(multi_root).execute(q, [src, f"{src}-s0003", f"{src}-s0004"]).fetchall()
    assert fails == [("people", f"{src}-s0003", "boom again"), ("pose", f"{src}-s0004", "bad pose")]
    droot.clear_failures(src, "pose")
    assert connect(multi_root).execute("SELECT count(*) FROM failures WHERE source = ? AND stage = 'pose'",
                                       [src]).fetchone()[0] == 0
    assert connect(multi_root).execute(q, [src, f"{src}-s0003", f"{src}-s0004"]).fetchall() == fails[:1]

    # a clip committed after compaction is resumed too, and the next compact folds it in
    extra = frames_before.filter(pc.equal(frames_before.column("clip_id"), f"{src}-s0007")).drop_columns(["source"])
    extra = extra.set_column(0, "clip_id", pa.array([f"{src}-s0011"] * extra.num_rows, pa.string()))
    droot.commit_clip(src, f"{src}-s0011", {**dict(zip(S.CLIPS.names, [None] * 17)), "clip_id": f"{src}-s0011",
                                            "num_people": 2}, extra)
    assert f"{src}-s0011" in droot.committed_clip_ids(src)
    n = connect(multi_root).execute("SELECT count(*) FROM frames").fetchone()[0]
    results = compact(multi_root)
    assert {r.source: r.status for r in results} == {r.source: "compacted" if r.source == src else "already compact"
                                                     for r in results}
    assert connect(multi_root).execute("SELECT count(*), count(DISTINCT (clip_id, track_id, frame_idx)) FROM frames"
                                       ).fetchone() == (n, n)
    assert len(_files(multi_root, "clips")) == n_sources


def test_compact_bad_shard_is_a_failure_row_and_others_go_on(multi_root):
    broken_dir = next(p.name for p in (multi_root / "tables" / "clips").iterdir() if "second-source" not in p.name)
    bad = multi_root / "tables" / "frames" / broken_dir / f"{broken_dir.split('=', 1)[1]}-s0007.parquet"
    bad.write_bytes(b"not parquet")
    lines = []
    results = {r.source: r.status for r in compact(multi_root, log=lines.append)}
    good, broken = "second-source-00000000", broken_dir.split("=", 1)[1]
    assert results[good] == "compacted"
    assert results[broken].startswith("failed:") and bad.name in results[broken]
    assert any(x.startswith(f"{broken}: failed:") for x in lines)
    # (the catalog cannot open the broken shard itself; read the failures table directly)
    fails = [(r["item"], r["error"]) for r in read_table(multi_root, "failures").to_pylist() if r["stage"] == "compact"]
    assert len(fails) == 1 and fails[0][0] == broken and bad.name in fails[0][1]
    assert bad.exists() and len(list(bad.parent.glob("*.parquet"))) > 1  # left as it was


KILL = textwrap.dedent("""
    import os, signal, sys
    from talkset.storage.compact import compact_source
    from talkset.storage.root import DatasetRoot
    root, part, at = sys.argv[1], sys.argv[2], sys.argv[3]
    def step(name):
        if name == at:
            os.kill(os.getpid(), signal.SIGKILL)
    compact_source(DatasetRoot(root), part, step)
    print("finished without reaching", at)
""")
STEPS = ["hidden:clips", "hidden:frames", "hidden:failures", "journal", "replace:clips", "unlink:clips",
         "replace:frames", "unlink:frames", "replace:failures", "unlink:failures"]


def test_a_concurrent_recover_never_costs_rows(multi_root):
    """A ``collect`` starting while a source is being compacted runs recovery, which deletes the
    compaction's hidden files: that compaction must then give up without unlinking anything, also
    when an earlier compacted file of the same name exists."""
    from talkset.storage.compact import CompactError, compact_source

    compact(multi_root)
    droot = DatasetRoot(multi_root)
    part = next(p.name for p in (multi_root / "tables" / "clips").iterdir() if "second-source" not in p.name)
    src = part.split("=", 1)[1]
    frames = read_table(multi_root, "frames")
    extra = frames.filter(pc.equal(frames.column("clip_id"), f"{src}-s0007")).drop_columns(["source"])
    extra = extra.set_column(0, "clip_id", pa.array([f"{src}-s0012"] * extra.num_rows, pa.string()))
    droot.commit_clip(src, f"{src}-s0012", {"clip_id": f"{src}-s0012", "num_people": 2}, extra)
    before = _snapshot(multi_root)

    def step(name):
        if name == "hidden:failures":
            droot.remove_stray_tmp()

    with pytest.raises(CompactError, match="vanished"):
        compact_source(droot, part, step)
    assert _snapshot(multi_root) == before and not list((multi_root / JOURNAL_DIR).glob("*.json"))
    compact(multi_root)
    assert _snapshot(multi_root) == before


def test_compact_command(multi_root, capsys):
    from talkset.cli import main

    assert main(["compact", str(multi_root)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["failed"] == 0 and summary["compacted"] == summary["sources"] >= 2
    assert summary["files_after"] == 3 * summary["sources"]  # clips, frames, failures per source
    assert main(["compact", str(multi_root)]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["already_compact"] == summary["sources"]


def test_kill_between_steps_loses_and_duplicates_nothing(demo_root, tmp_path):
    base = _build_multi(demo_root, tmp_path / "base")
    before = _snapshot(base)
    frames_before = _frames_sorted(base)
    part = next(p.name for p in (base / "tables" / "frames").iterdir() if "second-source" not in p.name)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for at in STEPS:
        root = tmp_path / f"kill-{at.replace(':', '-')}"
        shutil.copytree(base, root, symlinks=True)
        proc = subprocess.run([sys.executable, "-c", KILL, str(root), part, at], env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        assert proc.returncode == -9, (at, proc.returncode, proc.stdout, proc.stderr)
        journal = root / JOURNAL_DIR / f"{part}.json"
        assert journal.exists() == (not at.startswith("hidden:")), at
        if at.startswith("hidden:"):  # before the commit point nothing visible has changed
            assert _snapshot(root) == before, at
        DatasetRoot(root).remove_stray_tmp()  # what the next collect does first
        assert not journal.exists() and not list((root / "tables").rglob(".compact-*")), at
        assert _snapshot(root) == before, at
        assert _frames_sorted(root).equals(frames_before), at
        compact(root)  # and a later compaction completes
        assert _snapshot(root) == before, at
        assert recover(root) == {"rolled_forward": 0, "removed": 0}


# the README / benchmarks/duckdb_scale.py queries, and the interaction views over them
QUERIES = [
    "SELECT source, shot_idx, start_s, end_s, kept, reason FROM shots ORDER BY ALL",
    "SELECT clip_id, end_s - start_s, num_people, num_frames, width, height FROM clips ORDER BY ALL",
    "SELECT clip_id, track_id, count(*), avg(box[3] - box[1]), avg(speaking_score) FROM frames GROUP BY ALL ORDER BY ALL",
    ("SELECT avg((n >= 2)::INT) FROM (SELECT clip_id, frame_idx, count(*) FILTER (WHERE speaking_score > 0) AS n "
     "FROM frames GROUP BY ALL)"),
    ("SELECT f.clip_id, f.track_id, count(*) FILTER (WHERE f.speaking_score > 0) / any_value(c.fps) FROM frames f "
     "JOIN clips c USING (clip_id) GROUP BY ALL ORDER BY ALL"),
    "SELECT * FROM turns ORDER BY ALL",
    "SELECT * FROM interactions ORDER BY ALL",
    "SELECT source, stage, item, error FROM failures ORDER BY ALL",
    "SELECT count(*), count(keypoints), sum(keypoints[10][2]), count(lip_aperture) FROM frames_all",
]


def _answers(con) -> list:
    return [con.execute(q).fetchall() for q in QUERIES]


def _reference(root: Path):
    """The views as the catalog made them before the schema manifest: ``union_by_name=true`` globs."""
    import duckdb

    from talkset.interactions import create_views

    con = duckdb.connect()
    for table in S.TABLES:
        glob = str(DatasetRoot(root).root / "tables" / table / "**" / "*.parquet")
        con.execute(f"CREATE VIEW {'frames_all' if table == 'frames' else table} AS SELECT * FROM "
                    f"read_parquet('{glob}', hive_partitioning=true, union_by_name=true)")
    con.execute("CREATE VIEW frames AS SELECT * FROM frames_all WHERE clip_id IN (SELECT clip_id FROM clips)")
    create_views(con)
    return con


def test_views_bind_by_position_only_when_the_files_agree(multi_root):
    """``union_by_name=false`` (connect 0.06 s instead of 0.37 s at MIT's size, compact_manifest)
    only where every file has the same columns; the answers equal the ``union_by_name=true`` views'
    before and after compaction, for a shard added later, and on a connection opened before."""
    from talkset.storage.catalog import view_sources
    from talkset.storage.compact_manifest import MANIFEST

    def by_name(root):
        return {t: "union_by_name=true" in v for t, v in view_sources(root).items()}

    # the older-schema frames shard forces union_by_name on frames; the other tables agree
    assert by_name(multi_root) == {"clips": False, "frames": True, "shots": False, "failures": False}
    reference = _answers(_reference(multi_root))
    assert reference[3][0][0] > 0 and len(reference[6]) == len(reference[1])  # 2+ speakers somewhere; every clip
    assert _answers(connect(multi_root)) == reference

    def split(con):  # the frames view skips the semi-join for compacted files
        return "UNION ALL" in con.execute("SELECT sql FROM duckdb_views() WHERE view_name = 'frames'").fetchone()[0]

    old_con = connect(multi_root)
    assert not split(old_con)
    compact(multi_root)
    assert split(connect(multi_root))
    manifest = json.loads((multi_root / MANIFEST).read_text())
    assert set(manifest["files"]) == {str(p.relative_to(multi_root)) for p in (multi_root / "tables").rglob("*.parquet")}
    # compacted files all have the schema's columns; the orphan frames shard (uncommitted) too
    assert by_name(multi_root) == {"clips": False, "frames": False, "shots": False, "failures": False}
    assert _answers(connect(multi_root)) == reference
    assert _answers(old_con) == reference  # the globs of a connection opened before see the new files

    # a clip committed after compaction (same schema): read by position, visible, same as the reference
    droot = DatasetRoot(multi_root)
    src = next(r.source for r in compact(multi_root) if r.source != "second-source-00000000")
    frames = read_table(multi_root, "frames")
    extra = frames.filter(pc.equal(frames.column("clip_id"), f"{src}-s0007")).drop_columns(["source"])
    extra = extra.set_column(0, "clip_id", pa.array([f"{src}-s0013"] * extra.num_rows, pa.string()))
    droot.commit_clip(src, f"{src}-s0013", {"clip_id": f"{src}-s0013", "num_people": 2, "fps": 25.0,
                                            "num_frames": 101, "duration_s": 4.04}, extra)
    droot.write_failure(src, "people", f"{src}-s0003", "boom again", "r3")  # rewrites the compacted file
    assert by_name(multi_root) == {"clips": False, "frames": False, "shots": False, "failures": False}
    reference = _answers(_reference(multi_root))
    assert f"{src}-s0013" in {r[0] for r in reference[1]} and len(reference[6]) == len(reference[1])
    assert _answers(connect(multi_root)) == reference == _answers(old_con)

    # a shard in an older schema (a column missing): that table goes back to union_by_name, nulls there
    old = droot.shard_path("frames", src, f"{src}-s0013")
    pq.write_table(pq.read_table(old).drop_columns(["lip_aperture"]), old)
    assert by_name(multi_root)["frames"] and not by_name(multi_root)["clips"]
    reference = _answers(_reference(multi_root))
    assert _answers(connect(multi_root)) == reference
