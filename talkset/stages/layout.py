"""Picture layout of a shot: split screens (panels side by side with a seam between them).

A split screen puts two (or more) camera pictures side by side. Where two pictures meet, every
row of the frame changes abruptly between neighbouring columns, at the same column in every frame
of the shot, and no person crosses it. :func:`find_seams` looks for such columns on grayscale
frames sampled over a shot (the camera-motion meter's 320 px frames):

1. per frame and column ``c``: the share of rows whose grey level differs by more than
   ``_EDGE_GREY`` (12 of 255) between columns ``c - 1`` and ``c + 1`` (a step two columns wide,
   since shrinking the frame blurs a one-pixel seam over two columns);
2. the column's **seam score** is the median of that share over the sampled frames (a person's
   edge or a door frame is vertical over part of the frame or part of the shot; a seam is
   vertical over most rows in most frames);
3. a seam is a column with score >= ``_SEAM_SCORE`` (0.85) and >= ``_SEAM_RATIO`` (2) times the
   median score of all columns, at least ``_MIN_PANEL`` (15 %) of the width from either edge and
   from a stronger seam, and not crossed by a person box (by more than 2 % of the width either
   side) in more than 10 % of the sampled frames that have boxes.

Measured on 320 px frames: the composite seams and the shared split screens' own seams score
0.95-1.0 against a median column of 0.14-0.31; the inset pictures' edges of the shared interview
(black side areas) score 0.96-1.0 too and count as seams when they leave 15 % either side. A seam
between two dark pictures can score below 0.85 (0.87 for the interview | debate composite, seen
beside the interview's own picture edge 0.99, 20 px away) and is then missed or merged with the
stronger edge within 15 % of the width.

Panels are the column ranges between seams (:func:`panels`). :func:`measure_layout` gives a
time range of a video its layout, ``"single"`` or ``"split"`` with the seams as shares of the
width. The people stage stores the layout of every shot (``clips`` / ``shots`` columns ``layout``,
``seams``, from :meth:`talkset.stages.camera.CameraMotionMeter.layout`, issue 11 §6) and rejects split
screens with ``split_screens="reject"`` (the MIT preset).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

_EDGE_GREY = 12.0
_SEAM_SCORE = 0.85
_SEAM_RATIO = 2.0
_MIN_PANEL = 0.15
_CROSS_TOL = 0.02
_CROSS_SHARE = 0.10


def column_step_share(gray: np.ndarray) -> np.ndarray:
    """Per column ``c`` of a grayscale frame (H, W) uint8: the share of rows whose grey level
    changes by more than ``_EDGE_GREY`` between columns ``c - 1`` and ``c + 1``; float32 (W,),
    0 at the first and last column."""
    g = gray.astype(np.int16)
    out = np.zeros(g.shape[1], np.float32)
    if g.shape[1] >= 3:
        out[1:-1] = (np.abs(g[:, 2:] - g[:, :-2]) > _EDGE_GREY).mean(axis=0)
    return out


def find_seams(
    profiles: list[np.ndarray] | np.ndarray, boxes: list[np.ndarray] | None = None
) -> list[tuple[int, float]]:
    """Vertical split-screen seams from per-frame :func:`column_step_share` profiles.

    ``profiles``: a list of (W,) arrays (one per sampled frame, same W); ``boxes``: optionally
    each sampled frame's person boxes (M, 4) x1, y1, x2, y2 in the same pixels. Returns
    ``[(column, score)]`` sorted by column; an empty list for a single picture (or no frames).
    """
    if len(profiles) == 0:
        return []
    score = np.median(np.stack(list(profiles)), axis=0)
    w = len(score)
    base = float(np.median(score))
    margin = round(_MIN_PANEL * w)
    cand = [c for c in range(margin, w - margin) if score[c] >= _SEAM_SCORE and score[c] >= _SEAM_RATIO * base]
    framed = [np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in (boxes or []) if len(b)]
    if framed:
        tol = _CROSS_TOL * w

        def crossed(c: int) -> bool:
            hits = sum(bool(((b[:, 0] < c - tol) & (b[:, 2] > c + tol)).any()) for b in framed)
            return hits > _CROSS_SHARE * len(framed)

        cand = [c for c in cand if not crossed(c)]
    cand.sort(key=lambda c: -score[c])
    seams: list[int] = []
    for c in cand:
        if all(abs(c - s) >= margin for s in seams):
            seams.append(c)
    return sorted((c, float(score[c])) for c in seams)


def panels(width: int, seams: list[tuple[int, float]] | list[int]) -> list[tuple[int, int]]:
    """Column ranges ``[(x0, x1)]`` (x1 exclusive) of the panels between ``seams``."""
    cols = sorted(int(s[0]) if isinstance(s, tuple) else int(s) for s in seams)
    edges = [0] + cols + [int(width)]
    return [(a, b) for a, b in pairwise(edges) if b > a]


@dataclass
class Layout:
    """``layout``: ``"single"`` or ``"split"``; ``seams``: seam columns as shares of the width in
    [0, 1], left to right; ``scores``: their seam scores (module docstring)."""

    layout: str
    seams: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)


def measure_layout(
    video_path: str, start_s: float = 0.0, end_s: float | None = None, fps: float = 25.0, stride: int = 10
) -> Layout:
    """Split-screen layout of ``[start_s, end_s)`` of a video, on every ``stride``-th frame at
    ``fps`` shrunk to 320 px (as the camera-motion meter samples). Raises
    :class:`talkset.media.MediaError` / ``av`` errors when the file cannot be decoded."""
    from talkset import media
    from talkset.stages.camera import _gray_small

    profiles, width = [], 0
    for k, _t, img in media.iter_frames(str(video_path), start_s, end_s, fps=fps):
        if k % stride == 0:
            gray, _s = _gray_small(img)
            width = gray.shape[1]
            profiles.append(column_step_share(gray))
    seams = find_seams(profiles)
    if not seams:
        return Layout("single")
    return Layout("split", [c / width for c, _ in seams], [sc for _, sc in seams])
