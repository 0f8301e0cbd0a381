"""Shard writer and DuckDB catalog: atomic commits, no duplicates, read-only SQL."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from talkset.items import Alignment, Clip, PersonTrack, Shot, Source, clip_id_for, source_id_for
from talkset.stages.write import WriteStage, frames_table
from talkset.storage.catalog import ReadOnlyError, connect, query
from talkset.storage.root import TMP_PREFIX, DatasetRoot, read_table


def _task(root, shot_idx=1, n=5, with_annotations=False) -> Clip:
    sid = source_id_for("/data/interview.mp4")
    video = Source(url="/data/interview.mp4", source_id=sid, video_path=str(root / "videos" / "x.mp4"))
    shot = Shot(sid, shot_idx, 341, 2188, 11.378, 73.0, kept=True, num_people=2, camera_motion=0.001)
    tracks = []
    for tid in range(2):
        fi = np.arange(n, dtype=np.int32) + tid  # track 1 starts one frame later
        boxes = np.stack([np.array([10 + 200 * tid, 20, 150 + 200 * tid, 340], np.float32)] * n)
        kp = np.zeros((n, 17, 3), np.float32)
        kp[:, :, 0] = 50 + tid
        kp[:, :, 2] = 0.9
        tracks.append(PersonTrack(tid, fi, boxes, np.full(n, 0.8, np.float32), kp))
    task = Clip(source=video, shot=shot, clip_id=clip_id_for(sid, shot_idx), clip_fps=25.0, person_tracks=tracks,
                    video_path=str(root / "clips" / "c.mp4"), audio_path=str(root / "clips" / "c.wav"),
                    width=480, height=360, num_frames=n + 1)
    if with_annotations:
        score = np.linspace(-1, 1, n).astype(np.float32)
        score[0] = np.nan
        fb = np.tile(np.array([30, 30, 60, 70], np.float32), (n, 1))
        fb[1] = np.nan
        kp133 = np.random.default_rng(0).random((n, 133, 3)).astype(np.float32)
        task.alignment = Alignment(columns={0: {
            "keypoints": kp133, "keypoints_59": kp133[:, :59], "face_box": fb,
            "face_track_id": np.array([-1] + [3] * (n - 1), np.int32), "speaking_score": score,
            "asd_logit_talkset": score * 2, "asd_logit_ava": score * 3, "vad_prob": np.abs(score)}})
    return task


def test_frames_table_columns_and_nulls(tmp_path):
    task = _task(tmp_path, with_annotations=True)
    t = frames_table(task).to_pylist()
    assert len(t) == 10
    r0 = [r for r in t if r["track_id"] == 0]
    r1 = [r for r in t if r["track_id"] == 1]
    assert [r["frame_idx"] for r in r1] == [1, 2, 3, 4, 5]
    assert r1[0]["time_s"] == pytest.approx(1 / 25)
    assert r0[0]["box"] == [10, 20, 150, 340]
    assert len(r0[0]["body_keypoints"]) == 17 and r0[0]["body_keypoints"][3] == pytest.approx([50, 0, 0.9])
    assert len(r0[2]["keypoints"]) == 133 and len(r0[2]["keypoints_59"]) == 59
    # NaN and -1 become nulls, present values survive
    assert r0[0]["speaking_score"] is None and r0[0]["face_track_id"] is None
    assert r0[1]["face_box"] is None and r0[2]["face_box"] == [30, 30, 60, 70]
    assert r0[4]["speaking_score"] == pytest.approx(1.0)
    # a person without annotations has nulls, not made-up values
    assert all(r["speaking_score"] is None and r["keypoints"] is None for r in r1)


def test_commit_is_atomic_and_rerun_adds_no_duplicates(tmp_path):
    root = DatasetRoot(tmp_path)
    root.make_dirs()
    task = _task(tmp_path)
    stage = WriteStage(root=str(tmp_path), run_id="r1")
    stage.process(task)
    stage.process(task)  # a re-run of the same clip overwrites
    con = connect(tmp_path)
    assert con.execute("SELECT count(*) FROM clips").fetchone()[0] == 1
    assert con.execute("SELECT count(*) FROM frames").fetchone()[0] == 10
    src = con.execute("SELECT DISTINCT source FROM frames").fetchall()
    assert src == [(task.source.source_id,)]
    meta = pq.read_schema(root.shard_path("frames", task.source.source_id, task.clip_id)).metadata
    assert b"talkset.models" in meta and b"talkset.run_id" in meta
    # a crash after the frames shard but before the clips shard: frames invisible, then a stray tmp
    task2 = _task(tmp_path, shot_idx=2)
    root.write_shard("frames", task2.source.source_id, task2.clip_id, frames_table(task2))
    (root.table_dir("clips", task2.source.source_id) / f"{TMP_PREFIX}dead-{task2.clip_id}.parquet.partial").write_bytes(b"half")
    con = connect(tmp_path)
    assert con.execute("SELECT count(DISTINCT clip_id) FROM frames").fetchone()[0] == 1
    assert con.execute("SELECT count(*) FROM frames_all").fetchone()[0] == 20
    assert root.remove_stray_tmp() == 1
    stage.process(task2)
    con = connect(tmp_path)
    assert con.execute("SELECT count(*) FROM frames").fetchone()[0] == 20
    assert read_table(tmp_path, "clips").num_rows == 2


def test_failures_keyed_by_item(tmp_path):
    root = DatasetRoot(tmp_path)
    root.write_failure("s1", "download", "http://127.0.0.1:9/x.mp4", "HTTP 404", "r1")
    root.write_failure("s1", "download", "http://127.0.0.1:9/x.mp4", "HTTP 404 again", "r2")
    root.write_failure("s1", "clip", "s1-s0002", "ffmpeg failed", "r2")
    rows = connect(tmp_path).execute("SELECT stage, error FROM failures ORDER BY stage").fetchall()
    assert rows == [("clip", "ffmpeg failed"), ("download", "HTTP 404 again")]
    root.clear_failures("s1", "clip")
    assert connect(tmp_path).execute("SELECT count(*) FROM failures").fetchone()[0] == 1


def test_empty_root_has_views_and_sql_is_read_only(tmp_path):
    con = connect(tmp_path)
    for t in ("clips", "frames", "shots", "failures"):
        assert con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] == 0
    cols = [d[0] for d in con.execute("SELECT * FROM frames LIMIT 0").description]
    assert {"clip_id", "track_id", "frame_idx", "box", "keypoints", "speaking_score", "source"} <= set(cols)
    cols, rows = query(tmp_path, "SELECT 1 AS one")
    assert cols == ["one"] and rows == [(1,)]
    for bad in ("CREATE TABLE x AS SELECT 1", "COPY (SELECT 1) TO '/tmp/x.csv'", "DROP VIEW clips",
                "SELECT 1; SELECT 2"):
        with pytest.raises(ReadOnlyError):
            query(tmp_path, bad)


def test_source_id_stable_and_safe():
    a = source_id_for("https://example.org/videos/Black Journal (1970).mp4?x=1")
    assert a == source_id_for("https://example.org/videos/Black Journal (1970).mp4?x=1")
    assert a.startswith("Black_Journal_1970-") and "/" not in a and "=" not in a
    assert source_id_for("/a/x.mp4") != source_id_for("/b/x.mp4")


def test_frames_without_pose_are_null(tmp_path):
    task = _task(tmp_path, with_annotations=True)
    kp = task.alignment.columns[0]["keypoints"]
    kp[2] = np.nan
    rows = [r for r in frames_table(task).to_pylist() if r["track_id"] == 0]
    assert rows[2]["keypoints"] is None and rows[1]["keypoints"] is not None
