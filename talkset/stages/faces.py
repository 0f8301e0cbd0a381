"""faces stage: YuNet face detection on every clip frame, linked into face tracks.

Detection uses OpenCV's YuNet (``cv2.FaceDetectorYN``, weights
``face_detection_yunet_2026may.onnx``): per frame, rows of x, y, w, h, 5 landmarks (x, y) and a
score. Linking follows the TalkNet / Light-ASD demo's ``track_shot`` (TalkNet-ASD
``demoTalkNet.py``): a detection joins a face track when its IoU with the track's last box is
> 0.5 (``iouThres``) and it comes at most ``numFailedDet`` = 10 frames after it; missed frames
inside a track are filled by linear interpolation (``interp1d`` in the reference); tracks of
``minTrack`` = 10 frames or fewer are dropped, and so are tracks whose mean face size is not above
``minFaceSize``. The reference detects with S3FD at ``facedetScale`` 0.25 and confidence 0.9; we
use YuNet (S3FD weights are not available here) at a max side of 640 px.

Output, ``clip.face_tracks``: a list of :class:`talkset.items.FaceTrack` (consecutive clip
frames with gaps interpolated, boxes and landmarks in clip pixels, YuNet scores 0 and
``detected`` False on interpolated frames), ordered by their first frame, then by box centre x;
ids are 0..N-1 in that order.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np

from talkset.items import Clip, FaceTrack
from talkset.stages.base import Resources, Stage, StageError


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a`` (N, 4) and ``b`` (M, 4), x1 y1 x2 y2 -> (N, M) float64."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


@dataclass
class _Open:
    """A face track being built: one row per detection (frames may have gaps)."""

    frames: list[int] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    landmarks: list[np.ndarray] = field(default_factory=list)


def link_face_tracks(
    detections: list[np.ndarray],
    iou_link: float = 0.5,
    max_gap: int = 10,
) -> list[_Open]:
    """Link per-frame face detections into face tracks (greedy IoU, as TalkNet's ``track_shot``).

    ``detections[k]`` is a float array (N_k, 15): x1, y1, x2, y2, 5 landmarks (x, y), score, for
    frame ``k``. A detection joins the live track whose last box overlaps it most, if that IoU is
    > ``iou_link`` and the frame is at most ``max_gap`` frames after the track's last detection;
    pairs are taken greedily by decreasing IoU, each track and detection at most once per frame.
    Unmatched detections start new tracks. Returns all tracks (unfiltered, with gaps).
    """
    tracks: list[_Open] = []
    live: list[int] = []
    for k, dets in enumerate(detections):
        live = [t for t in live if k - tracks[t].frames[-1] <= max_gap]
        dets = np.asarray(dets, dtype=np.float64).reshape(-1, 15)
        used_d: set[int] = set()
        if len(dets) and live:
            last = np.stack([tracks[t].boxes[-1] for t in live])
            iou = box_iou(dets[:, :4], last)
            order = np.dstack(np.unravel_index(np.argsort(-iou, axis=None), iou.shape))[0]
            used_t: set[int] = set()
            for di, ti in order:
                if iou[di, ti] <= iou_link:
                    break
                if di in used_d or ti in used_t:
                    continue
                used_d.add(int(di))
                used_t.add(int(ti))
                _append(tracks[live[ti]], k, dets[di])
        for di in range(len(dets)):
            if di not in used_d:
                tracks.append(_Open())
                _append(tracks[-1], k, dets[di])
                live.append(len(tracks) - 1)
    return tracks


def _append(tr: _Open, k: int, det: np.ndarray) -> None:
    tr.frames.append(k)
    tr.boxes.append(det[:4].copy())
    tr.landmarks.append(det[4:14].reshape(5, 2).copy())
    tr.scores.append(float(det[14]))


def fill_track(tr: _Open) -> dict[str, np.ndarray]:
    """Interpolate a linked track over its gaps -> consecutive ``frame_idx`` arrays (see module doc)."""
    fr = np.asarray(tr.frames, dtype=np.int64)
    full = np.arange(fr[0], fr[-1] + 1)
    boxes = np.stack(tr.boxes)
    lms = np.stack(tr.landmarks).reshape(len(fr), 10)
    boxes_i = np.stack([np.interp(full, fr, boxes[:, j]) for j in range(4)], axis=1)
    lms_i = np.stack([np.interp(full, fr, lms[:, j]) for j in range(10)], axis=1)
    detected = np.isin(full, fr)
    scores = np.zeros(len(full), dtype=np.float32)
    scores[fr - fr[0]] = tr.scores
    return {
        "frame_idx": full.astype(np.int32),
        "boxes": boxes_i.astype(np.float32),
        "scores": scores,
        "landmarks": lms_i.reshape(-1, 5, 2).astype(np.float32),
        "detected": detected,
    }


def median_smooth(x: np.ndarray, kernel: int) -> np.ndarray:
    """Running median along axis 0 with an odd ``kernel`` (edges use the shrunken window)."""
    if kernel <= 1 or len(x) < 3:
        return x
    h = kernel // 2
    out = np.empty_like(x)
    for i in range(len(x)):
        out[i] = np.median(x[max(0, i - h) : i + h + 1], axis=0)
    return out


@dataclass
class FacesStage(Stage):
    """Face tracks of a clip with YuNet + IoU linking (TalkNet ``track_shot``), see module doc.

    Parameters:
    - ``weights``: YuNet ONNX file name or path (resolved by :func:`talkset.weights.resolve`).
    - ``score_threshold``: YuNet confidence to keep a detection. 0.8: the detector's usual
      setting here (``../shared/weights/README.md``); opencv_zoo's demo uses 0.9 and TalkNet's S3FD
      0.9, but on the 480x360 two-shot of ``dvscripts_blackjournal.mp4`` both faces (36-42 px)
      score 0.79-0.91, so 0.9 loses most frames. Frames where a face scores below it are
      treated as missed and filled by interpolation when the gap is short.
    - ``nms_threshold``: YuNet's NMS IoU (0.3, opencv_zoo default). ``top_k``: YuNet's pre-NMS cap.
    - ``detect_max_side``: frames are downscaled so that their longer side is at most this many
      pixels before detection (720p -> 640x360); boxes and landmarks are mapped back to clip
      pixels. 0 disables downscaling.
    - ``iou_link`` (0.5, TalkNet ``iouThres``), ``max_gap`` (10 frames = 0.4 s at 25 fps, TalkNet
      ``numFailedDet``): see :func:`link_face_tracks`.
    - ``min_track_frames``: face tracks with fewer frames (after interpolation) are dropped. 10
      frames (0.4 s): TalkNet keeps tracks with more than ``minTrack`` = 10 frames; we keep >= 10.
    - ``min_face_size``: drop face tracks whose median box side (max of w, h) is below this many
      pixels (TalkNet: mean size > 1 px). 20 px: smaller faces give no readable lips for the
      speaking stage's 112x112 crops.
    - ``smooth_kernel``: odd window (frames) of a running median over boxes and landmarks; 0 or 1
      (default) keeps the raw detections. The speaking stage smooths its crop centres itself, as
      the TalkNet demo does (``medfilt`` 13 at crop time), so raw boxes are stored here.
    """

    weights: str = "face_detection_yunet_2026may.onnx"
    score_threshold: float = 0.8
    nms_threshold: float = 0.3
    top_k: int = 5000
    detect_max_side: int = 640
    iou_link: float = 0.5
    max_gap: int = 10
    min_track_frames: int = 10
    min_face_size: float = 20.0
    smooth_kernel: int = 0

    name: ClassVar[str] = "faces"
    resources: ClassVar[Resources] = Resources(cpus=1)
    reads: ClassVar[tuple[str, ...]] = ("video_path",)
    writes: ClassVar[tuple[str, ...]] = ("face_tracks",)

    def __post_init__(self) -> None:
        self._detector = None
        self._path = None

    def setup(self) -> None:
        """Load YuNet. Raises :class:`talkset.weights.WeightsNotFound` naming the missing path."""
        import cv2

        from talkset.weights import resolve

        self._path = resolve(self.weights, what="OpenCV YuNet face detector (ONNX)")
        self._detector = cv2.FaceDetectorYN.create(
            str(self._path), "", (320, 320), float(self.score_threshold), float(self.nms_threshold), int(self.top_k)
        )

    def model_info(self) -> dict[str, str]:
        import cv2

        name = self._path.name if self._path is not None else self.weights
        return {"faces": f"YuNet {name} (OpenCV {cv2.__version__})"}

    def detect_frames(self, video_path: str, width: int | None = None, height: int | None = None) -> list[np.ndarray]:
        """Run YuNet on every frame of ``video_path``.

        Returns one float64 array (N, 15) per frame: x1, y1, x2, y2, 5 landmarks (x, y), score,
        in the video's pixels. Raises :class:`StageError` if the file cannot be decoded.
        """
        import av

        from talkset.media import MediaError, iter_frames, probe

        if self._detector is None:
            self.setup()
        if width is None or height is None:
            p = probe(video_path)
            width, height = p.width, p.height
        scale = 1.0
        if self.detect_max_side and max(width, height) > self.detect_max_side:
            scale = self.detect_max_side / max(width, height)
        out: list[np.ndarray] = []
        size = None
        try:
            for _, _, img in iter_frames(video_path, scale=scale):
                h, w = img.shape[:2]
                if size != (w, h):
                    size = (w, h)
                    self._detector.setInputSize(size)
                sx, sy = width / w, height / h  # exact back-mapping of the resized frame
                _, faces = self._detector.detect(img)
                if faces is None or len(faces) == 0:
                    out.append(np.zeros((0, 15)))
                    continue
                f = faces.astype(np.float64)
                rows = np.empty((len(f), 15))
                rows[:, 0] = f[:, 0] * sx
                rows[:, 1] = f[:, 1] * sy
                rows[:, 2] = (f[:, 0] + f[:, 2]) * sx
                rows[:, 3] = (f[:, 1] + f[:, 3]) * sy
                rows[:, 4:14:2] = f[:, 4:14:2] * sx
                rows[:, 5:14:2] = f[:, 5:14:2] * sy
                rows[:, 14] = f[:, 14]
                rows[:, [0, 2]] = rows[:, [0, 2]].clip(0, width)
                rows[:, [1, 3]] = rows[:, [1, 3]].clip(0, height)
                out.append(rows)
        except (MediaError, av.error.FFmpegError, IndexError) as exc:  # IndexError: no video stream
            raise StageError(f"faces: cannot decode clip {video_path}: {exc}") from exc
        return out

    def tracks_from_detections(self, detections: list[np.ndarray]) -> list[FaceTrack]:
        """Link, interpolate, filter (length, face size) and optionally smooth -> face tracks."""
        linked = link_face_tracks(detections, iou_link=self.iou_link, max_gap=self.max_gap)
        result = []
        for tr in linked:
            d = fill_track(tr)
            n = len(d["frame_idx"])
            if n < self.min_track_frames:
                continue
            b = d["boxes"]
            side = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
            if float(np.median(side)) < self.min_face_size:
                continue
            if self.smooth_kernel and self.smooth_kernel > 1:
                d["boxes"] = median_smooth(d["boxes"], self.smooth_kernel)
                d["landmarks"] = median_smooth(d["landmarks"], self.smooth_kernel)
            result.append(d)
        result.sort(key=lambda d: (int(d["frame_idx"][0]), float(d["boxes"][0, 0] + d["boxes"][0, 2])))
        return [FaceTrack(face_track_id=i, **d) for i, d in enumerate(result)]

    def process(self, task: Clip) -> Clip:
        """Return the clip with ``face_tracks`` (see module doc) and ``models["faces"]`` set."""
        if not task.video_path:
            raise StageError(f"faces: clip {task.clip_id} has no video_path (run the clip stage first)")
        import os

        if not os.path.isfile(task.video_path):
            raise StageError(f"faces: clip file {task.video_path} of {task.clip_id} does not exist")
        dets = self.detect_frames(task.video_path, task.width, task.height)
        if not dets:
            raise StageError(f"faces: clip {task.video_path} decoded to no frames")
        return replace(task, face_tracks=self.tracks_from_detections(dets), models={**task.models, **self.model_info()})
