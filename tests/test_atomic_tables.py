"""Every table is written through the dataset root's one atomic writer; a crash between the write and
the rename leaves nothing the catalog reads (issue 12 §4).

How the crash is made: the real writer of each table runs in a child Python process whose
``os.replace`` is wrapped so that, on the N-th rename of a ``.parquet`` shard, the process sends
itself ``SIGKILL`` (the temporary file is then fully written and not yet renamed: the narrowest
window a real crash can hit). The writers are the ones the flows call: ``DatasetRoot.commit_clip``
(``frames`` then ``clips``: killed at either rename), ``DatasetRoot.write_shard("shots", ...)`` as
``flows.collect`` calls it, ``DatasetRoot.write_failure``, ``training.splits.make_splits`` and
``flows.evaluate._write_rows`` and ``training.audio_features.AudioFeatureStore.get`` (log-mel
features of a 0.2 s WAV written for the test). After the kill the child's exit is ``-SIGKILL``, a
``.tmp-*.parquet.partial`` file is left beside the shards, every committed shard is byte-identical,
the catalog views (plain and locked) return exactly the rows they returned before, DuckDB's own
``**/*.parquet`` glob does not list the partial file, ``remove_stray_tmp`` removes it and the same
write re-run without the kill commits. A second test makes the rename fail (``OSError(ENOSPC)``)
in-process: the writer raises, no temporary file is left, the views are unchanged.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_sql_security import write_small_root

from talkset.storage import schema as S
from talkset.storage.catalog import connect, query
from talkset.storage.root import TMP_PREFIX, TMP_SUFFIX, DatasetRoot

REPO = Path(__file__).resolve().parent.parent

T1 = datetime(2026, 12, 8, tzinfo=UTC)


# The writes, as the flows make them: run in the child (killed) and here (the resumed run).
def new_clip(root):
    cid = "s1-s0009"
    frames = [{"clip_id": cid, "track_id": t, "frame_idx": f, "time_s": f / 25, "speaking_score": 0.5}
              for t in range(2) for f in range(7)]
    clip = {"clip_id": cid, "shot_idx": 9, "start_s": 9.0, "end_s": 9.28, "fps": 25.0, "num_frames": 7,
            "num_people": 2, "run_id": "r2", "created_at": T1}
    DatasetRoot(root).commit_clip("s1", cid, clip, frames, {"run_id": "r2"})


def shots(root):  # as talkset.flows.collect writes a source's shots (one shard, overwritten by a re-run)
    rows = [{"shot_idx": 0, "start_frame": 0, "end_frame": 5, "start_s": 0.0, "end_s": 0.2, "kept": False,
             "reason": "re-run", "num_people": 0, "camera_motion": 0.0, "clip_id": None, "run_id": "r2"}]
    DatasetRoot(root).write_shard("shots", "s1", "shots", rows, {"run_id": "r2", "source": "/data/s1.mp4"})


def failures(root):
    DatasetRoot(root).write_failure("s2", "clip", "s2-s0001", "ffmpeg failed", "r2")


def splits(root):
    from talkset.training.splits import make_splits

    make_splits(root, seed=1, easy_frac=0.5)


def evals(root):
    from talkset.flows.evaluate import _write_rows

    rows = [{"clip_id": c, "source": c.rsplit("-", 1)[0], "split": "test_easy", "ssim": 0.9, "psnr": 30.0,
             "frames": 5, "checkpoint": "runs/y", "step": 2, "eval_id": "e2", "created_at": T1}
            for c in ("s1-s0001", "s2-s0001")]
    _write_rows(Path(root), "e2", rows)


def audio_features(root):  # as CovOG training stores a clip's features at its first cache miss
    import wave

    import numpy as np

    from talkset.training.audio_features import LOGMEL, AudioFeatureStore

    wav = Path(root) / "audio" / "s2-s0001.wav"
    wav.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(wav), "wb") as w:  # 0.2 s of a 16 kHz tone, 16-bit mono
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes((np.sin(np.arange(3200) / 5.0) * 9000).astype("<i2").tobytes())
    store = AudioFeatureStore(root, LOGMEL, layers=2, dim=8)
    store.get("s2-s0001", {"source": "s2", "audio_path": "audio/s2-s0001.wav"}, num_frames=5)


WRITES = {"clip": new_clip, "shots": shots, "failures": failures, "splits": splits, "eval": evals,
          "audio_features": audio_features}

# The child: this module's writer, with os.replace wrapped to SIGKILL the process at the kill_at-th shard rename.
CHILD = r"""
import os, signal, sys
from pathlib import Path
tests, root, case, kill_at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
sys.path.insert(0, tests)
from test_atomic_tables import WRITES
_replace, _n = os.replace, [0]


def replace(src, dst, *a, **k):
    if str(dst).endswith(".parquet"):
        _n[0] += 1
        if _n[0] == kill_at:
            assert Path(src).is_file() and Path(src).stat().st_size > 0
            os.kill(os.getpid(), signal.SIGKILL)
    return _replace(src, dst, *a, **k)


os.replace = replace
WRITES[case](root)
print("finished without a kill", flush=True)
"""

# (case, the rename that is killed, the table whose shard the killed rename commits)
CRASHES = [("clip", 1, "frames"), ("clip", 2, "clips"), ("shots", 1, "shots"), ("failures", 1, "failures"),
           ("splits", 1, "splits"), ("eval", 1, "eval"), ("audio_features", 1, "audio_features")]
VIEWS = ("clips", "frames", "frames_all", "shots", "failures", "splits", "eval")


def _state(root: Path) -> dict:
    """Every view's rows (sorted) and every file a catalog glob matches, with its hash."""
    con = connect(root)
    rows = {v: sorted(map(repr, con.execute(f"SELECT * FROM {v}").fetchall())) for v in VIEWS}
    files = {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest()
             for p in (root / "tables").rglob("*.parquet")}
    return {"rows": rows, "files": files}


def _partials(root: Path) -> list[Path]:
    return sorted((root / "tables").rglob(f"{TMP_PREFIX}*"))


@pytest.fixture
def root(tmp_path) -> Path:
    return write_small_root(tmp_path / "root").root


@pytest.mark.parametrize("case,kill_at,table", CRASHES, ids=[f"{c}-rename{k}-{t}" for c, k, t in CRASHES])
def test_sigkill_between_write_and_rename_leaves_nothing_read(root, case, kill_at, table):
    before = _state(root)
    r = subprocess.run([sys.executable, "-c", CHILD, str(REPO / "tests"), str(root), case, str(kill_at)], check=False,
                       capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)},
                       cwd=str(root.parent))
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stdout, r.stderr[-2000:])
    partial = _partials(root)
    assert len(partial) == 1 and partial[0].name.endswith(TMP_SUFFIX), partial
    assert partial[0].is_relative_to(root / "tables" / table)
    after = _state(root)
    if (case, kill_at) == ("clip", 2):  # the frames shard was committed, the clip was not: frames stays hidden
        assert set(after["files"]) - set(before["files"]) == {"tables/frames/source=s1/s1-s0009.parquet"}
        assert len(after["rows"]["frames_all"]) == len(before["rows"]["frames_all"]) + 14
        before["rows"].pop("frames_all"), after["rows"].pop("frames_all")
        after["files"].pop("tables/frames/source=s1/s1-s0009.parquet")
    assert after == before
    # DuckDB's glob (what the views read) does not see the partial file; the locked connection queries
    listed = query(root, f"SELECT file FROM glob('{root}/tables/**/*.parquet')")[1]
    assert listed and not [f for (f,) in listed if TMP_PREFIX in f or f.endswith(TMP_SUFFIX)]
    if table in VIEWS:  # audio_features is no catalog view (binary features): its files are compared above
        assert query(root, f"SELECT count(*) FROM {table}")[1] == [(len(before["rows"][table]),)]
    # a resumed run cleans up and commits the same write
    assert DatasetRoot(root).remove_stray_tmp() == 1 and not _partials(root)
    WRITES[case](root)
    done = _state(root)
    if table in VIEWS:
        assert done["rows"][table] != before["rows"][table]
    else:
        assert len([f for f in done["files"] if f.startswith(f"tables/{table}/")]) == \
            len([f for f in before["files"] if f.startswith(f"tables/{table}/")]) + 1
    assert set(S.SCHEMAS) <= {Path(f).parts[1] for f in done["files"]}


@pytest.mark.parametrize("case", sorted(WRITES))
def test_failed_rename_raises_and_leaves_no_temporary_file(root, case, monkeypatch):
    before = _state(root)

    def no_space(src, dst, *a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(OSError, match=re.escape(os.strerror(errno.ENOSPC))):
        WRITES[case](root)
    monkeypatch.undo()
    assert not _partials(root)
    assert _state(root) == before


def test_no_table_is_written_outside_the_storage_package():
    """Flows, stages and training write tables only through ``DatasetRoot.write_shard``: no direct
    Parquet writer outside ``talkset/storage`` (where the one writer lives)."""
    writers = re.compile(r"\bwrite_table\(|\.to_parquet\(|\bwrite_parquet\(|\bwrite_to_dataset\(|\bwrite_dataset\(|"
                         r"[\"']\s*COPY\b[^\n]*\bTO\b")  # a SQL string that starts with COPY
    # not a table: the WebDataset export writes each sample's frames.parquet member into memory, for a tar
    in_memory = {"talkset/export/webdataset.py": "pq.write_table(tbl, buf, "}
    offenders = [f"{p.relative_to(REPO)}:{i}" for p in (REPO / "talkset").rglob("*.py")
                 if "storage" not in p.relative_to(REPO / "talkset").parts[:1]
                 for i, line in enumerate(p.read_text().splitlines(), 1) if writers.search(line)
                 and in_memory.get(str(p.relative_to(REPO))) not in line]
    assert offenders == []
