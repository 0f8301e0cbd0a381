"""The ``people`` stage: person tracks per shot, and the shot filter (2–4 people, static camera).

For each shot, frames are decoded from the source video at the clip rate (tick ``k`` of the
future clip is frame ``k`` here), Ultralytics YOLO11n-pose finds person boxes with their 17 COCO
body keypoints, and Ultralytics' ByteTrack links them into person tracks. A shot is kept when
``min_people``–``max_people`` tracks are present for most of it and the camera does not move.
The filter follows the collection rules of "Multi-human Interactive Talking Dataset" (MIT;
Sec. 3, data collection: 2–4 people in one static shot).

Who counts as a person: a track present in >= ``presence_frac`` of the shot's frames whose
median box area is >= ``min_box_frac`` of the frame, and that is not nested inside a
better-scored such track (``max_nested``: YOLO's duplicate partial boxes on a person cut by the
frame edge). Kept tracks are renumbered 0..n-1 left to right by median box centre x.

Cheap first (``filter_fps``)
----------------------------
Talk shows are mostly one-person close-ups, which the filter rejects; tracking every frame of them
at 25 fps was wasted. The filter is therefore decided first on a sparse sample: YOLO + ByteTrack
on every ``step``-th clip frame (``step`` = the largest divisor of ``camera_stride`` not above
``clip_fps / filter_fps``: 10, i.e. 2.5 frames per second, by default), the same rules applied to
the sampled frames (presence as a share of the sampled frames). The camera-motion pairs are the
same frames as at the full rate (every ``camera_stride``-th), so the motion value differs only
through the person masks. A shot the sparse pass rejects keeps its reason and costs about a tenth
of a full-rate pass; a shot it passes is tracked again at the full rate and the filter decided
again on that (the full-rate decision is final, so kept shots and their tracks are exactly
today's; the sparse pass adds ~10 % to them; with ONNX Runtime its frames are not run again: their
detections are kept, :meth:`_OrtYolo.start_cache`). tests/test_people.py checks that the sparse and
full-rate decisions agree on every shot of the shared clips.

Trimming to the people's common presence (``trim_to_present``, issue 11 §3)
-------------------------------------------------------------------------
MIT's seed code (github.com/Zeyu-Zhu/Multi-human-Talking-Video-Dataset,
``data_collection_pipeline/2_select_valid_clips.py``) keeps, per combination of ``num_people`` face
tracks, only the overlap of their periods ``[first frame, last frame]``, when ``end - start > 125``
frames at 25 fps (its clips are then cut ``-ss start/25 -to end/25``: >= 126 frames). Its face
tracks come from TalkNet's ``track_shot`` with ``numFailedDet`` = 12 (``1_whisperV_inference.py``
``--min_failed_detect``): two detections up to 12 frames apart stay one track and the gap is
interpolated. With ``trim_to_present`` a kept shot is cut the same way on talkset's person tracks
(:func:`present_spans`): a counted person is present on the frames of their track, gaps of up to
``presence_gap_s`` (frame difference <= ``floor(presence_gap_s * clip_fps)``; 0.48 s = 12 frames
reproduces TalkNet's rule) are filled, the frames where *all* counted people are present form
spans, and each span of >= ``min_span_s`` becomes its own clip (:func:`clips_for_spans`; clip id
``clip_id_for(source, shot, part)``). A kept shot with no such span is rejected as
``no_common_span``. Unlike the seed, a person's leaving and coming back inside the shot gives
several spans (the seed's track period is first-to-last frame whatever happens between; here the
tracker keeps the id across gaps up to ByteTrack's ``track_buffer``, 30 frames, and the gap is
not counted as presence unless <= ``presence_gap_s``).

Camera motion (:class:`CameraMotionMeter`, :func:`camera_motion`) is measured in
:mod:`talkset.stages.camera` (its docstring has the method and the measured figures); a shot is
rejected above ``max_camera_motion`` (0.0004 frame diagonals per frame).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from talkset import env, media, provenance, weights
from talkset.annotators.onnx_cpu import check_runtime, session_from_module, torch_threads, use_onnxruntime
from talkset.items import Clip, PersonTrack, clip_id_for
from talkset.stages import overlay
from talkset.stages.base import Resources, Stage, StageError
from talkset.stages.camera import CameraMotionMeter, camera_motion, pair_motion  # noqa: F401


def _auto_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda:0" if torch.cuda.is_available() else "cpu"


@dataclass
class PeopleStage(Stage):
    """Person tracks (YOLO11n-pose + ByteTrack) per shot and the 2–4-people / static-camera filter.

    ``process(Clip) -> Clip``. Reads ``source.video_path``, ``shot`` (start_s, end_s) and
    ``clip_fps``. Returns the clip with a new ``shot`` whose ``num_people``,
    ``camera_motion``, ``kept`` and ``reason`` are set; for a kept shot ``person_tracks`` holds
    one :class:`talkset.items.PersonTrack` per counted person, ids 0..n-1 left to
    right by median box centre x, ``frame_idx`` = clip frame (tick at ``start_s + k/clip_fps``),
    boxes and keypoints in source-video pixels. Rejected shots come back with ``kept=False``,
    ``reason`` ``"people=<n>"``, ``"camera_motion=<value:.4f>"``, ``"layout=split"``,
    ``"overlay=<share:.2f>"`` or ``"occlusion=<share:.2f>"`` and no tracks (not an error). Every shot
    gets ``layout``, ``seams``, ``overlay_share`` and ``occlusion_share`` (:mod:`talkset.stages.overlay`;
    the sparse pass measures the same layout and overlays as the full-rate one, occlusion on its
    frames only, and a shot it rejects keeps its values).
    With ``trim_to_present`` a kept shot also gets ``spans`` (clip frames of the shot where all
    counted people are present, :func:`present_spans`), or is rejected ``"no_common_span"``.
    Raises :class:`StageError` when the video is missing, cannot be decoded, or the shot has no
    frames.

    Parameters:
        weights: YOLO pose checkpoint, a name looked up by :func:`talkset.weights.resolve` or a path.
        conf: detection confidence threshold passed to YOLO.
        imgsz: YOLO inference size (longer side, px).
        upscale: if False, ``imgsz`` is capped at the frame's longer side rounded up to 32, so a
            small source (e.g. 480x360) is not upsampled (2.3x faster on CPU at 480 vs 640).
        min_people, max_people: kept shots have this many counted people (inclusive).
        presence_frac: a track counts as a person if present in >= this share of the shot's frames.
        min_box_frac: ... and its median box area is >= this share of the frame area.
        max_nested: a counted track whose box lies inside a better-scored counted track's box
            (median over shared frames of intersection / own area) by at least this share is a
            duplicate partial detection of the same person and is not counted.
        max_camera_motion: reject above this (frame diagonals per frame; module docstring).
        camera_stride: measure camera motion on one frame pair every this many frames.
        filter_fps: decide the shot filter first on YOLO + ByteTrack at about this rate (frames per
            second; the sparse step is the largest divisor of ``camera_stride`` not above
            ``clip_fps / filter_fps``, so the camera-motion pairs are the same frames); only a shot
            that passes is tracked at the full clip rate (module docstring, "Cheap first").
            ``None`` or 0: decide at the full rate only.
        batch: frames per YOLO call (one batched forward pass; ByteTrack is still updated frame by
            frame in order, so the tracks equal those of ``batch=1``).
        device: "auto" (cuda:0 if available, else cpu), or a torch device string.
        runtime: "auto" (YOLO in ONNX Runtime on the CPU, PyTorch on a GPU), "torch" or
            "onnxruntime" (:mod:`talkset.annotators.onnx_cpu`: measured 0.054-0.060 -> 0.040 CPU-s
            per 480x384 frame with one thread; boxes equal within 1e-3 px, the same tracks).
        threads: ONNX Runtime on the CPU: frames of a batch run through the network at once, one per
            thread (ONNX Runtime releases the GIL; ByteTrack still sees the frames in order). The
            actor asks Ray for this many CPUs (one on a GPU share: :meth:`cpus_wanted`). A long shot
            is the one serial step before its clip's other stages can start, so this halves that
            wait on an idle machine.
        tracker: Ultralytics tracker config (ByteTrack).
        split_screens: ``"keep"`` (label them) or ``"reject"`` shots whose layout is ``split``.
        max_overlay_share, max_occlusion_share: reject above these shares (``None``: keep).
        trim_to_present: on a kept shot (full-rate decision), set ``spans`` to the spans where
            every counted person is present (module docstring, "Trimming"); a kept shot without a
            span of ``min_span_s`` is rejected as ``no_common_span``. Off: ``spans`` stays ``None``
            and the whole shot is one clip.
        presence_gap_s: gaps in a person track up to this long (s) count as present.
        min_span_s: shortest span kept (s; the flow passes ``min_shot_s``).
    """

    name: ClassVar[str] = "people"
    resources: ClassVar[Resources] = Resources(cpus=1, gpus=0.25)
    reads: ClassVar[tuple[str, ...]] = ("source.video_path", "shot", "clip_fps")
    writes: ClassVar[tuple[str, ...]] = ("shot", "person_tracks", "spans")

    weights: str = "yolo11n-pose.pt"
    conf: float = 0.25
    imgsz: int = 640
    upscale: bool = False
    min_people: int = 2
    max_people: int = 4
    presence_frac: float = 0.5
    min_box_frac: float = 0.02
    max_nested: float = 0.7
    max_camera_motion: float = 0.0004
    camera_stride: int = 10
    filter_fps: float | None = 2.5
    batch: int = 8
    device: str = "auto"
    runtime: str = "auto"
    threads: int = 2
    tracker: str = "bytetrack.yaml"
    # issue 11 §6: editing artifacts and occlusion (talkset.stages.layout / overlay); keep and label by default
    split_screens: str = "keep"
    max_overlay_share: float | None = None
    max_occlusion_share: float | None = None
    trim_to_present: bool = False
    presence_gap_s: float = 0.5
    min_span_s: float = 3.0

    def __post_init__(self) -> None:
        if self.split_screens not in ("keep", "reject"):
            raise ValueError(f"split_screens must be 'keep' or 'reject', got {self.split_screens!r}")
        check_runtime(self.runtime, "people")
        if int(self.threads) < 1:
            raise ValueError(f"people threads must be >= 1, got {self.threads}")
        if int(self.threads) > 1 and self.runtime != "torch":
            # the frames of a batch run at once: ask Ray for that many CPUs (instance value over the class's)
            self.resources = Resources(cpus=int(self.threads), gpus=type(self).resources.gpus)
        self._model = None
        self._device = None
        self._ort = None

    def cpus_wanted(self, gpu_cluster: bool = False) -> float:
        """CPUs one actor asks Ray for (:func:`talkset.flows.runner.stage_cpus`): ``threads`` where
        the network runs in ONNX Runtime on the CPU; 1 where the actor gets a GPU share (PyTorch on
        CUDA) or ``runtime="torch"``."""
        on_gpu = gpu_cluster and self.device != "cpu"
        return float(self.resources.cpus if not on_gpu else type(self).resources.cpus)

    def setup(self) -> None:
        """Load the YOLO pose model once (offline: ``talkset.env.configure`` first); on the CPU
        (``runtime``) also export it to ONNX Runtime and put it into Ultralytics' predictor."""
        env.configure(threads=None)
        from ultralytics import YOLO

        path = weights.resolve(self.weights)
        self._device = _auto_device(self.device)
        self._model = YOLO(str(path))
        self._ort = None
        if use_onnxruntime(self.runtime, self._device):
            self._ort = _OrtYolo(self._model.model, torch_threads(), frames_at_once=int(self.threads))
            # Ultralytics builds its predictor (pre/post-processing, ByteTrack) on the first call:
            # make it on a blank frame, then swap its network; every shot resets the tracker.
            self._model.track(np.zeros((64, 64, 3), np.uint8), persist=True, tracker=self.tracker, classes=[0],
                              conf=self.conf, imgsz=64, device=self._device, verbose=False)
            self._install_ort()

    def _install_ort(self) -> None:
        """Make Ultralytics' predictor run :class:`_OrtYolo` (again, if it rebuilt its model)."""
        backend = self._model.predictor.model.backend
        if backend.model is not self._ort:
            backend.model = self._ort
            backend.base_model = False  # call it as model(im): no augment / embed arguments

    def model_info(self) -> dict[str, str]:
        return {"people": f"{weights_name(self.weights)} (ultralytics {provenance.version('ultralytics')}) + bytetrack"}

    # -- tracking ---------------------------------------------------------------------------

    def _reset_tracker(self) -> None:
        """Fresh ByteTrack state (tracks, Kalman filter, ids from 1) for a new shot."""
        pred = getattr(self._model, "predictor", None)
        for tr in getattr(pred, "trackers", None) or []:
            tr.reset()

    def sparse_step(self, clip_fps: float) -> int:
        """Clip frames between two frames of the sparse filter pass (1: no sparse pass).

        The largest divisor of ``camera_stride`` that is <= ``clip_fps / filter_fps`` (so every
        camera-motion frame is a sampled frame)."""
        if not self.filter_fps or self.filter_fps <= 0:
            return 1
        want = max(1, math.floor(clip_fps / self.filter_fps + 1e-9))
        return max(d for d in range(1, self.camera_stride + 1) if self.camera_stride % d == 0 and d <= want)

    def track_shot(
        self, task: Clip, step: int = 1
    ) -> tuple[dict[int, dict[str, list]], int, CameraMotionMeter, tuple[int, int]]:
        """Run YOLO + ByteTrack over the shot's frames, every ``step``-th clip frame.

        Returns ``(raw, num_frames, meter, (height, width))`` where ``raw`` maps ByteTrack's own
        track id (from 1 in every shot) to lists ``frame_idx`` (clip frames, multiples of
        ``step``), ``boxes``, ``scores``, ``kpts``, and ``num_frames`` counts the frames tracked.
        With ``step > 1`` only the clip ticks that are multiples of ``step`` are taken: exactly the
        frames the full-rate pass shows at those ticks (:func:`talkset.media.iter_frames` ``every``).
        """
        if self._model is None:
            self.setup()
        video_path = task.source.video_path
        if not video_path:
            raise StageError(f"shot {task.clip_id}: the video has no video_path (download stage did not run?)")
        shot = task.shot
        duration = task.source.duration_s
        if duration is None:
            try:
                duration = media.probe(video_path).duration_s
            except media.MediaError as exc:
                raise StageError(f"shot {task.clip_id}: {exc}") from exc
        if duration and shot.start_s >= duration:
            raise StageError(
                f"shot {task.clip_id}: starts at {shot.start_s:.3f} s, after the end of {video_path} "
                f"({duration:.3f} s); check the shot list for this video"
            )
        self._reset_tracker()
        meter = CameraMotionMeter(self.camera_stride)
        raw: dict[int, dict[str, list]] = {}
        n = 0
        hw = (0, 0)
        imgsz = self.imgsz
        batch: list[tuple[int, np.ndarray]] = []

        def flush() -> None:
            # YOLO on the whole batch; Ultralytics then updates the one ByteTrack frame by frame in order
            if self._ort is not None:
                self._install_ort()
                self._ort.keys = [b[0] for b in batch]
            results = self._model.track(
                [b[1] for b in batch], persist=True, tracker=self.tracker, classes=[0], conf=self.conf,
                imgsz=imgsz, device=self._device, verbose=False, batch=len(batch),
            )
            for (k, img), r in zip(batch, results, strict=True):
                boxes = r.boxes
                xyxy = boxes.xyxy.cpu().numpy() if len(boxes) else np.zeros((0, 4), np.float32)
                meter.add(k, img, xyxy)
                if boxes.id is not None and len(boxes):
                    ids = boxes.id.cpu().numpy().astype(int)
                    confs = boxes.conf.cpu().numpy()
                    kp = r.keypoints.data.cpu().numpy() if r.keypoints is not None else np.zeros((len(ids), 17, 3))
                    for i, tid in enumerate(ids):
                        d = raw.setdefault(int(tid), {"frame_idx": [], "boxes": [], "scores": [], "kpts": []})
                        d["frame_idx"].append(k)
                        d["boxes"].append(xyxy[i])
                        d["scores"].append(confs[i])
                        d["kpts"].append(kp[i])
            batch.clear()

        try:
            for j, _t, img in media.iter_frames(video_path, shot.start_s, shot.end_s, fps=task.clip_fps, every=step):
                if n == 0:
                    hw = img.shape[:2]
                    if not self.upscale:
                        imgsz = min(self.imgsz, int(math.ceil(max(hw) / 32) * 32))
                batch.append((j, img))
                n += 1
                if len(batch) >= max(1, self.batch):
                    flush()
            if batch:
                flush()
        except StageError:
            raise
        except Exception as exc:
            raise StageError(
                f"shot {task.clip_id}: cannot decode/track {video_path} {shot.start_s:.3f}-{shot.end_s:.3f} s "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        return raw, n, meter, hw

    # -- the stage ----------------------------------------------------------------------------

    def process(self, task: Clip) -> Clip:
        step = self.sparse_step(task.clip_fps)
        if self._model is None:
            self.setup()
        try:
            if step > 1:
                # cheap first: the filter on every step-th frame; a rejected shot stops here. With ONNX
                # Runtime its frames' detections are kept for the full-rate pass (not run twice)
                if self._ort is not None:
                    self._ort.start_cache(self.conf)
                sparse = self.decide(*self.track_shot(task, step), task)
                if not sparse.shot.kept:
                    return sparse
            out = self.decide(*self.track_shot(task), task)
        finally:
            if self._ort is not None:
                self._ort.stop_cache()
        if self.trim_to_present and out.shot.kept:
            out = self.trim(out)
        return out

    def trim(self, task: Clip) -> Clip:
        """Set ``spans`` of a kept shot to the spans where all its counted people are present
        (:func:`present_spans`), or reject it as ``no_common_span`` (no tracks) when none is
        ``min_span_s`` long."""
        n = frames_in(task)
        spans = present_spans(
            [t.frame_idx for t in task.person_tracks], n,
            max_gap=gap_frames(self.presence_gap_s, task.clip_fps),
            min_len=min_frames(self.min_span_s, task.clip_fps),
        )
        if not spans:
            return replace(task, shot=replace(task.shot, kept=False, reason="no_common_span"), person_tracks=[], spans=None)
        return replace(task, spans=spans)

    def decide(
        self,
        raw: dict[int, dict[str, list]],
        n: int,
        meter: CameraMotionMeter,
        hw: tuple[int, int],
        task: Clip,
    ) -> Clip:
        """The shot filter on the output of :meth:`track_shot` (``n`` frames tracked): the counted
        people, the camera motion, ``kept`` and ``reason``; returns the updated clip."""
        h, w = hw
        shot = task.shot
        if n == 0:
            raise StageError(
                f"shot {task.clip_id}: no frames decoded from {task.source.video_path} between "
                f"{shot.start_s:.3f} and {shot.end_s:.3f} s (empty or corrupt shot)"
            )
        frame_area = float(h * w)
        people: list[tuple[float, PersonTrack]] = []
        seen: list[tuple[float, PersonTrack]] = []  # tracks of any presence with a big enough box
        for tid, d in raw.items():
            boxes = np.asarray(d["boxes"], dtype=np.float32)
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
            area = np.median((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
            if area < self.min_box_frac * frame_area:
                continue
            cx = float(np.median((boxes[:, 0] + boxes[:, 2]) / 2))
            seen.append((cx, PersonTrack(
                track_id=tid,
                frame_idx=np.asarray(d["frame_idx"], dtype=np.int32),
                boxes=boxes,
                scores=np.asarray(d["scores"], dtype=np.float32),
                body_kpts=np.asarray(d["kpts"], dtype=np.float32).reshape(-1, 17, 3),
            )))
            if len(boxes) >= self.presence_frac * n:
                people.append(seen[-1])
        # issue 11 §6: occlusion on every big-enough track, however short (occlusion breaks tracks: overlay docstring)
        occ = overlay.occlusion_share([p[1] for p in _drop_nested(seen, self.max_nested)])
        people = _drop_nested(people, self.max_nested)
        people.sort(key=lambda p: p[0])
        tracks = [p[1] for p in people]
        for i, t in enumerate(tracks):
            t.track_id = i

        motion = meter.value()
        n_people = len(tracks)
        # issue 11 §6: layout, overlays, occlusion (talkset.stages.overlay docstring); measured on every shot
        lay, seams = meter.layout()
        ov = meter.overlay_share()
        labels = {"layout": lay, "seams": seams, "overlay_share": ov, "occlusion_share": occ}
        if not (self.min_people <= n_people <= self.max_people):
            kept, reason, tracks = False, f"people={n_people}", []
        elif motion is not None and motion > self.max_camera_motion:
            kept, reason, tracks = False, f"camera_motion={motion:.4f}", []
        elif self.split_screens == "reject" and lay == "split":
            kept, reason, tracks = False, "layout=split", []
        elif self.max_overlay_share is not None and ov is not None and ov > self.max_overlay_share:
            kept, reason, tracks = False, f"overlay={ov:.2f}", []
        elif self.max_occlusion_share is not None and occ is not None and occ > self.max_occlusion_share:
            kept, reason, tracks = False, f"occlusion={occ:.2f}", []
        else:
            kept, reason = True, ""
        new_shot = replace(shot, num_people=n_people, camera_motion=motion, kept=kept, reason=reason, **labels)
        return replace(task, shot=new_shot, person_tracks=tracks, models={**task.models, **self.model_info()})


class _OrtYolo:
    """An Ultralytics YOLO pose network run by ONNX Runtime, called like the fused torch module.

    Built from the loaded ``DetectionModel``: a copy is fused (Conv + BatchNorm), its head put in
    export mode with dynamic shapes (anchors computed from the input size in the graph), and
    exported in memory (:func:`talkset.annotators.onnx_cpu.session_from_module`). ``__call__``
    takes the predictor's float32 (B, 3, H, W) tensor in [0, 1] (H, W multiples of 32) and returns
    float32 (B, 4 + 1 + 51, anchors): decoded boxes (xywh px of the network input), the person
    score and 17 keypoints (x, y, sigmoid score), the layout of the torch model's first output,
    which Ultralytics' NMS and keypoint scaling then read unchanged."""

    def __init__(self, detection_model, threads: int = 1, frames_at_once: int = 1):
        import copy

        import torch

        net = copy.deepcopy(detection_model).float().eval()
        net = net.fuse(verbose=False) if hasattr(net, "fuse") else net
        for m in net.modules():
            if hasattr(m, "export") and hasattr(m, "kpt_shape"):  # the Pose head
                m.export, m.format, m.dynamic = True, "onnx", True
        for p in net.parameters():
            p.requires_grad_(False)
        example = torch.zeros((1, 3, 128, 160))
        self.session = session_from_module(
            net, (example,), ["images"], ["preds"],
            {"images": {0: "batch", 2: "height", 3: "width"}, "preds": {0: "batch", 2: "anchors"}}, threads,
        )  # fmt: skip
        self.frames_at_once = max(1, int(frames_at_once))
        self._pool = None  # made on first use, in the actor
        self.runs = 0  # images run through the network (the cache's hits are not)
        #: clip frame of each image of the next call (set by the caller; None: unknown)
        self.keys: list[int] | None = None
        #: clip frame -> (input size, anchors, kept anchor indices, their outputs) while caching
        self._cache: dict[int, tuple] | None = None
        self._conf = 0.0

    def start_cache(self, conf: float) -> None:
        """Keep each keyed frame's candidates from now on (a shot's sparse pass) and give them back
        instead of running the network again (its full-rate pass) until :meth:`stop_cache`.

        Only anchors whose person score is >= ``conf`` are kept (the others get score 0 when given
        back): Ultralytics' NMS drops every anchor below ``conf`` first, so its output, and the
        tracks, are the same as with the network run again (tests/test_people.py)."""
        self._cache, self._conf = {}, float(conf)

    def stop_cache(self) -> None:
        self._cache = None

    def _one(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"images": x})[0]

    def __call__(self, im, *args, **kwargs):
        import torch

        x = im.detach().cpu().float().numpy()
        keys = self.keys if self.keys is not None and len(self.keys) == len(x) else [None] * len(x)
        self.keys = None
        size = (x.shape[2], x.shape[3])
        outs: list[np.ndarray | None] = [None] * len(x)
        if self._cache is not None:
            for i, k in enumerate(keys):
                hit = self._cache.get(k) if k is not None else None
                if hit is not None and hit[0] == size:
                    _, anchors, keep, vals = hit
                    full = np.zeros((1, vals.shape[0], anchors), np.float32)
                    full[0][:, keep] = vals
                    outs[i] = full
        todo = [i for i in range(len(x)) if outs[i] is None]
        # one image per run: measured 0.040 s per 480x384 frame one by one vs 0.045-0.047 in a
        # batch of 8 (the activations of one frame stay in cache); PyTorch 0.054-0.060 in batches of 8
        parts = [x[i : i + 1] for i in todo]
        self.runs += len(parts)
        if self.frames_at_once > 1 and len(parts) > 1:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(self.frames_at_once, thread_name_prefix="yolo")
            ran = list(self._pool.map(self._one, parts))
        else:
            ran = [self._one(p) for p in parts]
        for i, y in zip(todo, ran, strict=True):
            outs[i] = y
            if self._cache is not None and keys[i] is not None:
                keep = np.flatnonzero(y[0, 4] >= self._conf)  # row 4: the person score
                self._cache[keys[i]] = (size, y.shape[2], keep, y[0][:, keep].copy())
        return torch.from_numpy(np.concatenate(outs))


def frames_in(task: Clip) -> int:
    """Clip frames of the shot at ``task.clip_fps`` (:func:`talkset.stages.clip.tick_count`)."""
    from talkset.stages.clip import tick_count

    return tick_count(task.shot.start_s, task.shot.end_s, task.clip_fps)


def gap_frames(gap_s: float, fps: float) -> int:
    """Largest frame difference between two detections that still counts as present throughout:
    ``floor(gap_s * fps)`` (0.48 s at 25 fps = 12, TalkNet's ``numFailedDet`` in MIT's seed)."""
    return max(1, math.floor(gap_s * fps + 1e-6))


def min_frames(min_s: float, fps: float) -> int:
    """Frames a span needs to last ``min_s`` seconds: ``ceil(min_s * fps)`` (5.04 s -> 126 at 25
    fps, the seed's ``end - start > 125``)."""
    return max(1, math.ceil(min_s * fps - 1e-6))


def present_spans(
    frame_idx: list[np.ndarray], num_frames: int, max_gap: int, min_len: int
) -> list[tuple[int, int]]:
    """Spans of clip frames in which every track is present.

    ``frame_idx``: one int array per track, the clip frames where it was detected (increasing);
    a track covers its frames, and the frames between two of its detections whose frame
    difference is <= ``max_gap`` (tracker gaps filled). Returns ``[(start, end), ...]`` (end
    exclusive, within ``[0, num_frames)``) of the maximal runs covered by *all* tracks that are
    >= ``min_len`` frames long, in order; ``[]`` when none (or no track).
    """
    if not frame_idx or num_frames <= 0:
        return []
    common = np.ones(num_frames, dtype=bool)
    for f in frame_idx:
        f = np.asarray(f, dtype=np.int64)
        f = f[(f >= 0) & (f < num_frames)]
        cover = np.zeros(num_frames, dtype=bool)
        if len(f):
            cover[f] = True
            d = np.diff(f)
            for a, b in zip(f[:-1][(d > 1) & (d <= max_gap)], f[1:][(d > 1) & (d <= max_gap)], strict=True):
                cover[a:b] = True
        common &= cover
    edges = np.flatnonzero(np.diff(np.concatenate(([0], common.astype(np.int8), [0]))))
    return [(int(a), int(b)) for a, b in zip(edges[0::2], edges[1::2], strict=True) if b - a >= min_len]


def cut_track(track: PersonTrack, start: int, end: int) -> PersonTrack:
    """The part of ``track`` on clip frames ``[start, end)``, frames re-indexed from ``start`` = 0."""
    keep = (track.frame_idx >= start) & (track.frame_idx < end)
    return PersonTrack(
        track_id=track.track_id,
        frame_idx=(track.frame_idx[keep] - start).astype(np.int32),
        boxes=track.boxes[keep],
        scores=track.scores[keep],
        body_kpts=track.body_kpts[keep],
    )


def clips_for_spans(task: Clip) -> list[Clip]:
    """One clip item per span of a kept shot (``task.spans``; ``None``: the whole shot, one clip).

    Part ``i`` gets clip id ``clip_id_for(source_id, shot_idx, i)``, ``start_s`` / ``end_s`` =
    ``shot.start_s + frame / clip_fps`` of its span (the last one at most ``shot.end_s``; so its frame ``k`` is the people stage's
    frame ``start + k``: the same tick, see :mod:`talkset.stages.clip`), its person tracks cut
    to the span and re-indexed from 0, and ``spans`` cleared."""
    if not task.spans:
        return [replace(task, part=0)]
    out = []
    for i, (a, b) in enumerate(task.spans):
        out.append(replace(
            task,
            clip_id=clip_id_for(task.source.source_id, task.shot.shot_idx, i),
            start_s=task.shot.start_s + a / task.clip_fps,
            end_s=min(task.shot.end_s, task.shot.start_s + b / task.clip_fps),
            person_tracks=[cut_track(t, a, b) for t in task.person_tracks],
            spans=None,
            part=i,
        ))
    return out


def _containment(a: PersonTrack, b: PersonTrack) -> float:
    """Median over the frames both tracks share of area(a ∩ b) / area(a); 0 if none shared."""
    common, ia, ib = np.intersect1d(a.frame_idx, b.frame_idx, assume_unique=True, return_indices=True)
    if not len(common):
        return 0.0
    ba, bb = a.boxes[ia].astype(np.float64), b.boxes[ib].astype(np.float64)
    iw = (np.minimum(ba[:, 2], bb[:, 2]) - np.maximum(ba[:, 0], bb[:, 0])).clip(0)
    ih = (np.minimum(ba[:, 3], bb[:, 3]) - np.maximum(ba[:, 1], bb[:, 1])).clip(0)
    own = ((ba[:, 2] - ba[:, 0]) * (ba[:, 3] - ba[:, 1])).clip(1e-6)
    return float(np.median(iw * ih / own))


def _drop_nested(people: list[tuple[float, PersonTrack]], max_nested: float) -> list[tuple[float, PersonTrack]]:
    """Drop tracks nested inside a better-scored track (duplicate partial detections).

    YOLO sometimes adds a second, low-score box on part of a person cut by the frame edge
    (seen on a panned crop of the blackjournal two-shot: a 0.37-score box on the left man's
    upper body, inside his 0.84 box on every shared frame, for 52 % of the shot).
    """
    ranked = sorted(people, key=lambda p: -float(np.median(p[1].scores)))
    kept: list[tuple[float, PersonTrack]] = []
    for cand in ranked:
        if all(_containment(cand[1], k[1]) < max_nested for k in kept):
            kept.append(cand)
    return kept


def weights_name(w: str) -> str:
    """File name of a weights option (``"yolo11n-pose.pt"`` for a path to it)."""
    return str(w).replace("\\", "/").rsplit("/", 1)[-1]
