"""The work items that travel between stages, and the typed results each stage adds to them.

What travels is small and typed: paths, probe facts, boxes, keypoints and scores as numpy arrays
with the shapes and units written on each field. Frames never travel; every stage decodes the
file it needs itself.

- :class:`Source` — one source video (a URL or a local path). The download stage fills in its
  file and probe fields, the shots stage its :attr:`Source.shots`.
- :class:`Shot` — one detected shot of a source (a row of the ``shots`` table).
- :class:`Clip` — a shot on its way to becoming a clip: the people stage adds its
  :class:`PersonTrack` list and decides whether it is kept, the clip stage its media files, and
  the annotation stages their typed results (:class:`PoseTrack`, :class:`FaceTrack`,
  :class:`SpeakingTrack`, :class:`Alignment`).

Each stage declares the fields of its item that it reads and writes
(:attr:`talkset.stages.base.Stage.reads` / ``writes``); units everywhere: seconds, pixels of the
frame the boxes were measured on, keypoint rows ``[x px, y px, score]``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def source_id_for(source: str) -> str:
    """A stable, filesystem- and partition-safe id for a source (URL or path).

    ``<stem>-<8 hex of sha1(source)>``, e.g. ``dvscripts_blackjournal-1a2b3c4d``.
    """
    stem = re.sub(r"[?#].*$", "", source.rstrip("/")).split("/")[-1]
    stem = re.sub(r"\.[A-Za-z0-9]{1,5}$", "", stem)
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_")[:40] or "source"
    digest = hashlib.sha1(source.encode()).hexdigest()[:8]
    return f"{stem}-{digest}"


def clip_id_for(source_id: str, shot_idx: int, part: int = 0) -> str:
    """``<source_id>-s<shot_idx:04d>`` for a shot's first (or only) clip, ``...-p<part>`` for its
    later ones (``part`` >= 1: the shot was trimmed to several spans, see
    :func:`talkset.stages.people.present_spans`). Part 0 keeps the id of a whole-shot clip, so
    roots written before shots could give several clips resume unchanged."""
    if part < 0:
        raise ValueError(f"part must be >= 0, not {part}")
    return f"{source_id}-s{shot_idx:04d}" + (f"-p{part}" if part else "")


@dataclass
class Shot:
    """One detected shot (a row of the ``shots`` table). Frames index the source video.

    ``start_frame`` inclusive, ``end_frame`` exclusive (source frames at the nominal rate);
    ``start_s`` / ``end_s`` presentation times in the source (s). ``kept`` / ``reason`` are the
    people stage's decision (``reason`` ``""`` when kept, else e.g. ``too_short``, ``people=1``,
    ``camera_motion=0.0012``); ``camera_motion`` in frame diagonals per clip frame.
    """

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
    # issue 11 §6, people stage (talkset.stages.layout / overlay): per shot; a trimmed clip inherits them
    layout: str | None = None  # "single" | "split"
    seams: list[float] | None = None  # split-screen seams, shares of the width, left to right
    overlay_share: float | None = None  # share of the frame covered by changing burned-in overlays
    occlusion_share: float | None = None  # share of person-frames > 30 % covered by a box in front or level


@dataclass
class Source:
    """One source video.

    ``url`` is the source as given (an ``http(s)`` URL, a local path or a ``file://`` URL);
    the download stage sets ``video_path`` (absolute, under ``root/videos``) and the probe
    fields: ``duration_s`` (s), ``fps`` (average frame rate), ``num_frames``, ``width`` /
    ``height`` (px), ``has_audio``. The shots stage sets ``shots`` (ordered, contiguous, covering
    the whole video).
    """

    url: str
    source_id: str
    video_path: str | None = None
    duration_s: float | None = None
    fps: float | None = None
    num_frames: int | None = None
    width: int | None = None
    height: int | None = None
    has_audio: bool | None = None
    shots: list[Shot] | None = None


@dataclass
class PersonTrack:
    """One person track over a clip, sampled at the clip's frame rate (people stage).

    Arrays share their first axis (T = frames where the track is present):
    ``frame_idx`` int32 (T,) clip frames, increasing; ``boxes`` float32 (T, 4) x1, y1, x2, y2 px;
    ``scores`` float32 (T,) detector confidence; ``body_kpts`` float32 (T, 17, 3) COCO body
    keypoints ``[x px, y px, score]`` from YOLO-pose. ``track_id`` 0..n-1 left to right.
    """

    track_id: int
    frame_idx: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    body_kpts: np.ndarray

    def __len__(self) -> int:
        return int(len(self.frame_idx))


@dataclass
class PoseTrack:
    """Whole-body keypoints estimated top-down on one person track's boxes (pose stage).

    ``frame_idx`` int32 (T,) the person track's frames; ``keypoints`` float32 (T, 133, 3)
    COCO-WholeBody rows ``[x px, y px, score]`` in clip pixels, all 0 where not found.
    """

    track_id: int
    frame_idx: np.ndarray
    keypoints: np.ndarray


@dataclass
class FaceTrack:
    """One face track (faces stage: YuNet detections linked by IoU, gaps interpolated).

    ``frame_idx`` int32 (F,) consecutive clip frames; ``boxes`` float32 (F, 4) x1, y1, x2, y2 px;
    ``scores`` float32 (F,) YuNet score, 0 on interpolated frames; ``landmarks`` float32
    (F, 5, 2) right eye, left eye, nose tip, right / left mouth corner px; ``detected`` bool (F,)
    False on interpolated frames. ``face_track_id`` 0..N-1 by first frame, then box centre x.
    """

    face_track_id: int
    frame_idx: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray
    detected: np.ndarray

    def __len__(self) -> int:
        return int(len(self.frame_idx))


@dataclass
class SpeakingTrack:
    """Speaking signals of one face track, one value per frame (speaking stage), all (F,):
    ``frame_idx`` int32 clip frames; ``asd_logit_talkset``, ``asd_logit_ava`` float32 Light-ASD
    speaking logits; ``vad_prob`` float32 Silero VAD speech probability in [0, 1];
    ``speaking_score`` float32 in [-1, 1] (1 speaking, -1 silent)."""

    face_track_id: int
    frame_idx: np.ndarray
    asd_logit_talkset: np.ndarray
    asd_logit_ava: np.ndarray
    vad_prob: np.ndarray
    speaking_score: np.ndarray

    #: the per-frame signal columns, in the order of the ``frames`` table
    COLUMNS = ("asd_logit_talkset", "asd_logit_ava", "vad_prob", "speaking_score")


@dataclass
class Alignment:
    """Every annotation given to its person (align stage).

    ``columns``: ``{track_id: {column: array aligned to that PersonTrack's frame_idx}}`` with the
    ``frames`` table's annotation columns: ``keypoints`` float32 (T, 133, 3), ``keypoints_59``
    float32 (T, 59, 3) (NaN rows where no pose was assigned), ``face_box`` float32 (T, 4) NaN for
    none, ``face_track_id`` int32 (T,) -1 for none, and the :attr:`SpeakingTrack.COLUMNS` float32
    (T,) NaN for none; with face keypoints and the clip's audio also ``lip_aperture``,
    ``lip_sync`` and ``asd_vad_score`` float32 (T,) (``speaking_score`` is then the speaking
    stage's score after the speech attribution of :mod:`talkset.stages.align`). A stage that did
    not run leaves its columns out (null in Parquet).
    ``face_to_person``: ``{face_track_id: track_id}``; ``stats``: counts (see the align stage).
    """

    columns: dict[int, dict[str, np.ndarray]]
    face_to_person: dict[int, int] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class Clip:
    """A shot on its way to becoming a clip, and its annotations.

    ``source`` and ``shot`` say where it comes from; ``start_s`` / ``end_s`` are the clip's span in
    the source (s; the whole shot unless set); ``clip_fps`` is the clip's frame rate (25).
    The people stage sets ``person_tracks`` (and the shot's decision); the clip stage the media:
    ``video_path`` (25 fps H.264 mp4), ``audio_path`` (16 kHz mono WAV), ``width`` / ``height``
    (px), ``num_frames``. The annotation stages set ``poses`` (``{track_id: PoseTrack}``),
    ``face_tracks``, ``speaking`` (``{face_track_id: SpeakingTrack}``) and ``alignment``; a field
    left ``None`` means its stage did not run. ``rejected`` is a reason set by a stage that drops
    the clip after it was cut (not an error: the clip is not written and the reason is recorded
    with its shot). ``models`` names the models and versions used (shard metadata).
    ``spans``: set by the people stage on a kept shot when it trims shots to the people's common
    presence (``trim_to_present``): ``[(start, end), ...]`` clip frames of the shot, end exclusive;
    the flow makes one clip per span (:func:`talkset.stages.people.clips_for_spans`). ``part``:
    the span's index (0 for a whole-shot clip).
    """

    source: Source
    shot: Shot
    clip_id: str
    clip_fps: float
    person_tracks: list[PersonTrack] = field(default_factory=list)
    video_path: str | None = None
    audio_path: str | None = None
    width: int | None = None
    height: int | None = None
    num_frames: int | None = None
    poses: dict[int, PoseTrack] | None = None
    face_tracks: list[FaceTrack] | None = None
    speaking: dict[int, SpeakingTrack] | None = None
    alignment: Alignment | None = None
    rejected: str | None = None
    models: dict[str, str] = field(default_factory=dict)
    start_s: float | None = None
    end_s: float | None = None
    spans: list[tuple[int, int]] | None = None
    part: int = 0

    def __post_init__(self) -> None:
        if self.start_s is None:
            self.start_s = self.shot.start_s
        if self.end_s is None:
            self.end_s = self.shot.end_s
