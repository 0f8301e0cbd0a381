"""The COCO-WholeBody keypoint layout (133 points), the 59-keypoint subset, and pose drawing.

Layout (Jin et al., "Whole-Body Human Pose Estimation in the Wild", ECCV 2020; the order used by
mmpose's ``coco_wholebody`` dataset info and by DWPose / RTMW):

====================  ==========  =====
part                  indices     count
====================  ==========  =====
body (COCO 17)        0 .. 16     17
feet                  17 .. 22    6
face (iBUG 68)        23 .. 90    68
left hand             91 .. 111   21
right hand            112 .. 132  21
====================  ==========  =====

"left"/"right" are the *person's* left and right (a frontal person's left shoulder appears on the
image's right side).

Keypoint arrays everywhere in talkset are float32 ``(K, 3)`` rows ``[x px, y px, score]`` in frame
pixels, with ``K = 133`` (full layout) or ``K = 59`` (:data:`SUBSET_59`). A slot that was not found
has score 0.

Drawing (:func:`draw_pose`, :func:`pose_image`) makes the DWPose / AnimateAnyone-style pose image:
coloured body limbs (OpenPose colours), rainbow hand bones, white face points, on black when the
canvas is zeros. ``talkset render`` and the CovOG pose guider both use it.
"""

from __future__ import annotations

import colorsys
from typing import Iterable, Sequence

import numpy as np

NUM_KEYPOINTS = 133

BODY = slice(0, 17)
FEET = slice(17, 23)
FACE = slice(23, 91)
LEFT_HAND = slice(91, 112)
RIGHT_HAND = slice(112, 133)

PARTS: dict[str, slice] = {
    "body": BODY,
    "feet": FEET,
    "face": FACE,
    "left_hand": LEFT_HAND,
    "right_hand": RIGHT_HAND,
}

BODY_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
FEET_NAMES = (
    "left_big_toe", "left_small_toe", "left_heel",
    "right_big_toe", "right_small_toe", "right_heel",
)
# The 68 face points follow the iBUG 300-W order: jaw 0-16, right brow 17-21, left brow 22-26,
# nose bridge 27-30, lower nose 31-35, right eye 36-41, left eye 42-47, outer lip 48-59,
# inner lip 60-67 (brow/eye "right" = the person's right, on the image's left for a frontal face).
FACE_NAMES = tuple(f"face-{i}" for i in range(68))
HAND_PART_NAMES = (
    "root",
    "thumb1", "thumb2", "thumb3", "thumb4",
    "forefinger1", "forefinger2", "forefinger3", "forefinger4",
    "middle_finger1", "middle_finger2", "middle_finger3", "middle_finger4",
    "ring_finger1", "ring_finger2", "ring_finger3", "ring_finger4",
    "pinky_finger1", "pinky_finger2", "pinky_finger3", "pinky_finger4",
)
KEYPOINT_NAMES: tuple[str, ...] = (
    BODY_NAMES
    + FEET_NAMES
    + FACE_NAMES
    + tuple(f"left_hand_{n}" for n in HAND_PART_NAMES)
    + tuple(f"right_hand_{n}" for n in HAND_PART_NAMES)
)
assert len(KEYPOINT_NAMES) == NUM_KEYPOINTS

# --- the 59-keypoint subset -------------------------------------------------------------------
#: The 59 whole-body keypoints kept per person (indices into the 133 layout, in this order).
#: The MIT paper (Sec. 3.1) keeps "head, body, arms, legs, and hands, with only three head
#: keypoints" out of COCO-WholeBody but publishes no index list. talkset's choice:
#: head 3 (nose 0, left ear 3, right ear 4) + body 12 (shoulders, elbows, wrists, hips, knees,
#: ankles: 5-16) + feet 2 (big toes 17 and 20) + both hands 42 (91-132) = 59.
SUBSET_59: tuple[int, ...] = (0, 3, 4) + tuple(range(5, 17)) + (17, 20) + tuple(range(91, 133))
assert len(SUBSET_59) == 59 and len(set(SUBSET_59)) == 59


def to_subset_59(keypoints: np.ndarray) -> np.ndarray:
    """(..., 133, 3) -> (..., 59, 3): the :data:`SUBSET_59` rows, same dtype."""
    kp = np.asarray(keypoints)
    if kp.shape[-2] != NUM_KEYPOINTS:
        raise ValueError(f"expected (..., 133, 3) keypoints, got shape {kp.shape}")
    return kp[..., list(SUBSET_59), :]


def from_subset_59(keypoints59: np.ndarray) -> np.ndarray:
    """(..., 59, 3) -> (..., 133, 3) with the slots outside the subset at 0 (score 0)."""
    kp = np.asarray(keypoints59)
    if kp.shape[-2] != 59:
        raise ValueError(f"expected (..., 59, 3) keypoints, got shape {kp.shape}")
    out = np.zeros(kp.shape[:-2] + (NUM_KEYPOINTS, kp.shape[-1]), dtype=kp.dtype)
    out[..., list(SUBSET_59), :] = kp
    return out


def as_wholebody(keypoints: np.ndarray) -> np.ndarray:
    """Any of (133, 3) / (59, 3) -> float32 (133, 3). Raises ValueError for other shapes."""
    kp = np.asarray(keypoints, dtype=np.float32)
    if kp.ndim != 2 or kp.shape[1] < 3:
        raise ValueError(f"keypoints must be (K, 3) [x, y, score], got shape {kp.shape}")
    if kp.shape[0] == NUM_KEYPOINTS:
        return kp[:, :3]
    if kp.shape[0] == 59:
        return from_subset_59(kp[:, :3])
    raise ValueError(f"keypoints must have 133 (COCO-WholeBody) or 59 (SUBSET_59) rows, got {kp.shape[0]}")


# --- skeleton ---------------------------------------------------------------------------------
#: COCO body limbs (0-based), the COCO / mmpose order.
BODY_EDGES: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6),
    (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)
#: Ankle -> big toe / small toe / heel, each foot.
FEET_EDGES: tuple[tuple[int, int], ...] = (
    (15, 17), (15, 18), (15, 19), (16, 20), (16, 21), (16, 22),
)
#: Hand bones within one hand's 21 points (root 0; each finger 4 joints from palm to tip).
HAND_EDGES_LOCAL: tuple[tuple[int, int], ...] = tuple(
    e for f in range(5) for e in ((0, 1 + 4 * f), (1 + 4 * f, 2 + 4 * f), (2 + 4 * f, 3 + 4 * f), (3 + 4 * f, 4 + 4 * f))
)
LEFT_HAND_EDGES = tuple((a + 91, b + 91) for a, b in HAND_EDGES_LOCAL)
RIGHT_HAND_EDGES = tuple((a + 112, b + 112) for a, b in HAND_EDGES_LOCAL)


def _chain(idx: Sequence[int], closed: bool = False) -> list[tuple[int, int]]:
    e = [(idx[i], idx[i + 1]) for i in range(len(idx) - 1)]
    if closed:
        e.append((idx[-1], idx[0]))
    return e


def _face_edges() -> tuple[tuple[int, int], ...]:
    o = 23  # face slot 0 in the 133 layout
    parts = [
        (range(0, 17), False),  # jaw
        (range(17, 22), False),  # right brow
        (range(22, 27), False),  # left brow
        (range(27, 31), False),  # nose bridge
        (range(31, 36), False),  # lower nose
        (range(36, 42), True),  # right eye
        (range(42, 48), True),  # left eye
        (range(48, 60), True),  # outer lip
        (range(60, 68), True),  # inner lip
    ]
    out: list[tuple[int, int]] = []
    for r, closed in parts:
        out += _chain([o + i for i in r], closed)
    return tuple(out)


#: iBUG-68 contour edges (jaw, brows, nose, eyes, lips) in the 133 layout. Drawn only with
#: ``face_edges=True``; the default pose image shows the face as points (DWPose style).
FACE_EDGES: tuple[tuple[int, int], ...] = _face_edges()

# OpenPose / DWPose limb colours (BGR after reversal below), one per body limb.
_OPENPOSE_RGB = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
    (255, 85, 85),
)
#: BGR colour of each :data:`BODY_EDGES` limb.
BODY_EDGE_COLORS: tuple[tuple[int, int, int], ...] = tuple(
    (b, g, r) for r, g, b in _OPENPOSE_RGB[: len(BODY_EDGES)]
)
#: BGR colour of each :data:`FEET_EDGES` edge (left foot green-cyan, right foot magenta-ish).
FEET_EDGE_COLORS: tuple[tuple[int, int, int], ...] = (
    (170, 255, 0), (170, 255, 0), (170, 255, 0), (255, 0, 170), (255, 0, 170), (255, 0, 170),
)


def _hand_colors() -> tuple[tuple[int, int, int], ...]:
    # DWPose/OpenPose hand style: hue sweeps over the 20 bones.
    out = []
    for i in range(len(HAND_EDGES_LOCAL)):
        r, g, b = colorsys.hsv_to_rgb(i / float(len(HAND_EDGES_LOCAL)), 1.0, 1.0)
        out.append((int(b * 255), int(g * 255), int(r * 255)))
    return tuple(out)


#: BGR colour of each hand bone (same for both hands, index as :data:`HAND_EDGES_LOCAL`).
HAND_EDGE_COLORS: tuple[tuple[int, int, int], ...] = _hand_colors()
FACE_COLOR = (255, 255, 255)
HAND_POINT_COLOR = (0, 0, 255)


def draw_pose(
    canvas: np.ndarray,
    keypoints: np.ndarray,
    score_thr: float = 0.3,
    *,
    face_edges: bool = False,
    thickness: int | None = None,
    radius: int | None = None,
    draw_face: bool = True,
    draw_hands: bool = True,
    draw_feet: bool = True,
) -> np.ndarray:
    """Draw one person's whole-body skeleton onto ``canvas`` in place and return it.

    ``canvas``: HxWx3 uint8 BGR (zeros gives the DWPose / AnimateAnyone pose image).
    ``keypoints``: (133, 3) or (59, 3) float rows ``[x px, y px, score]`` in the canvas' pixels
    (the 59 layout is :data:`SUBSET_59`; its missing slots are simply not drawn). A point or limb is
    drawn only where every keypoint involved has ``score >= score_thr``; non-finite points are
    skipped. Body limbs use OpenPose colours, hand bones a rainbow with red joints, the face white
    points (plus iBUG contour lines with ``face_edges=True``). ``thickness`` / ``radius`` default
    to values scaled by the canvas size (4 px limbs at 512 px).
    """
    import cv2

    if canvas.ndim != 3 or canvas.shape[2] != 3 or canvas.dtype != np.uint8:
        raise ValueError(f"canvas must be HxWx3 uint8, got {canvas.shape} {canvas.dtype}")
    kp = as_wholebody(keypoints)
    h, w = canvas.shape[:2]
    scale = max(h, w) / 512.0
    t = int(thickness) if thickness is not None else max(1, int(round(4 * scale)))
    r = int(radius) if radius is not None else max(1, int(round(4 * scale)))
    ok = np.isfinite(kp).all(axis=1) & (kp[:, 2] >= score_thr)
    pts = np.zeros((NUM_KEYPOINTS, 2), dtype=np.int32)
    pts[ok] = np.round(kp[ok, :2]).astype(np.int32)

    def lines(edges, colors, thick):
        for (a, b), c in zip(edges, colors):
            if ok[a] and ok[b]:
                cv2.line(canvas, tuple(map(int, pts[a])), tuple(map(int, pts[b])), c, thick, cv2.LINE_AA)

    def dots(idx: Iterable[int], color, rad):
        for i in idx:
            if ok[i]:
                cv2.circle(canvas, tuple(map(int, pts[i])), rad, color, -1, cv2.LINE_AA)

    # body: limbs then joints coloured like their first limb
    lines(BODY_EDGES, BODY_EDGE_COLORS, t)
    for i in range(17):
        if ok[i]:
            cv2.circle(canvas, tuple(map(int, pts[i])), r, BODY_EDGE_COLORS[i % len(BODY_EDGE_COLORS)], -1, cv2.LINE_AA)
    if draw_feet:
        lines(FEET_EDGES, FEET_EDGE_COLORS, t)
        for i in range(17, 23):
            if ok[i]:
                cv2.circle(canvas, tuple(map(int, pts[i])), max(1, r - 1), FEET_EDGE_COLORS[i - 17], -1, cv2.LINE_AA)
    if draw_hands:
        ht = max(1, t // 2)
        lines(LEFT_HAND_EDGES, HAND_EDGE_COLORS, ht)
        lines(RIGHT_HAND_EDGES, HAND_EDGE_COLORS, ht)
        dots(range(91, 133), HAND_POINT_COLOR, max(1, r // 2))
    if draw_face:
        if face_edges:
            lines(FACE_EDGES, [FACE_COLOR] * len(FACE_EDGES), max(1, t // 4))
        dots(range(23, 91), FACE_COLOR, max(1, r // 2))
    return canvas


def pose_image(
    keypoints_list: Iterable[np.ndarray],
    height: int,
    width: int,
    score_thr: float = 0.3,
    **kwargs,
) -> np.ndarray:
    """A black HxWx3 uint8 BGR image with every person's skeleton drawn (:func:`draw_pose`).

    ``keypoints_list``: one (133, 3) or (59, 3) array per person, in pixels of the
    ``height`` x ``width`` image. Extra keyword arguments go to :func:`draw_pose`.
    """
    canvas = np.zeros((int(height), int(width), 3), dtype=np.uint8)
    for kp in keypoints_list:
        draw_pose(canvas, kp, score_thr=score_thr, **kwargs)
    return canvas
