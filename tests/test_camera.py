"""Camera motion (talkset.stages.camera) on cases built with ffmpeg from the shared clips
(tests/camera_cases.py): every still camera kept, every moving one rejected, at the people
stage's threshold (PeopleStage.max_camera_motion = 0.0004 frame diagonals per frame)."""

from __future__ import annotations

import numpy as np
import pytest
from camera_cases import build_all
from conftest import CLIPS, WEIGHTS

from talkset import media
from talkset.stages import camera
from talkset.stages.people import PeopleStage

LIMIT = PeopleStage.max_camera_motion


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return build_all(CLIPS, tmp_path_factory.mktemp("camera-cases"))


def meter_of(path, boxes_from=None, stride: int = 10) -> camera.CameraMotionMeter:
    """The meter fed as the people stage feeds it (25 fps ticks), with YOLO person boxes when
    ``boxes_from`` (a YOLO model) is given (only the sampled frames need them)."""
    meter = camera.CameraMotionMeter(stride)
    for k, _t, img in media.iter_frames(str(path), 0.0, None, fps=25.0):
        if k % stride:
            continue
        boxes = None
        if boxes_from is not None:
            boxes = boxes_from(img, classes=[0], verbose=False, imgsz=640)[0].boxes.xyxy.cpu().numpy()
        meter.add(k, img, boxes)
    return meter


def test_still_kept_and_moving_rejected_in_every_case(cases):
    got = {}
    for name, (path, moves) in cases.items():
        v = meter_of(path).value()
        assert v is not None, name
        got[name] = v
    still = {k: v for k, v in got.items() if not cases[k][1]}
    moving = {k: v for k, v in got.items() if cases[k][1]}
    assert set(still) == {"debate_overlay", "split_overlay", "crop80_restaurant", "crop80_debate", "crop80_blackjournal"}
    assert len(moving) == 6
    # still cameras: every pair of most shots is found still (value 0); margins of >= 1.8x on moves
    assert max(still.values()) < LIMIT / 4, still
    assert min(moving.values()) > 1.8 * LIMIT, moving


def test_split_screen_measured_per_panel(cases):
    path, _ = cases["split_pan"]
    m = meter_of(path)
    # the composite's left half (the interview: seams at its picture edges) stays still, the right pans
    cols = camera.layout.panels(m.width, m.seams)
    assert len(cols) >= 2
    assert m.panel_values[0] == 0.0
    assert m.panel_values[-1] > 2 * LIMIT
    assert m.value() == m.panel_values[-1]
    still = meter_of(cases["split_overlay"][0])
    assert len(camera.layout.panels(still.width, still.seams)) >= 3
    assert all(v == 0.0 for v in still.panel_values)


def test_with_person_boxes_as_the_people_stage(cases):
    """The debate with overlays, where the people's boxes cover their whole halves, and the panning
    split screen, with YOLO11n-pose boxes on the sampled frames as the people stage passes them."""
    from ultralytics import YOLO

    yolo = YOLO(str(WEIGHTS / "yolo11n-pose.pt"))
    debate = meter_of(cases["debate_overlay"][0], yolo)
    assert debate.seams and abs(debate.seams[0][0] - debate.width / 2) <= 4
    assert debate.value() is not None and debate.value() < LIMIT / 4
    pan = meter_of(cases["split_pan"][0], yolo)
    assert pan.value() > 2 * LIMIT


def test_still_panel_rule():
    rng = np.random.default_rng(0)
    p0 = np.column_stack([rng.uniform(0, 320, 200), rng.uniform(0, 180, 200)]).astype(np.float32)
    # 30 % of the points still and spread (background), the rest waving: still
    p1 = p0 + np.where(np.arange(200)[:, None] < 60, 0.0, rng.normal(0, 3, (200, 2))).astype(np.float32)
    assert camera.still_panel(p0, p1, 0, 320, 180)
    # a pan of 2 px: nothing still
    assert not camera.still_panel(p0, p0 + 2.0, 0, 320, 180)
    # a pan where only a thin band (a static lower third) keeps still: not still
    band = p0[:, 1] > 165
    assert not camera.still_panel(p0, np.where(band[:, None], p0, p0 + 2.0), 0, 320, 180)
    # too few points: no decision
    assert not camera.still_panel(p0[:5], p0[:5], 0, 320, 180)


def test_pair_motion_and_errors():
    img = (np.random.default_rng(1).uniform(0, 255, (180, 320)) > 128).astype(np.uint8) * 255
    import cv2

    img = cv2.GaussianBlur(img, (5, 5), 1.5)
    shifted = np.roll(img, 3, axis=1)
    v, masked = camera.pair_motion(img, shifted)
    assert masked is False
    assert v == pytest.approx(3 / np.hypot(320, 180), rel=0.1)
    with pytest.raises(ValueError, match="stride"):
        camera.CameraMotionMeter(0)
    assert camera.CameraMotionMeter(5).value() is None


def test_a_panel_needs_three_pairs_for_a_median():
    """Two sampled pairs are no median: a 0.9 s pan (frames 0, 10, 20: two pairs) is not judged,
    2.5 s of the same pan (six pairs) is."""
    import cv2

    base = cv2.GaussianBlur(
        ((np.random.default_rng(2).uniform(0, 255, (240, 560)) > 128).astype(np.uint8) * 255), (5, 5), 1.5)

    def meter(n_frames: int) -> camera.CameraMotionMeter:
        m = camera.CameraMotionMeter(10)
        for k in range(n_frames):
            x = k  # 1 px per frame: a steady pan
            m.add(k, cv2.cvtColor(np.ascontiguousarray(base[:, x : x + 320]), cv2.COLOR_GRAY2BGR))
        return m

    short = meter(22)
    assert len(short.values) == 2 and short.value() is None
    assert meter(62).value() > 2 * LIMIT
