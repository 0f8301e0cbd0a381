"""CovOG training samples from a talkset dataset root (MIT paper, Sec. 4).

:class:`TalkingClipDataset` reads the ``clips`` and ``frames`` tables of a root (DuckDB views from
:func:`talkset.storage.catalog.connect`), decodes each clip's frames once at the model resolution and keeps
them in memory (an LRU of ``max_cached_clips`` clips), and returns windows of ``num_frames``
consecutive frames plus a reference frame, with everything CovOG conditions on.

Geometry: every frame is resized to fit inside ``height x width`` keeping its aspect ratio
(``cv2.INTER_AREA``) and centred with black padding (``fit="pad"``, letterbox), or resized to
cover it and centre-cropped (``fit="crop"``). Boxes and keypoints go through the same
scale + offset, so pose images, instance boxes and face boxes line up with the pixels.

People: the clip's tracks (up to ``max_people``, the ones present in most frames, ordered by
track id, which the people stage assigns left to right) fill person slots ``0..P-1``;
``people_mask`` marks the slots in use. A person missing from a frame has an empty pose image,
an empty face mask and NaN speaking score there.

Pose images (``[0, 1]``, RGB): every person's skeleton drawn with
:func:`talkset.wholebody.pose_image` (DWPose / AnimateAnyone style) from the 133 COCO-WholeBody
keypoints when the pose stage filled them, else from ``keypoints_59``, else from the 17 COCO body
keypoints of the people stage. By default (``SampleSpec.pose_keypoints = 59``) only the 59-keypoint
subset is drawn (:data:`talkset.wholebody.SUBSET_59`: nose and both ears, body, two toes, both
hands), as the MIT paper (Sec. 4) conditions CovOG: no face landmarks, so the lips and expressions
must come from the audio through the IAD; with the 68 face points in the pose image the mouth
shape is given away and the "w/o IAD" ablation measures nothing. ``pose_keypoints = 133`` draws
everything (face points included) for other uses. ``pose_joint`` is the image of all people; ``pose_people[p]`` is
that image masked by person p's instance box (the MPE input of Eq. 1).

Face masks ``{0, 1}`` (``SampleSpec.face_mask``, from the CovOG config's ``iad.face_mask``): by
default (``landmarks``) the seed's box from person p's keypoints (:mod:`talkset.covog.face_mask`:
jaw ends, chin and nose tip scaled 1.4 x 1.6, kept inside the upper body and the person box; the
nose and ears where the face landmarks are missing). Where that gives no box, and always with
``box``: the ``face_box`` column (face detector) when set, else a square around the visible head keypoints (nose, eyes, ears; COCO 0-4, score >= 0.3):
centred on their mean, side 1.8 x their larger spread and at least 0.2 x the person box width.
No box (no head keypoint visible) gives an empty mask.

Audio: per video frame ``(L, D)`` features from :mod:`talkset.training.audio_features` (wav2vec2 hidden
states from a user path, or the log-mel stand-in when ``audio_model="logmel"`` is asked for),
computed once per clip and model from the clip's 16 kHz WAV and stored in the root's
``audio_features`` table (:class:`talkset.training.audio_features.AudioFeatureStore`); a later
cache miss, another worker or another run reads them back instead of recomputing.

Windows: :meth:`TalkingClipDataset.sample` draws ``num_frames`` frames (stage 1: 1, a single
frame as the seed's stage-1 image dataset; stage 2: the model's window) with the seed's random
frame stride (``baseline_train/src/dataset/stage_two.py``): a stride ``s`` uniform in
``1..max_stride``, a span of ``min(n, (F - 1) s + 1)`` frames at a uniform start, and ``F`` indices
spread evenly over the span (``np.linspace``, truncated to int). Speaking scores: ``speaking_score`` per person per frame in [-1, 1], NaN unknown.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from talkset import media
from talkset.covog.face_mask import landmark_face_box

log = logging.getLogger("talkset.training")

HEAD = [0, 1, 2, 3, 4]  # COCO nose, left/right eye, left/right ear
SCORE_THR = 0.3
MODEL_KEYS = (
    "ref_image",
    "ref_pose",
    "ref_pose_people",
    "target",
    "pose_people",
    "pose_joint",
    "people_mask",
    "face_masks",
    "audio",
    "speaking",
)


@dataclass
class SampleSpec:
    """What one sample looks like. ``height``/``width`` px, ``num_frames`` F per window,
    ``max_people`` P slots, ``audio_layers`` x ``audio_dim`` (L, D) audio per frame,
    ``pose_keypoints`` 59 (the paper's subset, no face points; default) or 133 (all, face
    included) keypoints drawn in the pose images; ``face_mask`` the IAD face mask: ``landmarks``
    (the seed's: :func:`talkset.covog.face_mask.landmark_face_box` from the person's keypoints, kept
    inside the person's box; the detector / head box where the keypoints give none) or ``box``
    (the face detector's box, else a square around the head keypoints: talkset before issue 13)."""

    height: int = 64
    width: int = 96
    num_frames: int = 4
    max_people: int = 4
    audio_layers: int = 12
    audio_dim: int = 768
    motion_frames: int = 0
    pose_keypoints: int = 59
    face_mask: str = "landmarks"


def _get(obj: Any, *names: str, default=None):
    """First attribute path (``"a.b"``) found on ``obj``."""
    for name in names:
        cur = obj
        ok = True
        for part in name.split("."):
            if isinstance(cur, dict) and part in cur:
                cur = cur[part]
            elif hasattr(cur, part):
                cur = getattr(cur, part)
            else:
                ok = False
                break
        if ok and cur is not None:
            return cur
    return default


def spec_from_config(cfg: Any, pose_keypoints: int = 59) -> SampleSpec:
    """A :class:`SampleSpec` from a CovOG config (``talkset.covog.config.CovOGConfig``)."""
    return SampleSpec(
        pose_keypoints=int(pose_keypoints),
        height=int(_get(cfg, "image.height", "height", "data.height", default=64)),
        width=int(_get(cfg, "image.width", "width", "data.width", default=96)),
        num_frames=int(_get(cfg, "num_frames", "frames", "data.num_frames", "video.num_frames", default=4)),
        max_people=int(_get(cfg, "max_people", "people.max", "mpe.max_people", "data.max_people", default=4)),
        audio_layers=int(_get(cfg, "audio.layers", "audio.num_layers", "iad.audio_layers", "audio_layers", default=12)),
        audio_dim=int(_get(cfg, "audio.dim", "audio.hidden_size", "iad.audio_dim", "audio_dim", default=768)),
        motion_frames=int(_get(cfg, "motion_frames", "inference.motion_frames", "data.motion_frames", default=0)),
        face_mask=str(_get(cfg, "iad.face_mask", default="landmarks")),
    )


# -- geometry ------------------------------------------------------------------------------------


def _kp_133_or_59(kp: np.ndarray) -> np.ndarray:
    """(K, 3) keypoints as the seed's face-mask code takes them: 133 and 59 as they are, the people
    stage's 17 COCO body points in the first rows of a NaN (133, 3) (their head points stand in)."""
    if kp.shape[0] in (133, 59):
        return kp
    out = np.full((133, 3), np.nan, np.float32)
    out[: min(17, kp.shape[0])] = kp[:17]
    return out


def fit_transform(src_hw: tuple[int, int], dst_hw: tuple[int, int], fit: str = "pad") -> tuple[float, float, float]:
    """``(scale, offset_x, offset_y)`` mapping source pixels to the ``dst_hw`` canvas:
    ``x' = x * scale + offset_x``. ``fit="pad"`` letterboxes, ``"crop"`` covers and crops."""
    sh, sw = src_hw
    dh, dw = dst_hw
    s = min(dh / sh, dw / sw) if fit == "pad" else max(dh / sh, dw / sw)
    return s, (dw - sw * s) / 2.0, (dh - sh * s) / 2.0


def warp_frame(img: np.ndarray, dst_hw: tuple[int, int], tf: tuple[float, float, float]) -> np.ndarray:
    """Resize + pad/crop ``img`` (HxWx3 uint8) with ``tf`` onto a black ``dst_hw`` canvas."""
    import cv2

    s, ox, oy = tf
    dh, dw = dst_hw
    m = np.array([[s, 0, ox], [0, s, oy]], dtype=np.float64)
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    if s < 1:  # INTER_AREA only works through resize; resize first, then shift
        rs = cv2.resize(img, (max(1, round(img.shape[1] * s)), max(1, round(img.shape[0] * s))), interpolation=interp)
        m = np.array([[1, 0, ox], [0, 1, oy]], dtype=np.float64)
        return cv2.warpAffine(rs, m, (dw, dh), flags=cv2.INTER_NEAREST, borderValue=(0, 0, 0))
    return cv2.warpAffine(img, m, (dw, dh), flags=interp, borderValue=(0, 0, 0))


def _apply_pts(kp: np.ndarray, tf) -> np.ndarray:
    s, ox, oy = tf
    out = kp.copy()
    out[..., 0] = kp[..., 0] * s + ox
    out[..., 1] = kp[..., 1] * s + oy
    return out


def _apply_box(box: np.ndarray, tf) -> np.ndarray:
    s, ox, oy = tf
    return box * s + np.array([ox, oy, ox, oy], dtype=np.float32)


def head_face_box(kpts: np.ndarray, person_box: np.ndarray | None, thr: float = SCORE_THR) -> np.ndarray | None:
    """Square face box ``[x1, y1, x2, y2]`` from COCO head keypoints (see module docstring), or None."""
    if kpts is None or kpts.shape[0] < 5:
        return None
    head = kpts[HEAD]
    ok = np.isfinite(head).all(1) & (head[:, 2] >= thr)
    if ok.sum() < 2:
        return None
    pts = head[ok, :2]
    c = pts.mean(0)
    side = 1.8 * float(np.max(pts.max(0) - pts.min(0)))
    if person_box is not None and np.isfinite(person_box).all():
        side = max(side, 0.2 * float(person_box[2] - person_box[0]))
    side = max(side, 2.0)
    return np.array([c[0] - side / 2, c[1] - side / 2, c[0] + side / 2, c[1] + side / 2], dtype=np.float32)


def box_mask(box: np.ndarray | None, hw: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` float32 {0, 1} mask of a box x1, y1, x2, y2 px (None / NaN -> zeros); the rasteriser
    of :func:`talkset.covog.face_mask.box_face_masks`."""
    from talkset.covog.face_mask import box_face_masks

    if box is None:
        return np.zeros(hw, dtype=np.float32)
    return box_face_masks(np.asarray(box, dtype=np.float32), hw)


def render_pose(keypoints_list: list[np.ndarray], hw: tuple[int, int], keypoints: int = 59) -> np.ndarray:
    """RGB uint8 ``(H, W, 3)`` pose image of several people (:func:`talkset.wholebody.pose_image`).
    Each entry: (133, 3), (59, 3) or (17, 3) COCO body keypoints (zero-padded to 133).
    ``keypoints=59`` draws only :data:`talkset.wholebody.SUBSET_59` (no face points, no eyes);
    ``133`` draws every point given, the 68 face points included. Raises ``ValueError`` otherwise."""
    from talkset.wholebody import NUM_KEYPOINTS, as_wholebody, pose_image, to_subset_59

    if keypoints not in (59, 133):
        raise ValueError(f"pose keypoints must be 59 (the paper's subset) or 133 (all), got {keypoints}")
    kps = []
    for kp in keypoints_list:
        kp = np.asarray(kp, dtype=np.float32)
        if kp.shape[0] == 17:
            full = np.zeros((NUM_KEYPOINTS, 3), dtype=np.float32)
            full[:17] = kp[:, :3]
            kp = full
        if keypoints == 59:
            kp = to_subset_59(as_wholebody(kp))
        kps.append(kp)
    img = pose_image(kps, hw[0], hw[1], score_thr=SCORE_THR, draw_face=keypoints == 133)
    return np.ascontiguousarray(img[..., ::-1])  # BGR -> RGB


# -- the dataset ---------------------------------------------------------------------------------


class ClipData:
    """One clip decoded and aligned at the model resolution (kept in the dataset's cache).

    ``frames`` uint8 (T, H, W, 3) RGB; per person slot p < P_used: ``boxes`` / ``face_boxes``
    float32 (P, T, 4) NaN where absent, ``kpts`` list of P float32 (T, K, 3) arrays (NaN absent),
    ``speaking`` float32 (P, T) NaN unknown; ``audio`` float32 (T, L, D).
    """

    def __init__(self, clip_id, source, frames, boxes, face_boxes, kpts, speaking, audio, track_ids):
        self.clip_id = clip_id
        self.source = source
        self.frames = frames
        self.boxes = boxes
        self.face_boxes = face_boxes
        self.kpts = kpts
        self.speaking = speaking
        self.audio = audio
        self.track_ids = track_ids

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


class TalkingClipDataset(torch.utils.data.Dataset):
    """Windows of ``spec.num_frames`` frames of the clips of a dataset root.

    ``audio_model``: a wav2vec2 folder, ``"logmel"`` for the stand-in, None for the default
    wav2vec2 folder (:func:`talkset.training.audio_features.audio_extractor`; a missing one raises
    ``WeightsNotFound`` naming it). ``clip_ids``: the clips to use (e.g.
    :func:`talkset.training.splits.clips_in`); None -> every
    committed clip. Item ``i`` is window ``i`` of the list of non-overlapping windows (stride
    ``window_stride``, default ``num_frames``) over those clips; its reference frame is drawn
    from the same clip by a generator seeded with ``(seed, i)`` (so an index always gives the same
    sample). :meth:`sample` draws a random window instead.

    Returns dicts of tensors (no batch axis; ``torch.utils.data.default_collate`` adds it):
    ``ref_image`` (3, H, W) [-1, 1]; ``ref_pose`` (3, H, W) [0, 1]; ``ref_pose_people`` (P, 3, H, W)
    [0, 1] (the reference pose inside each person's box: the pose adaptor's MPE input, as the seed);
    ``target`` (F, 3, H, W) [-1, 1];
    ``pose_people`` (F, P, 3, H, W) [0, 1]; ``pose_joint`` (F, 3, H, W) [0, 1]; ``people_mask`` (P,)
    bool; ``face_masks`` (F, P, H, W) {0, 1}; ``audio`` (F, L, D) float32; ``speaking`` (F, P)
    [-1, 1] NaN unknown; plus ``clip_id`` (str), ``frame_idx`` (F,) int64, ``ref_idx`` int64.

    Raises ``ValueError`` for a clip without frames rows, video or audio, naming the clip.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        spec: SampleSpec,
        clip_ids: list[str] | None = None,
        audio_model: str | os.PathLike | None = None,
        fit: str = "pad",
        window_stride: int | None = None,
        seed: int = 0,
        max_cached_clips: int = 64,
    ):
        from talkset.storage.catalog import connect

        self.root = Path(root).expanduser().resolve()
        self.spec = spec
        self.fit = fit
        self.seed = seed
        self.max_cached_clips = max_cached_clips
        con = connect(self.root)
        rows = con.execute(
            "SELECT clip_id, source, video_path, audio_path, num_frames, fps, width, height FROM clips ORDER BY clip_id"
        ).fetchall()
        self.clips = {r[0]: dict(zip(("clip_id", "source", "video_path", "audio_path", "num_frames", "fps", "width", "height"), r)) for r in rows}
        if clip_ids is not None:
            missing = [c for c in clip_ids if c not in self.clips]
            if missing:
                raise ValueError(f"{self.root}: clips not in the clips table: {missing[:5]}")
            self.clip_ids = list(clip_ids)
        else:
            self.clip_ids = sorted(self.clips)
        if not self.clip_ids:
            raise ValueError(f"{self.root}: no clips to train on (empty clips table or split)")
        from talkset.training.audio_features import AudioFeatureStore

        self.audio = AudioFeatureStore(self.root, audio_model, spec.audio_layers, spec.audio_dim, seed=seed)
        self._cache: OrderedDict[str, ClipData] = OrderedDict()
        stride = window_stride or spec.num_frames
        self.windows: list[tuple[str, int]] = []
        for cid in self.clip_ids:
            n = int(self.clips[cid]["num_frames"] or 0)
            for start in range(0, max(1, n - spec.num_frames + 1), stride):
                self.windows.append((cid, start))

    # -- loading ----------------------------------------------------------------------------
    def clip(self, clip_id: str) -> ClipData:
        """The decoded clip (cached)."""
        if clip_id in self._cache:
            self._cache.move_to_end(clip_id)
            return self._cache[clip_id]
        data = self._load(clip_id)
        self._cache[clip_id] = data
        while len(self._cache) > self.max_cached_clips:
            self._cache.popitem(last=False)
        return data

    def _load(self, clip_id: str) -> ClipData:
        from talkset.storage.catalog import connect

        info = self.clips[clip_id]
        spec = self.spec
        hw = (spec.height, spec.width)
        if not info["video_path"]:
            raise ValueError(f"clip {clip_id}: no video_path in the clips table")
        vpath = self.root / info["video_path"]
        if not vpath.is_file():
            raise ValueError(f"clip {clip_id}: video {vpath} is missing (re-run collect)")
        frames = []
        tf = None
        for _k, _t, img in media.iter_frames(vpath, fmt="rgb24"):
            if tf is None:
                tf = fit_transform(img.shape[:2], hw, self.fit)
            frames.append(warp_frame(img, hw, tf))
        if not frames:
            raise ValueError(f"clip {clip_id}: {vpath} decoded to no frames")
        frames = np.stack(frames)
        T = frames.shape[0]

        cols = ("track_id", "frame_idx", "box", "body_keypoints", "keypoints", "keypoints_59", "face_box", "speaking_score")
        rows = connect(self.root).execute(
            f"SELECT {', '.join(cols)} FROM frames WHERE clip_id = ? ORDER BY track_id, frame_idx", [clip_id]
        ).fetchall()
        if not rows:
            raise ValueError(f"clip {clip_id}: no frames rows (people stage output missing)")
        d = {c: [r[i] for r in rows] for i, c in enumerate(cols)}
        n_rows = len(rows)
        tids = np.asarray(d["track_id"])
        uniq, counts = np.unique(tids, return_counts=True)
        order = sorted(zip(-counts, uniq))[: spec.max_people]
        track_ids = sorted(int(t) for _c, t in order)
        P = len(track_ids)
        boxes = np.full((P, T, 4), np.nan, np.float32)
        face_boxes = np.full((P, T, 4), np.nan, np.float32)
        speaking = np.full((P, T), np.nan, np.float32)
        kpts: list[np.ndarray | None] = [None] * P
        landmarks = self.spec.face_mask == "landmarks"
        H_out, W_out = self.spec.height, self.spec.width
        for row in range(n_rows):
            tid = int(tids[row])
            if tid not in track_ids:
                continue
            p = track_ids.index(tid)
            f = int(d["frame_idx"][row])
            if not 0 <= f < T:
                continue
            if d["box"][row] is not None:
                boxes[p, f] = _apply_box(np.asarray(d["box"][row], np.float32), tf)
            kp = d["keypoints"][row] or d["keypoints_59"][row] or d["body_keypoints"][row]
            if kp is not None:
                kp = _apply_pts(np.asarray(kp, np.float32), tf)
                if kpts[p] is None or kpts[p].shape[1] != kp.shape[0]:
                    kpts[p] = np.full((T, kp.shape[0], 3), np.nan, np.float32)
                kpts[p][f] = kp
            seed_box = (landmark_face_box(_kp_133_or_59(kp), boxes[p, f], image_size=(H_out, W_out))
                        if landmarks and kp is not None else None)
            if seed_box is not None and np.isfinite(seed_box).all():
                face_boxes[p, f] = seed_box
            elif d["face_box"][row] is not None:
                face_boxes[p, f] = _apply_box(np.asarray(d["face_box"][row], np.float32), tf)
            elif kp is not None:
                fb = head_face_box(kp, boxes[p, f])
                if fb is not None:
                    face_boxes[p, f] = fb
            s = d["speaking_score"][row]
            if s is not None:
                speaking[p, f] = float(s)

        audio = self.audio.get(clip_id, info, num_frames=T)
        return ClipData(clip_id, info["source"], frames, boxes, face_boxes, kpts, speaking, audio, track_ids)

    # -- samples ----------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        clip_id, start = self.windows[i]
        g = np.random.default_rng([self.seed, int(i)])
        n = self.clip(clip_id).num_frames
        return self.window(clip_id, start, int(g.integers(0, n)))

    def sample(self, rng: np.random.Generator, num_frames: int | None = None, max_stride: int = 1) -> dict[str, Any]:
        """A random window of a random clip and a random reference frame of that clip.

        ``num_frames`` F (None: ``spec.num_frames``; 1: a single frame, as stage 1 trains);
        ``max_stride``: the seed's random frame stride (see the module docstring; 1: consecutive
        frames). All draws come from ``rng``."""
        F = int(num_frames or self.spec.num_frames)
        clip_id = self.clip_ids[int(rng.integers(0, len(self.clip_ids)))]
        n = self.clip(clip_id).num_frames
        idx = strided_indices(n, F, max_stride, rng)
        return self.window_at(clip_id, idx, int(rng.integers(0, n)))

    def pose_frame(self, c: ClipData, f: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """Joint pose image (H, W, 3) uint8 and the present people's keypoints at frame ``f``."""
        hw = (self.spec.height, self.spec.width)
        kps = []
        for p in range(len(c.track_ids)):
            if c.kpts[p] is not None and np.isfinite(c.kpts[p][f][:, 2]).any():
                kps.append(c.kpts[p][f])
        return render_pose(kps, hw, self.spec.pose_keypoints), kps

    def window(self, clip_id: str, start: int, ref_idx: int) -> dict[str, Any]:
        """Frames ``start .. start+F-1`` of ``clip_id`` (indices past the end repeat the last frame)
        with reference frame ``ref_idx``; see the class docstring for the keys."""
        return self.window_at(clip_id, np.arange(start, start + self.spec.num_frames), ref_idx)

    def window_at(self, clip_id: str, frame_idx, ref_idx: int) -> dict[str, Any]:
        """The frames ``frame_idx`` (any F >= 1 indices, clipped into the clip) of ``clip_id`` with
        reference frame ``ref_idx``; see the class docstring for the keys."""
        c = self.clip(clip_id)
        spec = self.spec
        idx = np.clip(np.asarray(frame_idx, dtype=np.int64).reshape(-1), 0, c.num_frames - 1)
        H, W, F, P = spec.height, spec.width, len(idx), spec.max_people
        used = len(c.track_ids)
        pose_joint = np.zeros((F, H, W, 3), np.float32)
        pose_people = np.zeros((F, P, H, W, 3), np.float32)
        face = np.zeros((F, P, H, W), np.float32)
        speaking = np.full((F, P), np.nan, np.float32)
        for j, f in enumerate(idx):
            joint, _ = self.pose_frame(c, int(f))
            joint = joint.astype(np.float32) / 255.0
            pose_joint[j] = joint
            for p in range(used):
                if np.isfinite(c.boxes[p, f]).all():
                    pose_people[j, p] = joint * box_mask(c.boxes[p, f], (H, W))[..., None]
                face[j, p] = box_mask(c.face_boxes[p, f], (H, W))
                speaking[j, p] = c.speaking[p, f]
        ref_pose, _ = self.pose_frame(c, int(ref_idx))
        ref_pose_people = np.zeros((P, H, W, 3), np.float32)
        for p in range(used):
            if np.isfinite(c.boxes[p, ref_idx]).all():
                ref_pose_people[p] = (ref_pose.astype(np.float32) / 255.0) * box_mask(c.boxes[p, ref_idx], (H, W))[..., None]
        people_mask = np.zeros(P, bool)
        people_mask[:used] = True

        def img(x):  # (..., H, W, 3) uint8 -> (..., 3, H, W) [-1, 1]
            return torch.from_numpy(x).float().div(127.5).sub(1.0).movedim(-1, -3).contiguous()

        return {
            "ref_image": img(c.frames[ref_idx]),
            "ref_pose": torch.from_numpy(ref_pose).float().div(255.0).permute(2, 0, 1).contiguous(),
            "ref_pose_people": torch.from_numpy(ref_pose_people).movedim(-1, -3).contiguous(),
            "target": img(c.frames[idx]),
            "pose_people": torch.from_numpy(pose_people).movedim(-1, -3).contiguous(),
            "pose_joint": torch.from_numpy(pose_joint).movedim(-1, -3).contiguous(),
            "people_mask": torch.from_numpy(people_mask),
            "face_masks": torch.from_numpy(face),
            "audio": torch.from_numpy(c.audio[idx]).float(),
            "speaking": torch.from_numpy(speaking),
            "clip_id": clip_id,
            "frame_idx": torch.from_numpy(idx.astype(np.int64)),
            "ref_idx": int(ref_idx),
        }


def strided_indices(n: int, num_frames: int, max_stride: int, rng: np.random.Generator) -> np.ndarray:
    """``num_frames`` frame indices of an ``n``-frame clip with the seed's random stride
    (``baseline_train/src/dataset/stage_two.py``): stride ``s ~ U{1..max_stride}``, span
    ``min(n, (F - 1) s + 1)``, start ``~ U{0..n - span}``, indices ``linspace(start, start + span - 1,
    F)`` as int. ``max_stride=1`` gives consecutive frames. Returns int64 ``(F,)``."""
    F = int(num_frames)
    if F < 1 or n < 1 or max_stride < 1:
        raise ValueError(f"need num_frames >= 1, a non-empty clip and max_stride >= 1 (got {F}, {n}, {max_stride})")
    s = int(rng.integers(1, int(max_stride) + 1))
    span = min(n, (F - 1) * s + 1)
    start = int(rng.integers(0, n - span + 1))
    return np.linspace(start, start + span - 1, F).astype(np.int64)


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into a batch (``default_collate``: tensors gain a batch axis, strings a list)."""
    return torch.utils.data.default_collate(samples)


def model_batch(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Only the keys CovOG reads (:data:`MODEL_KEYS`)."""
    return {k: batch[k] for k in MODEL_KEYS}


class IterableOf(torch.utils.data.IterableDataset):
    """Any picklable iterable as a ``torch.utils.data.IterableDataset`` (for DataLoader workers that
    are spawned, which need a module-level class: :func:`talkset.training.loop.step_loader`)."""

    def __init__(self, items):
        self.items = items

    def __iter__(self):
        return iter(self.items)
