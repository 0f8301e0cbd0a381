"""The stage interface and the work items that travel between stages.

A stage is a small dataclass (NVIDIA Curator style): plain fields are its parameters,
``resources`` is what each of its Ray actors asks for, ``setup()`` loads models once per actor,
and ``process(item)`` is pure on its input and returns the next item(s). A stage signals a
per-item problem by raising :class:`StageError`; the flow records it as a ``failures`` row and the
run goes on.

What travels is small: paths, boxes, keypoints, scores. Frames never travel; each stage decodes
the file itself at the resolution it needs.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class Resources:
    """What one actor of a stage asks Ray for. ``gpus`` is requested only where the cluster has
    GPUs (an actor asking for a GPU on a GPU-less cluster would stay pending forever)."""

    cpus: float = 1.0
    gpus: float = 0.0


class StageError(Exception):
    """A per-item failure with a clear reason (becomes a ``failures`` row)."""

    def __init__(self, reason: str, *, stage: str | None = None, item: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.stage = stage
        self.item = item


class Stage:
    """Base class of every stage. Subclasses are dataclasses."""

    name: ClassVar[str] = "stage"
    resources: ClassVar[Resources] = Resources()

    def setup(self) -> None:
        """Load models; called once per actor before the first ``process``."""

    def process(self, item: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def model_info(self) -> dict[str, str]:
        """Model names and versions this stage used (recorded in shard metadata)."""
        return {}


def source_id_for(source: str) -> str:
    """A stable, filesystem- and partition-safe id for a source (URL or path).

    ``<stem>-<8 hex of sha1(source)>``, e.g. ``dvscripts_blackjournal-1a2b3c4d``.
    """
    stem = re.sub(r"[?#].*$", "", source.rstrip("/")).split("/")[-1]
    stem = re.sub(r"\.[A-Za-z0-9]{1,5}$", "", stem)
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")[:40] or "source"
    digest = hashlib.sha1(source.encode()).hexdigest()[:8]
    return f"{stem}-{digest}"


@dataclass
class VideoTask:
    """One source video. ``video_path`` is set by the download stage."""

    source: str
    source_id: str
    url: str | None = None
    video_path: str | None = None
    duration_s: float | None = None
    fps: float | None = None
    num_frames: int | None = None
    width: int | None = None
    height: int | None = None
    has_audio: bool | None = None


@dataclass
class ShotRecord:
    """One detected shot (a row of the ``shots`` table). Frames index the source video."""

    source_id: str
    shot_idx: int
    start_frame: int
    end_frame: int  # exclusive
    start_s: float
    end_s: float
    kept: bool = False
    reason: str = ""
    num_people: int = 0
    camera_motion: float | None = None


@dataclass
class Track:
    """One person track over a clip, sampled at the clip's frame rate.

    Arrays share their first axis (T = frames where the track is present):
    ``frame_idx`` int32 (T,), ``boxes`` float32 (T, 4) x1, y1, x2, y2 in pixels,
    ``scores`` float32 (T,), ``body_kpts`` float32 (T, 17, 3) COCO body keypoints [x px, y px, score].
    """

    track_id: int
    frame_idx: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    body_kpts: np.ndarray

    def __len__(self) -> int:
        return int(len(self.frame_idx))


@dataclass
class ClipTask:
    """A kept shot on its way to becoming a clip, and later its annotations.

    ``tracks`` come from the people stage; annotation stages (pose, faces, speaking, align) add
    entries to ``annotations`` keyed by stage name. ``clip_fps`` is the clip's frame rate (25).
    """

    video: VideoTask
    shot: ShotRecord
    clip_id: str
    clip_fps: float
    tracks: list[Track] = field(default_factory=list)
    video_path: str | None = None  # the re-encoded clip
    audio_path: str | None = None
    width: int | None = None
    height: int | None = None
    num_frames: int | None = None
    annotations: dict[str, Any] = field(default_factory=dict)
    models: dict[str, str] = field(default_factory=dict)

    @property
    def start_s(self) -> float:
        return self.shot.start_s

    @property
    def end_s(self) -> float:
        return self.shot.end_s


def clip_id_for(source_id: str, shot_idx: int) -> str:
    """``<source_id>-s<shot_idx:04d>``."""
    return f"{source_id}-s{shot_idx:04d}"
