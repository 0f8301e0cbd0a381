"""shots stage: split a source video into shots with PySceneDetect (scenedetect 0.7.2).

ContentDetector (default) scores the HSV + edge change between consecutive frames and cuts where
it exceeds ``threshold`` (27 by default); AdaptiveDetector divides that score by its rolling mean
over ``window_width`` frames either side and cuts where the ratio exceeds ``adaptive_threshold``
(3 by default). Both keep at least 15 frames between cuts (PySceneDetect's ``min_scene_len``).

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
from typing import ClassVar

from talkset.items import Shot, Source
from talkset.stages.base import Resources, Stage, StageError

DETECTORS = ("content", "adaptive")
TOO_SHORT = "too_short"


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
        detector: ``"content"`` (ContentDetector) or ``"adaptive"`` (AdaptiveDetector).
        threshold: ContentDetector ``threshold`` or AdaptiveDetector ``adaptive_threshold``;
            ``None`` keeps PySceneDetect's default (27.0 / 3.0).
        min_shot_s: shots shorter than this (seconds) are rejected as ``too_short``.
        backend: PySceneDetect decoding backend, ``"opencv"`` (fastest here) or ``"pyav"``.

    ``process(Source) -> Source`` with ``shots``: a list of :class:`talkset.items.Shot`,
    ordered, contiguous, covering ``[0, duration)`` of ``video_path``. Raises :class:`StageError` when the file cannot be
    opened or has no decodable frame.
    """

    detector: str = "content"
    threshold: float | None = None
    min_shot_s: float = 3.0
    backend: str = "opencv"

    name: ClassVar[str] = "shots"
    resources: ClassVar[Resources] = Resources(cpus=1)
    reads: ClassVar[tuple[str, ...]] = ("video_path",)
    writes: ClassVar[tuple[str, ...]] = ("shots",)

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {DETECTORS}, not {self.detector!r}")

    def make_detector(self):
        """A fresh PySceneDetect detector with this stage's settings (detectors keep state)."""
        from scenedetect import AdaptiveDetector, ContentDetector

        if self.detector == "content":
            return ContentDetector() if self.threshold is None else ContentDetector(threshold=float(self.threshold))
        if self.threshold is None:
            return AdaptiveDetector()
        return AdaptiveDetector(adaptive_threshold=float(self.threshold))

    def model_info(self) -> dict[str, str]:
        import scenedetect

        det = "ContentDetector" if self.detector == "content" else "AdaptiveDetector"
        thr = "default" if self.threshold is None else f"{self.threshold:g}"
        return {"PySceneDetect": f"{scenedetect.__version__} {det}(threshold={thr}) backend={self.backend}"}

    def process(self, task: Source) -> Source:
        from scenedetect import SceneManager, VideoOpenFailure, open_video

        if not task.video_path:
            raise StageError(f"{task.url}: no video_path; run the download stage first")
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
