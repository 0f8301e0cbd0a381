"""Whole-body keypoints (COCO-WholeBody 133) from MediaPipe Holistic, run top-down on person boxes.

Backend ``mediapipe`` of the pose stage (issue 5, MIT paper Sec. 3.1 annotates whole-body pose per
person). ``mediapipe==0.10.21`` is the last release whose wheel ships the Holistic models; only
``model_complexity=1`` is bundled (0 and 2 try to download and fail offline).

Top-down: for each person box the frame is cropped (box + ``pad`` on every side, clipped to the
frame); the parts of *other* people's boxes inside that crop that are not also inside the target's
own box are filled with ``mask_value``, so Holistic cannot pick a neighbour's hands or face; the
crop is optionally upscaled to ``min_crop_side``; Holistic runs on it (RGB) and its normalized
landmarks are mapped back to frame pixels.

Mapping onto the 133 slots (``talkset.wholebody`` layout):

* body 0-16 <- pose landmarks :data:`POSE_TO_BODY` (nose 0, eyes 2/5, ears 7/8, shoulders 11/12,
  elbows 13/14, wrists 15/16, hips 23/24, knees 25/26, ankles 27/28); score = landmark visibility.
* feet 17-22: big toe <- ``foot_index`` 31/32, heel <- 29/30 (score = visibility). MediaPipe has no
  small toe: **approximation**, placed at ``foot_index + 0.2 * (heel - foot_index)`` (a little behind
  the toe tip along the foot) with half the foot_index visibility.
* face 23-90 <- 468-point face mesh through :data:`FACE_MESH_TO_IBUG68`, the widely used
  MediaPipe -> dlib/iBUG-68 correspondence of Peizhi Yan (github.com/PeizhiYan/
  Mediapipe_2_Dlib_Landmarks); where it lists two mesh points the mean is used. The face mesh has no
  points on the lower jaw's side at dlib's height and no brow ends exactly where iBUG puts them, so
  these slots are **approximations**: the jaw contour 0-16 (mesh face-oval points; 0-2 and 14-16
  lie higher, near the temples/cheeks), brow outer ends 17 and 26 (mesh 156 / 383), the averaged
  slots 3, 4, 12, 18, 21, 22, 25, 27, 28. Eyes, nose and lips are direct correspondences.
  Score: ``face_score`` (0.9) where Holistic returns a face mesh, else 0.
* hands 91-111 / 112-132 <- ``left_hand_landmarks`` / ``right_hand_landmarks``. Holistic's
  "left" is the *person's* left (its hand ROI comes from pose landmark 15, the left wrist), and the
  MediaPipe hand order (wrist, thumb CMC/MCP/IP/tip, index MCP/PIP/DIP/tip, middle, ring, pinky)
  equals the COCO-WholeBody hand order (root, thumb1-4, forefinger1-4, ...). Score ``hand_score``
  (0.9) where the hand was found, else 0.

A landmark that falls outside the crop (MediaPipe extrapolates) or in a masked area gets score 0.

With ``prefer_yolo_body`` the caller may pass the person detector's 17 COCO body keypoints; per
keypoint the one with the higher score wins (see :func:`fuse_body`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from talkset.wholebody import NUM_KEYPOINTS

#: MediaPipe Pose landmark index for each COCO body keypoint 0..16.
POSE_TO_BODY: tuple[int, ...] = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)

#: iBUG/dlib-68 face point i (0-based) <- mean of these MediaPipe face-mesh (468) indices.
#: Source: Peizhi Yan, Mediapipe_2_Dlib_Landmarks (correspondence table, 1-based there).
FACE_MESH_TO_IBUG68: tuple[tuple[int, ...], ...] = (
    # jaw 0-16 (person's right ear -> chin -> left ear)
    (127,), (234,), (93,), (132, 58), (58, 172), (136,), (150,), (176,), (152,),
    (400,), (379,), (365,), (397, 288), (361,), (323,), (454,), (356,),
    # right brow 17-21
    (156,), (70, 63), (105,), (66,), (107, 55),
    # left brow 22-26
    (336, 285), (296,), (334,), (293, 300), (383,),
    # nose bridge 27-30, lower nose 31-35
    (168, 6), (197, 195), (5,), (4,), (98,), (97,), (2,), (326,), (327,),
    # right eye 36-41
    (33,), (160,), (158,), (133,), (153,), (144,),
    # left eye 42-47
    (362,), (385,), (387,), (263,), (373,), (380,),
    # outer lip 48-59
    (61,), (39,), (37,), (0,), (267,), (269,), (291,), (321,), (314,), (17,), (84,), (91,),
    # inner lip 60-67
    (78,), (82,), (13,), (312,), (308,), (317,), (14,), (87,),
)
assert len(FACE_MESH_TO_IBUG68) == 68

#: iBUG-68 slots whose MediaPipe source is an approximation (see the module docstring).
FACE_APPROXIMATE: tuple[int, ...] = tuple(range(0, 17)) + (17, 18, 21, 22, 25, 26, 27, 28)

FACE_SCORE = 0.9
HAND_SCORE = 0.9


def _face_index_matrix() -> tuple[np.ndarray, np.ndarray]:
    a = np.array([t[0] for t in FACE_MESH_TO_IBUG68])
    b = np.array([t[-1] for t in FACE_MESH_TO_IBUG68])
    return a, b


_FACE_A, _FACE_B = _face_index_matrix()


def mediapipe_version() -> str:
    import mediapipe as mp

    return str(mp.__version__)


def _landmarks_xy(lms) -> np.ndarray:
    return np.array([(p.x, p.y) for p in lms.landmark], dtype=np.float64)


def holistic_to_wholebody(results, width: int, height: int, face_score: float = FACE_SCORE,
                          hand_score: float = HAND_SCORE) -> np.ndarray:
    """Map one Holistic result (normalized to a ``width`` x ``height`` image) to (133, 3) float32.

    Coordinates in pixels of that image; scores as in the module docstring; slots not found 0.
    """
    out = np.zeros((NUM_KEYPOINTS, 3), dtype=np.float32)
    wh = np.array([width, height], dtype=np.float64)
    pose = results.pose_landmarks
    if pose is not None:
        xy = _landmarks_xy(pose) * wh
        vis = np.array([p.visibility for p in pose.landmark], dtype=np.float64)
        idx = list(POSE_TO_BODY)
        out[0:17, :2] = xy[idx]
        out[0:17, 2] = vis[idx]
        for side, (ankle_off, toe, heel) in enumerate(((17, 31, 29), (20, 32, 30))):
            out[ankle_off, :2] = xy[toe]
            out[ankle_off, 2] = vis[toe]
            out[ankle_off + 1, :2] = xy[toe] + 0.2 * (xy[heel] - xy[toe])  # small toe: approximation
            out[ankle_off + 1, 2] = 0.5 * vis[toe]
            out[ankle_off + 2, :2] = xy[heel]
            out[ankle_off + 2, 2] = vis[heel]
    face = results.face_landmarks
    if face is not None:
        xy = _landmarks_xy(face) * wh
        out[23:91, :2] = 0.5 * (xy[_FACE_A] + xy[_FACE_B])
        out[23:91, 2] = face_score
    for lms, off in ((results.left_hand_landmarks, 91), (results.right_hand_landmarks, 112)):
        if lms is not None:
            out[off : off + 21, :2] = _landmarks_xy(lms) * wh
            out[off : off + 21, 2] = hand_score
    return out


#: A detector body keypoint at or above this score is taken over MediaPipe's (see :func:`fuse_body`).
YOLO_KEEP_SCORE = 0.3


def fuse_body(mp_kpts: np.ndarray, yolo_body: np.ndarray | None, keep: float = YOLO_KEEP_SCORE) -> np.ndarray:
    """Merge the person detector's 17 COCO body keypoints (YOLO-pose) into MediaPipe's 133.

    Per body keypoint the detector's point is taken when its score is >= ``keep`` (0.3) or not below
    MediaPipe's visibility; otherwise MediaPipe's point stays. Why (measured on the blackjournal
    two-shot, 49 frames x 2 people): on the frontal guest both agree on the upper body (median
    2.5-7 px at 480x360), but on the interviewer seen from the side Holistic's pose went wrong
    (elbow/hip 20-33 px off, the arm drawn onto the papers) while still reporting visibility > 0.9,
    and it gives his hidden left eye visibility 0.89 where YOLO gives 0.04: MediaPipe's visibility
    is over-confident, YOLO's COCO-trained keypoints match the COCO definitions (hips, ears). So the
    detector wins wherever it sees the joint, MediaPipe fills only joints the detector missed.
    Returns a new float32 (133, 3) array; face, feet and hands are untouched.
    """
    out = np.array(mp_kpts, dtype=np.float32, copy=True)
    if yolo_body is None:
        return out
    y = np.asarray(yolo_body, dtype=np.float32).reshape(17, -1)[:, :3]
    take = np.isfinite(y).all(axis=1) & ((y[:, 2] >= keep) | (y[:, 2] >= out[:17, 2]))
    out[:17][take] = y[take]
    return out


def _rect_mask(shape, rect, x0, y0) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    x1, y1, x2, y2 = (float(v) for v in rect[:4])
    m[max(0, int(y1) - y0) : max(0, int(np.ceil(y2)) - y0), max(0, int(x1) - x0) : max(0, int(np.ceil(x2)) - x0)] = True
    return m


def masked_region(
    frame: np.ndarray,
    region: Sequence[float],
    box: Sequence[float],
    others: Sequence[Sequence[float]] = (),
    mask_value: int = 0,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Cut ``region`` (x1, y1, x2, y2 px, may extend past the frame: filled with ``mask_value``)
    out of ``frame``; pixels of ``others`` (neighbours' boxes) that are not inside the target's own
    ``box`` are set to ``mask_value``. Returns ``(crop, valid, (x0, y0))``: ``valid`` an HxW bool
    map of real, unmasked pixels, ``(x0, y0)`` the crop's top-left corner in frame pixels.
    """
    H, W = frame.shape[:2]
    x0, y0 = int(np.floor(region[0])), int(np.floor(region[1]))
    xe, ye = int(np.ceil(region[2])), int(np.ceil(region[3]))
    if xe - x0 < 2 or ye - y0 < 2 or xe <= 0 or ye <= 0 or x0 >= W or y0 >= H:
        raise ValueError(f"region {tuple(region)} lies outside the {W}x{H} frame")
    crop = np.full((ye - y0, xe - x0, 3), mask_value, dtype=frame.dtype)
    valid = np.zeros(crop.shape[:2], dtype=bool)
    sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(W, xe), min(H, ye)
    crop[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = frame[sy0:sy1, sx0:sx1]
    valid[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = True
    if len(others):
        own = _rect_mask(valid.shape, box, x0, y0)
        for ob in others:
            valid &= ~(_rect_mask(valid.shape, ob, x0, y0) & ~own)
        crop[~valid] = mask_value
    return crop, valid, (x0, y0)


def crop_with_mask(
    frame: np.ndarray,
    box: Sequence[float],
    others: Sequence[Sequence[float]] = (),
    pad: float = 0.15,
    mask_value: int = 0,
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Crop ``box`` (x1, y1, x2, y2 px) + ``pad`` x its size on every side, clipped to the frame,
    with neighbours masked as in :func:`masked_region`. Returns ``(crop, valid, (x0, y0))``.
    Raises ValueError when the box lies outside the frame.
    """
    H, W = frame.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    bw, bh = max(1.0, x2 - x1), max(1.0, y2 - y1)
    region = (
        max(0.0, np.floor(x1 - pad * bw)), max(0.0, np.floor(y1 - pad * bh)),
        min(float(W), np.ceil(x2 + pad * bw)), min(float(H), np.ceil(y2 + pad * bh)),
    )
    return masked_region(frame, region, box, others, mask_value)


def _square(cx: float, cy: float, side: float) -> tuple[float, float, float, float]:
    h = side / 2.0
    return (cx - h, cy - h, cx + h, cy + h)


@dataclass
class MediaPipeWholeBody:
    """COCO-WholeBody keypoints for one person track from MediaPipe Holistic on its boxes.

    One instance per person track (Holistic keeps tracking state between calls when
    ``static_image_mode`` is False, which is faster on video). Call :meth:`close` when done.

    Fallbacks (Holistic derives face and hand regions from its own body pose, which fails on people
    seen from the side and on small faces looking down): when Holistic returns no face but >= 2 head
    keypoints (nose, eyes, ears; after fusion with the detector's) have score >= 0.3, MediaPipe
    FaceMesh runs on a square head crop (3x the head keypoints' span, upscaled to ``fallback_side``);
    when a hand is missing but its wrist and elbow are seen, MediaPipe Hands runs on a square crop
    around the wrist (2x the forearm length, centred a third of a forearm beyond the wrist) and the
    detected hand whose wrist lands nearest our wrist (within half the crop) is taken.
    Measured on the blackjournal two-shot (2 s): guest's face found in 22/49 frames by Holistic
    alone, 29/50 with the fallback (the misses are frames where she looks down); the interviewer, seen
    from the side, 5/49 -> 39/50 (a frontal mesh on a profile: approximate contour).

    Parameters: ``pad`` crop padding as a fraction of the box size; ``mask_value`` grey level for
    neighbours' boxes; ``min_crop_side`` upscale person crops whose longer side is smaller (px,
    0 = never; measured: no gain on 480x360 footage); ``face_score`` / ``hand_score`` the constant
    confidence of found face / hand points; ``fallbacks`` enables the FaceMesh fallback and, with
    ``hand_fallback`` also set, the Hands one (off by default: measured on the blackjournal two-shot
    it raised the cost from 0.051 to 0.078 CPU s per person-frame, +50%, and found a missing hand in
    only ~5% more frames, since the interviewer's hands are hidden behind papers).

    Cost measured here (2-core CPU, 480x360 two-shot, 98 person-frames): 0.047 CPU s per
    person-frame without fallbacks, 0.051 with the face fallback (default).
    """

    static_image_mode: bool = False
    model_complexity: int = 1
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    pad: float = 0.15
    mask_value: int = 0
    min_crop_side: int = 0
    face_score: float = FACE_SCORE
    hand_score: float = HAND_SCORE
    fallbacks: bool = True
    hand_fallback: bool = False
    fallback_side: int = 256

    def __post_init__(self) -> None:
        if self.model_complexity != 1:
            raise ValueError(
                "mediapipe 0.10.21 ships only the model_complexity=1 Holistic pose model; "
                "0 and 2 would try to download their .tflite at run time"
            )
        from mediapipe.python.solutions import face_mesh, hands, holistic

        self._holistic = holistic.Holistic(
            static_image_mode=self.static_image_mode,
            model_complexity=1,
            smooth_landmarks=not self.static_image_mode,
            enable_segmentation=False,
            refine_face_landmarks=False,
            min_detection_confidence=self.min_detection_confidence,
            min_tracking_confidence=self.min_tracking_confidence,
        )
        self._face = self._hands = None
        if self.fallbacks:
            # Crops move with the person, so fallbacks run per image (no tracking state).
            self._face = face_mesh.FaceMesh(
                static_image_mode=True, max_num_faces=1, refine_landmarks=False,
                min_detection_confidence=self.min_detection_confidence,
            )
        if self.fallbacks and self.hand_fallback:
            self._hands = hands.Hands(
                static_image_mode=True, max_num_hands=2, model_complexity=1,
                min_detection_confidence=self.min_detection_confidence,
            )

    # -- helpers -------------------------------------------------------------------------------
    def _run_crop(self, model, frame, region, box, others):
        """Run a MediaPipe solution on ``region`` resized to ``fallback_side`` squared; returns
        (result, valid map, (x0, y0), (sx, sy) resize factors) or None when the region is off-frame."""
        import cv2

        try:
            crop, valid, (x0, y0) = masked_region(frame, region, box, others, self.mask_value)
        except ValueError:
            return None
        side = self.fallback_side
        sx, sy = side / crop.shape[1], side / crop.shape[0]
        rgb = cv2.cvtColor(cv2.resize(crop, (side, side), interpolation=cv2.INTER_CUBIC), cv2.COLOR_BGR2RGB)
        rgb.flags.writeable = False
        return model.process(rgb), valid, (x0, y0), (sx, sy)

    @staticmethod
    def _to_frame(lms, valid, origin, scale, side) -> tuple[np.ndarray, np.ndarray]:
        xy = _landmarks_xy(lms) * side
        xy[:, 0] = xy[:, 0] / scale[0]
        xy[:, 1] = xy[:, 1] / scale[1]
        xi, yi = np.floor(xy[:, 0]).astype(int), np.floor(xy[:, 1]).astype(int)
        h, w = valid.shape
        seen = (xi >= 0) & (yi >= 0) & (xi < w) & (yi < h)
        seen[seen] = valid[yi[seen], xi[seen]]
        return xy + np.array(origin, dtype=np.float64), seen

    def _face_fallback(self, kp, frame, box, others) -> None:
        head = kp[0:5]
        ok = head[:, 2] >= 0.3
        if ok.sum() < 2:
            return
        pts = head[ok, :2]
        span = float(np.ptp(pts, axis=0).max())
        cx, cy = pts.mean(axis=0)
        got = self._run_crop(self._face, frame, _square(cx, cy, max(3.0 * span, 24.0)), box, others)
        if got is None or not got[0].multi_face_landmarks:
            return
        res, valid, origin, scale = got
        xy, seen = self._to_frame(res.multi_face_landmarks[0], valid, origin, scale, self.fallback_side)
        f = 0.5 * (xy[_FACE_A] + xy[_FACE_B])
        fs = seen[_FACE_A] & seen[_FACE_B]
        kp[23:91, :2] = f
        kp[23:91, 2] = np.where(fs, self.face_score, 0.0)

    def _hand_fallback(self, kp, frame, box, others, elbow: int, wrist: int, off: int) -> None:
        if kp[wrist, 2] < 0.3 or kp[elbow, 2] < 0.3:
            return
        w, e = kp[wrist, :2].astype(np.float64), kp[elbow, :2].astype(np.float64)
        fore = float(np.linalg.norm(w - e))
        if fore < 4:
            return
        c = w + (w - e) / 3.0
        side = 2.0 * fore
        got = self._run_crop(self._hands, frame, _square(c[0], c[1], side), box, others)
        if got is None or not got[0].multi_hand_landmarks:
            return
        res, valid, origin, scale = got
        best, best_d = None, 0.5 * side
        for lms in res.multi_hand_landmarks:
            xy, seen = self._to_frame(lms, valid, origin, scale, self.fallback_side)
            d = float(np.linalg.norm(xy[0] - w))
            if d < best_d:
                best, best_d = (xy, seen), d
        if best is None:
            return
        xy, seen = best
        kp[off : off + 21, :2] = xy
        kp[off : off + 21, 2] = np.where(seen, self.hand_score, 0.0)

    # -- main ----------------------------------------------------------------------------------
    def __call__(
        self,
        frame: np.ndarray,
        box: Sequence[float],
        others: Sequence[Sequence[float]] = (),
        yolo_body: np.ndarray | None = None,
    ) -> np.ndarray:
        """Keypoints of the person in ``box`` (x1, y1, x2, y2 px) of ``frame`` (HxWx3 uint8 BGR).

        ``others``: boxes of the other people in this frame (masked out). ``yolo_body``: optional
        (17, 3) detector body keypoints in frame px, merged by :func:`fuse_body`.
        Returns float32 (133, 3) ``[x px, y px, score]`` in frame pixels; slots not found are all 0.
        Raises ValueError when the box lies outside the frame.
        """
        import cv2

        crop, valid, (x0, y0) = crop_with_mask(frame, box, others, self.pad, self.mask_value)
        ch, cw = crop.shape[:2]
        s = 1.0
        if self.min_crop_side and max(ch, cw) < self.min_crop_side:
            s = self.min_crop_side / float(max(ch, cw))
            crop = cv2.resize(crop, (int(round(cw * s)), int(round(ch * s))), interpolation=cv2.INTER_CUBIC)
        rgb = cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
        rgb.flags.writeable = False
        res = self._holistic.process(rgb)
        kp = holistic_to_wholebody(res, rgb.shape[1], rgb.shape[0], self.face_score, self.hand_score)
        kp[:, :2] /= s
        # unobservable: outside the crop or in a masked neighbour's area
        xi = np.floor(kp[:, 0]).astype(np.int64)
        yi = np.floor(kp[:, 1]).astype(np.int64)
        inside = (xi >= 0) & (yi >= 0) & (xi < cw) & (yi < ch)
        seen = np.zeros(NUM_KEYPOINTS, dtype=bool)
        seen[inside] = valid[yi[inside], xi[inside]]
        kp[~seen, 2] = 0.0
        kp[:, 0] += x0
        kp[:, 1] += y0
        kp = fuse_body(kp, yolo_body)
        if self.fallbacks:
            if not (kp[23:91, 2] > 0).any():
                self._face_fallback(kp, frame, box, others)
        if self.fallbacks and self.hand_fallback:
            if not (kp[91:112, 2] > 0).any():
                self._hand_fallback(kp, frame, box, others, elbow=7, wrist=9, off=91)
            if not (kp[112:133, 2] > 0).any():
                self._hand_fallback(kp, frame, box, others, elbow=8, wrist=10, off=112)
        kp[~(kp[:, 2] > 0)] = 0.0
        return kp.astype(np.float32)

    def close(self) -> None:
        for attr in ("_holistic", "_face", "_hands"):
            m = getattr(self, attr, None)
            if m is not None:
                m.close()
                setattr(self, attr, None)

    def __enter__(self) -> "MediaPipeWholeBody":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
