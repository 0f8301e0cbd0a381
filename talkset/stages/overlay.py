"""Burned-in overlays of a shot (timers, tickers, changing captions) and person occlusion.

MIT keeps clips "avoiding camera motion, occlusions, and editing artifacts" (Sec. 3). This module
gives the people stage two of those measures per shot (issue 11 §6); the third, the split-screen
layout, is :mod:`talkset.stages.layout`.

Overlay share (:func:`overlay_boxes`, :func:`overlay_share`)
-----------------------------------------------------------
Computed on the camera-motion meter's samples (:class:`talkset.stages.camera.CameraMotionMeter`:
grayscale frames shrunk to 320 px, every ``camera_stride``-th clip frame), so nothing is decoded
twice. Rule:

1. per pair of consecutive samples (0.4 s apart by default): a pixel is a **text change** when its
   grey level changes by more than ``_CHANGE_GREY`` (24 of 255), it lies on a sharp edge in either
   frame (3x3 morphological gradient > ``_EDGE_GREY``, 60: glyphs are high-contrast strokes), and it
   is outside every person box of both frames grown by ``_BOX_GROW`` (10 % of its width to either
   side and of its height upwards: hands and hair; not downwards, where a box ends at the feet or
   at the picture's edge, and an L-bar ticker starts);
2. only pairs where the camera stood still count (the meter's pair value <= ``_STILL_MOTION``,
   0.0004 frame diagonals per frame, the people stage's default motion threshold): when the camera
   moves, every edge of the background changes;
3. the text-change pixels of the counted pairs are closed with a 9x3 (w x h) kernel (letters of one
   line join), and each connected component is an overlay candidate; it is kept when it changed in
   at least ``_MIN_PAIRS`` (2) counted pairs *and* in at least ``_MIN_PAIR_SHARE`` (10 %) of them
   (a single gesture outside a box, a one-off flash, does not count), its bounding box is at most
   ``_MAX_HEIGHT`` (25 %) of the frame height (a line or band of text, not a scene change) and at
   least ``_MIN_HEIGHT`` (4 px) high and wide (a glyph; thinner ones were edges of feet below a box), and
   text-change pixels fill at least ``_MIN_FILL`` (8 %) of that box;
4. ``overlay_share`` = area of the union of the kept bounding boxes / frame area. ``None`` when no
   pair of the shot was counted (a moving camera throughout, or a shot of fewer than 2 samples).

What it sees, honestly: overlays that **change** within the shot: a running clock or countdown,
a scrolling ticker, subtitles that change. A static logo or a caption that stays unchanged for
the whole shot is, inside one shot, the same thing as static text on the set (the restaurant's
wall writing in the shared clips), and is not counted. The share covers the changing part: a
timer's digits rather than its whole backing box (the leading digits that never change in the
shot are outside it), a ticker's band where text passed. Measured figures are in the README
(section "Editing artifacts and occlusion") and ``tests/test_clip_labels.py``.

Occlusion share (:func:`occlusion_share`)
-----------------------------------------
From the person tracks of a shot: every track whose median box is at least the people stage's
``min_box_frac`` of the frame, however short, less nested duplicate boxes, not only the counted
people (occlusion breaks tracks: on the constructed case below the hidden man's full-rate track
fell into pieces of 41, 47 and 18 of 100 frames, none of them counted). A person-frame is
**occluded** when another person's box
in the same frame covers more than ``OCCLUDED`` (30 %) of its box area and is in front of it or
level with it. In front: its bottom edge is lower (larger y2: nearer the camera on a floor seen from
about eye height); level: the bottoms are within ``_TIE`` (3 %) of the taller box's height (both at
the picture's lower edge, or seated side by side), and then there is no cue and both count. A box
covered by one that stands clearly higher (behind it) is the one in front and does not count.
``occlusion_share`` = occluded person-frames / all person-frames (0.0 with one person, ``None``
with none). A detector box of a half-hidden person often covers only the visible half, so this
counts occlusion that leaves the boxes overlapping; a person fully hidden behind another is not a
track at all.

Measured (``tests/test_clip_labels.py``, 4 s cuts, YOLO11n-pose boxes, 2-core VM): overlays drawn on
the blackjournal two-shot (timer, changing caption, L-bar ticker: 0.1445 of the frame drawn) 0.096,
the clean two-shot, the shared interview, debate and restaurant 0.000 (the debate's own countdown
lies on a person's box: not counted; the timer and ticker drawn over the people of the interview |
debate composite of ``tests/camera_cases.py`` give 0.015, the ticker's stretch outside the boxes:
a row rule for tickers across people was tried and dropped, as the interview's waving hand changes
as many pixels of its rows, 0.19 of them, as that ticker, 0.23-0.28); occlusion of the two-shot with the woman pasted again in
front of the man 0.41 at the full rate (0.52 on the sparse pass) against 0.02 (0.05) clean.
"""

from __future__ import annotations

import numpy as np

_CHANGE_GREY = 24
_EDGE_GREY = 60
_BOX_GROW = 0.10
_STILL_MOTION = 0.0004
_MIN_PAIRS = 2
_MIN_PAIR_SHARE = 0.10
_MAX_HEIGHT = 0.25
_MIN_HEIGHT = 4  # px of the 320 px frame: a line of text, not the edge of a box
_MIN_FILL = 0.08
_CLOSE = (9, 3)  # closing kernel (w, h), px of the 320 px frame
OCCLUDED = 0.30
_TIE = 0.03  # bottoms within this share of the taller box's height are level


def _outside_boxes(shape: tuple[int, int], boxes: np.ndarray) -> np.ndarray:
    """Bool (H, W): True outside every box of ``boxes`` (M, 4) x1, y1, x2, y2 grown by ``_BOX_GROW``."""
    h, w = shape
    out = np.ones((h, w), bool)
    for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        gx, gy = (x2 - x1) * _BOX_GROW, (y2 - y1) * _BOX_GROW
        c0, c1 = max(0, int(np.floor(x1 - gx))), min(w, int(np.ceil(x2 + gx)))
        r0, r1 = max(0, int(np.floor(y1 - gy))), min(h, int(np.ceil(y2)))  # not grown downwards
        out[r0:r1, c0:c1] = False
    return out


def text_change(prev: np.ndarray, cur: np.ndarray, boxes_prev=None, boxes_cur=None) -> np.ndarray:
    """Text-change pixels between two grayscale frames (H, W) uint8 of the same size (module
    docstring, step 1); bool (H, W). ``boxes_*``: person boxes (M, 4) px of those frames."""
    import cv2

    if prev.shape != cur.shape:
        raise ValueError(f"frames of different sizes: {prev.shape} vs {cur.shape}")
    k = np.ones((3, 3), np.uint8)
    edge = (cv2.morphologyEx(prev, cv2.MORPH_GRADIENT, k) > _EDGE_GREY) | (
        cv2.morphologyEx(cur, cv2.MORPH_GRADIENT, k) > _EDGE_GREY
    )
    change = cv2.absdiff(prev, cur) > _CHANGE_GREY
    mask = change & edge
    for b in (boxes_prev, boxes_cur):
        if b is not None and len(b):
            mask &= _outside_boxes(prev.shape[:2], b)
    return mask


def overlay_boxes(masks: list[np.ndarray]) -> list[tuple[int, int, int, int]]:
    """Overlay regions from the text-change masks of the counted pairs (module docstring, step 3).

    ``masks``: bool (H, W) arrays, one per counted pair. Returns bounding boxes ``(x0, y0, x1, y1)``
    (x1, y1 exclusive) in px of those frames; ``[]`` when none qualifies."""
    import cv2

    if not masks:
        return []
    stack = np.stack([np.asarray(m, bool) for m in masks])
    h = stack.shape[1]
    union = stack.any(axis=0)
    closed = cv2.morphologyEx(union.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((_CLOSE[1], _CLOSE[0]), np.uint8))
    n, labels, stats, _c = cv2.connectedComponentsWithStats(closed, connectivity=8)
    need = max(_MIN_PAIRS, int(np.ceil(_MIN_PAIR_SHARE * len(masks))))
    out = []
    for i in range(1, n):
        x, y, bw, bh, _area = (int(v) for v in stats[i])
        if bh > _MAX_HEIGHT * h or min(bw, bh) < _MIN_HEIGHT:
            continue
        comp = labels[y:y + bh, x:x + bw] == i
        if (union[y:y + bh, x:x + bw] & comp).sum() < _MIN_FILL * bw * bh:
            continue
        pairs = int((stack[:, y:y + bh, x:x + bw] & comp).any(axis=(1, 2)).sum())
        if pairs >= need:
            out.append((x, y, x + bw, y + bh))
    return out


def overlay_share(masks: list[np.ndarray], shape: tuple[int, int] | None = None) -> float | None:
    """Share of the frame area covered by the union of :func:`overlay_boxes`; ``None`` without masks."""
    if not masks:
        return None
    h, w = shape or masks[0].shape[:2]
    cover = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in overlay_boxes(masks):
        cover[y0:y1, x0:x1] = True
    return float(cover.mean())


def occlusion_share(tracks, occluded: float = OCCLUDED) -> float | None:
    """Share of person-frames covered by a box in front by more than ``occluded`` of their area.

    ``tracks``: objects with ``frame_idx`` (T,) and ``boxes`` (T, 4) x1, y1, x2, y2 px (the people
    stage's :class:`talkset.items.PersonTrack`). The box in front is the one whose bottom edge is
    lower (module docstring). ``None`` when there are no person-frames."""
    frames: dict[int, list[np.ndarray]] = {}
    total = 0
    for t in tracks:
        for f, b in zip(np.asarray(t.frame_idx).tolist(), np.asarray(t.boxes, dtype=np.float64).reshape(-1, 4)):
            frames.setdefault(int(f), []).append(b)
            total += 1
    if total == 0:
        return None
    hit = 0
    for boxes in frames.values():
        if len(boxes) < 2:
            continue
        b = np.stack(boxes)
        iw = (np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0])).clip(0)
        ih = (np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1])).clip(0)
        own = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).clip(1e-6)
        cover = iw * ih / own[:, None]  # [i, j]: share of i covered by j
        hgt = b[:, 3] - b[:, 1]
        tie = _TIE * np.maximum(hgt[:, None], hgt[None, :])
        front = b[None, :, 3] >= b[:, None, 3] - tie  # j's bottom is lower than i's, or level: j in front or no cue
        np.fill_diagonal(front, False)
        hit += int(((cover > occluded) & front).any(axis=1).sum())
    return hit / total
