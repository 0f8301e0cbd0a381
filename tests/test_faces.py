"""faces stage on real footage: YuNet detections linked into face tracks.

Measured on these 4 s cuts (100 frames at 25 fps) when the test was written:
- visualvoice_interview.mp4 2-6 s (1280x720 split screen): 2 face tracks, each 100 frames, all
  detected; widths 170-199 px, heights 214-288 px; centres x ~396 (anchor) and ~888 (boxer).
- dvscripts_blackjournal.mp4 20-24 s (480x360 two-shot): 2 face tracks, 100 frames each. The
  guest (right, frontal, looking down) is detected in 86/100 frames at score >= 0.8 (0.79-0.91),
  the other 14 filled by interpolation; width 33-43 px, height 36-48 px. The interviewer (left,
  face in profile / 3/4 from behind) is detected in all 100 frames (scores 0.80-0.84); his box is
  31-39 x 55-66 px (it takes in the glasses and back of the head).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import clip

from talkset.items import Clip, Shot, Source
from talkset.media import run_ffmpeg
from talkset.stages.base import StageError
from talkset.stages.faces import FacesStage, box_iou, fill_track, link_face_tracks
from talkset.weights import WeightsNotFound


def cut(src: Path, start: float, dur: float, out: Path) -> Path:
    run_ffmpeg(
        ["-ss", f"{start}", "-i", str(src), "-t", f"{dur}", "-r", "25", "-c:v", "libx264",
         "-preset", "veryfast", "-crf", "18", "-an", str(out)],
        f"cut {src.name}",
    )
    return out


def clip_task(path: Path, width: int, height: int, n: int = 100) -> Clip:
    v = Source(url=str(path), source_id=path.stem, video_path=str(path))
    shot = Shot(source_id=path.stem, shot_idx=0, start_frame=0, end_frame=n, start_s=0.0, end_s=n / 25)
    return Clip(source=v, shot=shot, clip_id=f"{path.stem}-s0000", clip_fps=25.0, video_path=str(path),
                    width=width, height=height, num_frames=n)


@pytest.fixture(scope="module")
def stage():
    st = FacesStage()
    st.setup()
    return st


@pytest.fixture(scope="module")
def vv(tmp_path_factory, stage):
    p = cut(clip("visualvoice_interview.mp4"), 2.0, 4.0, tmp_path_factory.mktemp("faces") / "vv.mp4")
    task = stage.process(clip_task(p, 1280, 720))
    return task


@pytest.fixture(scope="module")
def bj(tmp_path_factory, stage):
    p = cut(clip("dvscripts_blackjournal.mp4"), 20.0, 4.0, tmp_path_factory.mktemp("faces") / "bj.mp4")
    return stage.process(clip_task(p, 480, 360))


def check_contract(ft: dict, width: int, height: int) -> None:
    n = len(ft.frame_idx)
    assert ft.frame_idx.dtype == np.int32 and np.all(np.diff(ft.frame_idx) == 1)
    assert ft.boxes.dtype == np.float32 and ft.boxes.shape == (n, 4)
    assert ft.scores.dtype == np.float32 and ft.scores.shape == (n,)
    assert ft.landmarks.dtype == np.float32 and ft.landmarks.shape == (n, 5, 2)
    b = ft.boxes
    assert np.all(b[:, 0] >= 0) and np.all(b[:, 1] >= 0)
    assert np.all(b[:, 2] <= width) and np.all(b[:, 3] <= height)
    assert np.all(b[:, 2] > b[:, 0]) and np.all(b[:, 3] > b[:, 1])
    # detected frames carry YuNet scores >= the threshold, interpolated frames 0
    assert np.all(ft.scores[ft.detected] >= 0.8)
    assert np.all(ft.scores[~ft.detected] == 0)
    # the nose landmark lies inside its face box, grown by 10% of its size (a profile's nose tip
    # can sit just past the box edge: 0.7 px on the blackjournal interviewer), on every frame
    nose = ft.landmarks[:, 2]
    mx = 0.1 * (b[:, 2] - b[:, 0])
    my = 0.1 * (b[:, 3] - b[:, 1])
    inside = (nose[:, 0] > b[:, 0] - mx) & (nose[:, 0] < b[:, 2] + mx)
    inside &= (nose[:, 1] > b[:, 1] - my) & (nose[:, 1] < b[:, 3] + my)
    assert inside.all()


def test_split_screen_two_face_tracks(vv):
    faces = vv.face_tracks
    assert len(faces) == 2
    for ft in faces:
        check_contract(ft, 1280, 720)
        assert len(ft.frame_idx) >= 95
        assert ft.detected.sum() >= 90
        w = ft.boxes[:, 2] - ft.boxes[:, 0]
        h = ft.boxes[:, 3] - ft.boxes[:, 1]
        assert 140 < w.min() and w.max() < 240, (w.min(), w.max())
        assert 180 < h.min() and h.max() < 330, (h.min(), h.max())
    cx = sorted(float(np.mean(ft.boxes[:, [0, 2]])) for ft in faces)
    assert cx[0] < 640 < cx[1]
    assert [ft.face_track_id for ft in faces] == [0, 1]
    assert vv.models["faces"].startswith("YuNet face_detection_yunet_2026may.onnx (OpenCV 4.11")


def test_blackjournal_guest_tracked(bj):
    faces = bj.face_tracks
    for ft in faces:
        check_contract(ft, 480, 360)
    right = [ft for ft in faces if np.mean(ft.boxes[:, [0, 2]]) > 240]
    left = [ft for ft in faces if np.mean(ft.boxes[:, [0, 2]]) <= 240]
    assert len(right) == 1, [(ft.frame_idx[0], ft.boxes[0]) for ft in faces]
    guest = right[0]
    assert len(guest.frame_idx) >= 90
    assert guest.detected.sum() >= 75
    assert guest.detected.sum() < len(guest.frame_idx)  # some frames were interpolated (86/100 measured)
    w = guest.boxes[:, 2] - guest.boxes[:, 0]
    h = guest.boxes[:, 3] - guest.boxes[:, 1]
    assert 25 < w.min() and w.max() < 60 and 28 < h.min() and h.max() < 65
    # the interviewer (profile / 3/4 from behind) is found as well on this cut: one left track
    assert len(left) == 1 and len(left[0].frame_idx) >= 90


def test_gaps_interpolated_and_long_gaps_split(stage, vv):
    dets = stage.detect_frames(vv.video_path)
    assert [len(d) for d in dets] == [2] * 100
    # remove both faces on frames 40..45 (6 missed frames <= max_gap): tracks stay whole
    holed = [d if not 40 <= k <= 45 else np.zeros((0, 15)) for k, d in enumerate(dets)]
    tracks = [fill_track(t) for t in link_face_tracks(holed, 0.5, 10)]
    assert len(tracks) == 2
    for t in tracks:
        assert len(t["frame_idx"]) == 100 and t["detected"].sum() == 94
        b = t["boxes"]
        # an interpolated box lies on the line between its neighbours' detected boxes
        np.testing.assert_allclose(b[42], b[39] + (b[46] - b[39]) * 3 / 7, rtol=0, atol=1e-3)
    # a gap longer than max_gap ends the tracks: 20 missed frames -> 4 tracks
    holed = [d if not 40 <= k < 60 else np.zeros((0, 15)) for k, d in enumerate(dets)]
    assert len(link_face_tracks(holed, 0.5, 10)) == 4
    # short tracks are dropped by the stage's min_track_frames
    short = [d if k < 8 else np.zeros((0, 15)) for k, d in enumerate(dets)]
    assert stage.tracks_from_detections(short) == []


def test_box_iou_values():
    a = np.array([[0, 0, 10, 10]], dtype=float)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], dtype=float)
    np.testing.assert_allclose(box_iou(a, b), [[1.0, 50 / 150, 0.0]])


def test_missing_weights_names_path(tmp_path):
    missing = tmp_path / "nowhere" / "yunet.onnx"
    with pytest.raises(WeightsNotFound) as exc:
        FacesStage(weights=str(missing)).setup()
    assert str(missing) in str(exc.value)


def test_missing_clip_is_stage_error(stage, tmp_path):
    with pytest.raises(StageError, match="does not exist"):
        stage.process(clip_task(tmp_path / "absent.mp4", 1280, 720))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(StageError, match="cannot decode"):
        stage.process(clip_task(bad, 1280, 720))
