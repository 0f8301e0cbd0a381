"""The people stage on real footage with the real YOLO11n-pose weights and ByteTrack.

Figures measured on the full blackjournal two-shot (11.378-73.007 s, 1541 clip frames): two
tracks, each present in 1541/1541 frames; left person box height 264-267 px, centre x 170-174;
right person 263-285 px, centre x 337-367; camera_motion 0.00014 (first 20 s: 0.00017). The
full shot took 129-376 s wall here depending on load, so the unit test runs on its first 20 s.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import clip, shot_task

from talkset import media
from talkset.items import Clip, PersonTrack
from talkset.stages.base import StageError
from talkset.stages.people import PeopleStage, camera_motion

CUT_S = 11.378
BJ_END_S = 73.007


def make_task(path, start_s: float, end_s: float | None, shot_idx: int = 0) -> Clip:
    return shot_task(path, start_s, end_s, shot_idx)


@pytest.fixture(scope="module")
def stage(people_stage) -> PeopleStage:
    return people_stage


@pytest.fixture(scope="module")
def two_shot(stage, blackjournal) -> Clip:
    # first 20 s of the static two-shot (500 clip frames)
    return stage.process(make_task(blackjournal, CUT_S, CUT_S + 20.0, shot_idx=1))


def test_closeup_shot_rejected_for_one_person(stage, blackjournal):
    task = stage.process(make_task(blackjournal, 0.0, CUT_S))
    assert task.shot.kept is False
    assert task.shot.reason == "people=1"
    assert task.shot.num_people == 1
    assert task.person_tracks == []
    assert task.models["people"] == "yolo11n-pose.pt (ultralytics 8.4.190) + bytetrack"


def test_two_shot_kept_with_two_people(stage, two_shot):
    task = two_shot
    n = 500
    assert task.shot.kept is True and task.shot.reason == ""
    assert task.shot.num_people == 2
    assert [t.track_id for t in task.person_tracks] == [0, 1]
    centres = []
    for tr in task.person_tracks:
        assert isinstance(tr, PersonTrack)
        assert tr.frame_idx.dtype == np.int32 and tr.boxes.dtype == np.float32
        assert tr.boxes.shape == (len(tr), 4) and tr.scores.shape == (len(tr),)
        assert tr.body_kpts.shape == (len(tr), 17, 3) and tr.body_kpts.dtype == np.float32
        assert np.all(np.diff(tr.frame_idx) > 0) and tr.frame_idx[0] >= 0 and tr.frame_idx[-1] < n
        assert len(tr) >= 0.95 * n  # both people are in view for the whole shot
        b = tr.boxes
        assert b[:, 0].min() >= 0 and b[:, 1].min() >= 0 and b[:, 2].max() <= 480 and b[:, 3].max() <= 360
        assert np.all(b[:, 2] > b[:, 0]) and np.all(b[:, 3] > b[:, 1])
        h = b[:, 3] - b[:, 1]
        assert 240 <= h.min() and h.max() <= 300  # seated, cut by the frame's bottom edge (measured 263-285)
        assert np.median(tr.scores) > 0.8
        kp = tr.body_kpts
        # keypoints lie in their box (a few px of slack) and shoulders/hips are seen with confidence
        seen = kp[:, :, 2] > 0.5
        assert np.all(kp[:, :, 0][seen] >= b[:, [0]].repeat(17, 1)[seen] - 5)
        assert np.all(kp[:, :, 0][seen] <= b[:, [2]].repeat(17, 1)[seen] + 5)
        assert np.median(kp[:, [0, 5, 6, 11, 12], 2]) > 0.8
        centres.append(float(np.median((b[:, 0] + b[:, 2]) / 2)))
    left, right = centres
    assert left < right
    assert 140 < left < 200 and 320 < right < 390  # measured 172 and 353


def test_static_two_shot_camera_motion_well_below_threshold(stage, two_shot):
    assert two_shot.shot.camera_motion is not None
    assert two_shot.shot.camera_motion < stage.max_camera_motion / 1.5


def test_track_ids_restart_per_shot(stage, blackjournal):
    # two-shot range, then a close-up range, then the two-shot range again with the same actor
    seen = []
    for start in (40.0, 5.0, 40.0):
        raw, n, _meter, hw = stage.track_shot(make_task(blackjournal, start, start + 1.0))
        assert n == 25 and hw == (360, 480)
        # ByteTrack's frame counter and id numbering start again in every shot
        assert stage._model.predictor.trackers[0].frame_id == n
        seen.append(sorted(raw))
    assert seen == [[1, 2], [1], [1, 2]]


def test_one_person_restaurant_rejected(stage):
    task = stage.process(make_task(clip("visualvoice_noisy_restaurant.mp4"), 0.0, None))
    assert task.shot.kept is False
    assert task.shot.reason == "people=1"
    assert task.person_tracks == []
    assert task.shot.camera_motion is not None and task.shot.camera_motion < stage.max_camera_motion / 3


def test_synthetic_pan_rejected_for_camera_motion(stage, blackjournal, tmp_path):
    # a 400x300 window moving right at 12 px/s across the static two-shot: both people stay in view
    pan = tmp_path / "pan.mp4"
    media.run_ffmpeg(["-ss", "12", "-i", str(blackjournal), "-t", "6", "-vf", "crop=400:300:x='t*12':y=30",
                      "-an", "-pix_fmt", "yuv420p", str(pan)], "synthetic pan")
    task = stage.process(make_task(pan, 0.0, None))
    assert task.shot.num_people == 2
    assert task.shot.kept is False
    assert task.shot.reason.startswith("camera_motion=")
    assert task.shot.camera_motion > stage.max_camera_motion
    assert task.shot.reason == f"camera_motion={task.shot.camera_motion:.4f}"
    assert task.person_tracks == []


def test_synthetic_zoom_measured_above_threshold(tmp_path):
    src = clip("visualvoice_noisy_restaurant.mp4")
    static = camera_motion(str(src), 0.0, 4.0)
    zoom = tmp_path / "zoom.mp4"
    media.run_ffmpeg(["-i", str(src), "-t", "4", "-vf",
                      "zoompan=z='1+0.04*in_time':d=1:x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':s=1280x720:fps=25",
                      "-an", "-pix_fmt", "yuv420p", str(zoom)], "synthetic zoom")
    zoomed = camera_motion(str(zoom))
    limit = PeopleStage.max_camera_motion
    assert static is not None and static < limit / 3
    assert zoomed is not None and zoomed > limit


def test_empty_shot_and_missing_video_are_stage_errors(stage, blackjournal):
    with pytest.raises(StageError, match="no frames decoded"):
        stage.process(make_task(blackjournal, 20.0, 20.0))
    with pytest.raises(StageError, match="after the end"):
        stage.process(make_task(blackjournal, 80.0, 81.0))
    task = make_task(blackjournal, 20.0, 21.0)
    task.source.video_path = None
    with pytest.raises(StageError, match="no video_path"):
        stage.process(task)


# Every shot of the shared clips as the shots stage finds them (ContentDetector defaults; the
# too_short ones left out), first 3 s of each: the sparse filter (filter_fps) must decide as the
# full-rate one does. The full shots are compared by benchmarks/throughput.py --filter-only.
SHARED_SHOTS = [
    ("dvscripts_blackjournal.mp4", 0.0, CUT_S),
    ("dvscripts_blackjournal.mp4", CUT_S, BJ_END_S),
    ("visualvoice_interview.mp4", 0.0, 17.52),
    ("visualvoice_noisy_restaurant.mp4", 0.0, 8.96),
    ("clearervoice_tse_001.avi", 0.0, 8.04),
    ("psd_testvideo.mp4", 1.001, 6.006),
    ("psd_testvideo.mp4", 6.006, 13.146),
    ("psd_testvideo.mp4", 13.146, 24.024),
    ("psd_goldeneye-vfr-drop3.mp4", 0.0, 3.754),
    ("psd_goldeneye-vfr-drop3.mp4", 3.754, 8.759),
]


def test_sparse_filter_decides_as_the_full_rate_one(stage):
    assert stage.sparse_step(25.0) == 10  # 2.5 frames per second, the camera-motion frames included
    decisions = []
    for i, (name, start, end) in enumerate(SHARED_SHOTS):
        task = make_task(clip(name), start, min(end, start + 3.0), shot_idx=i)
        full = stage.decide(*stage.track_shot(task), task).shot
        sparse = stage.decide(*stage.track_shot(task, stage.sparse_step(25.0)), task).shot
        assert (sparse.kept, sparse.reason.split("=")[0], sparse.num_people) == (
            full.kept, full.reason.split("=")[0], full.num_people), (name, start, full, sparse)
        decisions.append((full.kept, full.num_people))
    # the set is not trivial: kept two-shots and rejected one-person / empty shots
    assert (True, 2) in decisions and (False, 1) in decisions and (False, 0) in decisions


def test_rejected_shot_keeps_its_reason_and_skips_full_rate_tracking(stage, blackjournal):
    task = make_task(blackjournal, 0.0, 4.0)
    res = stage.process(task)
    assert res.shot.kept is False and res.shot.reason == "people=1" and res.person_tracks == []
    assert res.shot.num_people == 1 and res.shot.camera_motion is not None
    # ByteTrack saw one sparse pass over 10 of the 100 frames and no full-rate pass after it
    assert stage._model.predictor.trackers[0].frame_id == 10


def test_batched_yolo_tracks_equal_frame_by_frame(blackjournal):
    task = make_task(blackjournal, 40.0, 41.0)
    raws = []
    for batch in (1, 8):
        s = PeopleStage(batch=batch)
        s.setup()
        raw, n, _meter, _hw = s.track_shot(task)
        assert n == 25
        raws.append(raw)
    assert sorted(raws[0]) == sorted(raws[1]) == [1, 2]
    for tid, d in raws[0].items():
        assert d["frame_idx"] == raws[1][tid]["frame_idx"]
        np.testing.assert_allclose(np.asarray(d["boxes"]), np.asarray(raws[1][tid]["boxes"]), atol=0.01)


def test_onnxruntime_gives_the_torch_tracks_and_runs_each_frame_once(blackjournal):
    """The CPU path (YOLO in ONNX Runtime, frames two at a time): the tracks of PyTorch within
    0.01 px; the sparse pass's frames are kept, so a kept shot runs the network once per frame and
    its tracks are exactly those of a full-rate pass alone."""
    task = make_task(blackjournal, 40.0, 42.0)  # the two-shot: kept, 50 clip frames
    ref = PeopleStage(runtime="torch").process(task)
    fast = PeopleStage()  # runtime "auto": ONNX Runtime on this CPU machine
    fast.setup()
    assert fast._ort is not None and fast.resources.cpus == 2
    before = fast._ort.runs
    got = fast.process(task)
    assert fast._ort.runs - before == 50  # 5 sparse frames run once, not again in the full-rate pass
    alone = PeopleStage(filter_fps=None).process(task)
    assert ref.shot.kept and got.shot.kept and alone.shot.kept
    assert len(ref.person_tracks) == len(got.person_tracks) == len(alone.person_tracks) == 2
    for r, g, a in zip(ref.person_tracks, got.person_tracks, alone.person_tracks):
        assert np.array_equal(r.frame_idx, g.frame_idx) and len(g.frame_idx) == 50
        np.testing.assert_allclose(g.boxes, r.boxes, atol=0.01)
        np.testing.assert_allclose(g.body_kpts[..., :2], r.body_kpts[..., :2], atol=0.01)
        assert np.array_equal(g.frame_idx, a.frame_idx) and np.array_equal(g.boxes, a.boxes)
        assert np.array_equal(g.body_kpts, a.body_kpts)


def test_actor_cpus_follow_the_threads():
    from talkset.stages.pose import PoseStage

    assert PeopleStage().resources.cpus == 2 and PeopleStage(threads=1).resources.cpus == 1
    assert PeopleStage(runtime="torch").resources.cpus == 1  # the threads are ONNX Runtime's
    assert PoseStage().resources.cpus == 2 and PoseStage(track_threads=1).resources.cpus == 1
    assert PoseStage(backend="onnx").resources.cpus == 1  # batches crops instead
    assert PeopleStage.resources.cpus == 1  # the class default is untouched
    for bad in (dict(runtime="tensorrt"), dict(threads=0)):
        with pytest.raises(ValueError):
            PeopleStage(**bad)
    with pytest.raises(ValueError):
        PoseStage(track_threads=0)
