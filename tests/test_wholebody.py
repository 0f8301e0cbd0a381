"""COCO-WholeBody layout, the 59-keypoint subset, and pose drawing."""

from __future__ import annotations

import numpy as np
import pytest

from talkset import wholebody as wb


def test_layout_slices_cover_133_once():
    idx = np.concatenate([np.arange(133)[s] for s in wb.PARTS.values()])
    assert sorted(idx.tolist()) == list(range(133))
    assert [len(range(133)[s]) for s in (wb.BODY, wb.FEET, wb.FACE, wb.LEFT_HAND, wb.RIGHT_HAND)] == [17, 6, 68, 21, 21]
    assert wb.KEYPOINT_NAMES[9] == "left_wrist" and wb.KEYPOINT_NAMES[91] == "left_hand_root"
    assert wb.KEYPOINT_NAMES[112] == "right_hand_root" and wb.KEYPOINT_NAMES[20] == "right_big_toe"


def test_subset_59_follows_the_rule():
    s = wb.SUBSET_59
    assert len(s) == 59 and len(set(s)) == 59
    head = {0, 3, 4}
    body = set(range(5, 17))
    feet = {17, 20}
    hands = set(range(91, 133))
    assert set(s) == head | body | feet | hands
    assert not set(s) & set(range(23, 91))  # no face points
    assert [wb.KEYPOINT_NAMES[i] for i in (0, 3, 4, 17, 20)] == [
        "nose", "left_ear", "right_ear", "left_big_toe", "right_big_toe"]


def test_subset_round_trip():
    rng = np.random.default_rng(0)
    kp = rng.random((4, 133, 3)).astype(np.float32)
    k59 = wb.to_subset_59(kp)
    assert k59.shape == (4, 59, 3)
    back = wb.from_subset_59(k59)
    assert np.array_equal(back[:, list(wb.SUBSET_59)], kp[:, list(wb.SUBSET_59)])
    assert np.all(back[:, 23:91] == 0)
    with pytest.raises(ValueError):
        wb.to_subset_59(kp[:, :100])


def test_edges_are_within_layout_and_in_their_parts():
    for a, b in wb.BODY_EDGES:
        assert 0 <= a < 17 and 0 <= b < 17
    for a, b in wb.LEFT_HAND_EDGES:
        assert 91 <= a <= 111 and 91 <= b <= 111
    for a, b in wb.RIGHT_HAND_EDGES:
        assert 112 <= a <= 132 and 112 <= b <= 132
    for a, b in wb.FACE_EDGES:
        assert 23 <= a <= 90 and 23 <= b <= 90
    assert len(wb.LEFT_HAND_EDGES) == 20 and len(wb.BODY_EDGE_COLORS) == len(wb.BODY_EDGES)


def _person(cx: float, cy: float, score: float = 0.9) -> np.ndarray:
    """A synthetic frontal person: every keypoint placed on a grid around (cx, cy)."""
    kp = np.zeros((133, 3), np.float32)
    rng = np.random.default_rng(1)
    kp[:, 0] = cx + rng.uniform(-40, 40, 133)
    kp[:, 1] = cy + rng.uniform(-60, 60, 133)
    kp[:, 2] = score
    return kp


def test_draw_puts_pixels_at_keypoints_and_nothing_below_threshold():
    kp = _person(100, 120)
    img = wb.pose_image([kp], 256, 256)
    assert img.shape == (256, 256, 3) and img.dtype == np.uint8
    for x, y, _ in kp:
        xi, yi = int(round(x)), int(round(y))
        assert img[yi - 1 : yi + 2, xi - 1 : xi + 2].any(), (x, y)
    # nothing far from the person
    ys, xs = np.nonzero(img.any(axis=2))
    assert xs.min() >= 100 - 40 - 6 and xs.max() <= 100 + 40 + 6
    assert ys.min() >= 120 - 60 - 6 and ys.max() <= 120 + 60 + 6

    low = kp.copy()
    low[:, 2] = 0.29
    assert not wb.pose_image([low], 256, 256, score_thr=0.3).any()
    nan = kp.copy()
    nan[:, :2] = np.nan
    assert not wb.pose_image([nan], 256, 256).any()


def test_draw_only_confident_slots():
    kp = np.zeros((133, 3), np.float32)
    kp[5] = (50, 50, 0.9)  # left shoulder alone: a dot, no limb
    kp[6] = (200, 50, 0.1)  # right shoulder below threshold: no limb to it
    img = wb.pose_image([kp], 128, 256)
    ys, xs = np.nonzero(img.any(axis=2))
    assert abs(xs.mean() - 50) < 1 and abs(ys.mean() - 50) < 1
    assert xs.max() - xs.min() <= 10


def test_draw_59_layout_and_several_people():
    a = _person(60, 120)
    b = _person(190, 120)
    img = wb.pose_image([wb.to_subset_59(a), wb.to_subset_59(b)], 256, 256)
    # face points (not in the subset) are not drawn: white pixels come only from the full layout
    white = (img == 255).all(axis=2)
    full = wb.pose_image([a, b], 256, 256)
    assert (full == 255).all(axis=2).sum() > white.sum()
    # both people drawn
    cols = np.nonzero(img.any(axis=2))[1]
    assert (cols < 128).any() and (cols >= 128).any()
    with pytest.raises(ValueError):
        wb.draw_pose(np.zeros((10, 10, 3), np.uint8), np.zeros((17, 3)))
    with pytest.raises(ValueError):
        wb.draw_pose(np.zeros((10, 10), np.uint8), a)
