"""Face masks for the Interactive Audio Driver (IAD, MIT paper Sec. 4, Eq. 2), as the seed builds them.

The seed (Zeyu-Zhu/Multi-human-Talking-Video-Dataset, ``baseline_train/src/dataset/stage_two.py``,
``generate_masks``) builds each person's face mask from COCO-WholeBody keypoints (133 points):

- an upper-body box ("full mask"): both shoulders (5, 6), the same two points moved up by 1.2 x the
  shoulder width, and the face landmarks 23 (jaw, right end), 31 (chin), 39 (jaw, left end) and 53
  (nose tip); their bounding box is scaled about its centre by 1.4 (x) and 1.6 (y);
- the face box: the bounding box of those four face landmarks scaled by 1.4 (x) and 1.6 (y), then
  intersected with the upper-body box (kept inside the person); an empty intersection gives the
  upper-body box.

:func:`landmark_face_box` does the same with keypoint scores (points under ``thr`` are ignored,
which the seed does not do), clips to the image, and additionally intersects with the person's
instance box when one is given. Without face landmarks (the 59-keypoint subset keeps only the
nose and ears on the head) the nose and ears (COCO 0, 3, 4) stand in for them, and with fewer than
two such points the person has no face box (NaN). :func:`box_face_masks` rasterises boxes; the
face box from a detector (talkset's mask before issue 13) is the ``box`` option.
"""

from __future__ import annotations

import numpy as np

#: seed's face landmarks in the 133 layout (68-point face starts at 23): jaw ends, chin, nose tip
FACE_POINTS = (23, 31, 39, 53)
#: COCO body head points used without face landmarks: nose, left ear, right ear
HEAD_POINTS = (0, 3, 4)
SHOULDERS = (5, 6)
FACE_SCALE = (1.4, 1.6)
BODY_SCALE = (1.4, 1.6)


def _as_133(kp: np.ndarray) -> np.ndarray:
    if kp.shape[-2] == 133:
        return kp
    if kp.shape[-2] == 59:
        from talkset.wholebody import from_subset_59

        return from_subset_59(kp)
    raise ValueError(f"keypoints must be (..., 133, 3) COCO-WholeBody or (..., 59, 3) SUBSET_59, got {kp.shape}")


def _bbox(points: np.ndarray) -> np.ndarray:
    return np.array([points[:, 0].min(), points[:, 1].min(), points[:, 0].max(), points[:, 1].max()], np.float64)


def _scale(box: np.ndarray, sx: float, sy: float) -> np.ndarray:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    w, h = (box[2] - box[0]) * sx, (box[3] - box[1]) * sy
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def _intersect(a: np.ndarray, b: np.ndarray) -> np.ndarray | None:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    return np.array([x1, y1, x2, y2]) if x1 < x2 and y1 < y2 else None


def _one_face_box(kp: np.ndarray, person_box: np.ndarray | None, thr: float) -> np.ndarray:
    ok = np.isfinite(kp).all(1) & (np.nan_to_num(kp[:, 2], nan=0.0) >= thr)
    face = [i for i in FACE_POINTS if ok[i]]
    if len(face) < 2:
        face = [i for i in HEAD_POINTS if ok[i]]
    if len(face) < 2:
        return np.full(4, np.nan, np.float32)
    pts = kp[face, :2].astype(np.float64)
    face_box = _scale(_bbox(pts), *FACE_SCALE)
    if face_box[2] - face_box[0] < 1 or face_box[3] - face_box[1] < 1:  # degenerate (collinear points)
        c, half = pts.mean(0), max(float(np.ptp(pts[:, 0])), float(np.ptp(pts[:, 1])), 2.0) * FACE_SCALE[1] / 2
        face_box = np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half])
    container = None
    if ok[SHOULDERS[0]] and ok[SHOULDERS[1]]:
        s = kp[list(SHOULDERS), :2].astype(np.float64)
        length = abs(s[0, 0] - s[1, 0]) * 1.2
        up = s.copy()
        up[:, 1] = np.maximum(up[:, 1] - length, 0)
        container = _scale(_bbox(np.concatenate([s, up, pts])), *BODY_SCALE)
    if person_box is not None and np.isfinite(person_box).all():
        pb = np.asarray(person_box, np.float64)
        container = pb if container is None else (_intersect(container, pb) if _intersect(container, pb) is not None
                                                  else pb)
    if container is not None:
        inside = _intersect(face_box, container)
        face_box = container if inside is None else inside
    return face_box.astype(np.float32)


def landmark_face_box(keypoints: np.ndarray, person_boxes: np.ndarray | None = None,
                      image_size: tuple[int, int] | None = None, thr: float = 0.3) -> np.ndarray:
    """The seed's face box per person (see the module docstring).

    keypoints: (..., K, 3) float (x, y, score) in pixels, K = 133 (COCO-WholeBody) or 59
    (:data:`talkset.wholebody.SUBSET_59`); NaN rows = not found. person_boxes: (..., 4) x1, y1, x2,
    y2 pixels (the instance box; NaN = none) or None. image_size: (H, W) to clip to, or None.
    Returns float32 (..., 4) boxes, NaN where the person has no face box. Raises ValueError for
    other K.
    """
    kp = _as_133(np.asarray(keypoints, np.float32))
    lead = kp.shape[:-2]
    flat = kp.reshape(-1, 133, kp.shape[-1])
    pb = None if person_boxes is None else np.asarray(person_boxes, np.float32).reshape(-1, 4)
    if pb is not None and pb.shape[0] != flat.shape[0]:
        raise ValueError(f"person_boxes {np.shape(person_boxes)} do not match keypoints {kp.shape}")
    out = np.stack([_one_face_box(flat[i], None if pb is None else pb[i], thr) for i in range(flat.shape[0])]) \
        if flat.shape[0] else np.zeros((0, 4), np.float32)
    if image_size is not None:
        h, w = image_size
        out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, w)
        out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, h)
    return out.reshape(lead + (4,))


def box_face_masks(boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Rasterise boxes: (..., 4) x1, y1, x2, y2 in pixels (NaN = none) -> float32 (..., H, W) {0, 1}
    (pixels whose cell overlaps the box: floor of x1 / y1 to ceil of x2 / y2, clipped)."""
    b = np.asarray(boxes, np.float32)
    h, w = size
    flat = b.reshape(-1, 4)
    out = np.zeros((flat.shape[0], h, w), np.float32)
    for i, (x1, y1, x2, y2) in enumerate(flat):
        if not np.isfinite([x1, y1, x2, y2]).all():
            continue
        c1, c2 = int(np.clip(np.floor(x1), 0, w)), int(np.clip(np.ceil(x2), 0, w))
        r1, r2 = int(np.clip(np.floor(y1), 0, h)), int(np.clip(np.ceil(y2), 0, h))
        out[i, r1:r2, c1:c2] = 1.0
    return out.reshape(b.shape[:-1] + (h, w))


def face_masks(size: tuple[int, int], keypoints: np.ndarray | None = None, person_boxes: np.ndarray | None = None,
               face_boxes: np.ndarray | None = None, kind: str = "landmarks", thr: float = 0.3) -> np.ndarray:
    """IAD face masks, float32 (..., H, W) {0, 1}, the ``face_masks`` batch entry of CovOG.

    ``kind="landmarks"`` (the seed's, ``cfg.iad.face_mask``): from ``keypoints`` (..., K, 3) with
    :func:`landmark_face_box`, kept inside ``person_boxes`` (..., 4) when given. ``kind="box"``:
    ``face_boxes`` (..., 4) as given (face detector / head-keypoint box; talkset's mask before issue
    13). Raises ValueError for an unknown kind or a missing input.
    """
    if kind == "landmarks":
        if keypoints is None:
            raise ValueError("face mask kind 'landmarks' needs keypoints (..., 133 or 59, 3)")
        return box_face_masks(landmark_face_box(keypoints, person_boxes, size, thr), size)
    if kind == "box":
        if face_boxes is None:
            raise ValueError("face mask kind 'box' needs face_boxes (..., 4)")
        return box_face_masks(face_boxes, size)
    raise ValueError(f"face mask kind must be 'landmarks' or 'box', got {kind!r}")
