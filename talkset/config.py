"""One config object per run (video2dataset style): :class:`CollectConfig` for collection here,
:class:`talkset.training.config.TrainConfig` / ``EvalConfig`` for CovOG.

Load from YAML with ``from_yaml``, override from the command line (the CLI's options default to
``None`` = the dataclass default, so each setting has exactly one default), or build in Python.
Every model path is local: a bare file name is looked up in ``$TALKSET_WEIGHTS`` then
``../shared/weights`` (see :mod:`talkset.weights`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml


class Config:
    """YAML / dict loading shared by the config dataclasses. Unknown keys are an error."""

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any):
        """Fields from a YAML mapping, then ``overrides`` whose value is not ``None``."""
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a {cls.__name__} YAML must be a mapping of field: value")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)} (known: {sorted(known)})")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_of(cls: type, name: str) -> Any:
    """The dataclass default of field ``name`` (for CLI help texts)."""
    for f in fields(cls):
        if f.name == name:
            return f.default
    raise KeyError(name)


@dataclass
class CollectConfig(Config):
    # where
    root: str = "dataset"
    ray_address: str | None = None  # None: $RAY_ADDRESS, else a local Ray
    ray_num_cpus: int | None = None  # local Ray only
    use_gpus: str = "auto"  # auto: ask for GPUs only if the Ray cluster has them; "never"
    # download
    download_retries: int = 3
    download_timeout_s: float = 600.0
    # shots (PySceneDetect, or TransNetV2)
    detector: str = "content"  # content | adaptive | transnetv2
    threshold: float | None = None  # detector default when None
    min_shot_s: float = 3.0
    # people (YOLO + ByteTrack) and shot filter
    yolo_weights: str = "yolo11n-pose.pt"
    person_conf: float = 0.25
    track_imgsz: int = 640
    # issue 15: on CPU nodes YOLO and Light-ASD's visual encoder run in ONNX Runtime ("auto"; "torch"
    # keeps PyTorch); people_threads frames / pose_threads person tracks at once per actor, which
    # asks Ray for that many CPUs (talkset.stages.people / pose docstrings)
    runtime: str = "auto"
    people_threads: int = 2
    pose_threads: int = 2
    min_people: int = 2
    max_people: int = 4
    presence_frac: float = 0.5  # a track counts as present if in >= this share of the shot's frames
    min_box_frac: float = 0.02  # ignore tracks whose median box is < this share of the frame area
    max_camera_motion: float | None = None  # None: talkset.stages.people.PeopleStage default (see its docstring)
    # clip rules (issue 11 §3, README "Clip rules"): trim a kept shot to the spans where all its counted
    # people are present (gaps <= presence_gap_s filled; spans >= min_shot_s), one clip per span; and
    # MIT's face-size rules after align (mean face box area px^2 of each person, smallest / largest
    # mean), None = off. Off by default: whole shots keep more data and per-frame presence is in `frames`.
    trim_to_present: bool = False
    presence_gap_s: float = 0.5
    min_face_area: float | None = None
    min_face_area_ratio: float | None = None
    # throughput (issue 15): the shot filter decided on ~filter_fps frames/s before full-rate tracking
    # (None: the PeopleStage default, 0: full rate only); stages of a clip that need each other's
    # output run one after another, the others at the same time (False: all in sequence)
    filter_fps: float | None = None
    parallel_stages: bool = True
    # editing artifacts and occlusion (issue 11 §6, talkset.stages.overlay): measured and stored on every
    # shot; these reject: split_screens keep | reject, max_overlay_share / max_occlusion_share (None: keep)
    split_screens: str = "keep"
    max_overlay_share: float | None = None
    max_occlusion_share: float | None = None
    # clip
    clip_fps: float = 25.0
    audio_rate: int = 16000
    crf: int = 18
    # annotation (issue 5 stages read these)
    annotate: bool = True
    pose_backend: str = "mediapipe"  # mediapipe | onnx | mmpose
    pose_model: str | None = None  # ONNX file / mmpose checkpoint for those backends
    pose_config: str | None = None  # mmpose config
    yunet_weights: str = "face_detection_yunet_2026may.onnx"
    asd_talkset_weights: str = "light-asd_finetuning_TalkSet.model"
    asd_ava_weights: str = "light-asd_pretrain_AVA_CVPR.model"
    # scale: actors per stage and bounded in-flight work (backpressure)
    concurrency: dict[str, int] = field(default_factory=dict)  # stage name -> fixed number of actors
    # issue 15 §4: stages not in `concurrency` autoscale (1 actor to start; talkset.flows.runner's rule)
    max_actors: dict[str, int] = field(default_factory=dict)  # stage name -> autoscaling cap (else the cluster)
    autoscale_every_s: float = 1.0  # how often the driver's balancer looks at the queues
    autoscale_idle_s: float = 30.0  # an autoscaled actor idle this long is retired (above the minimum)
    max_sources_in_flight: int = 2
    max_shots_in_flight: int = 2
    max_task_retries: int = 2  # Ray retries of a stage call after an actor dies
    progress_every_s: float = 30.0  # per-stage progress line while stages run


# -- presets (issue 11 §3) -------------------------------------------------------------------------
# ``talkset collect --preset NAME``: CollectConfig fields set before --config and the other options.
# "mit": the clip rules of MIT's seed code (github.com/Zeyu-Zhu/Multi-human-Talking-Video-Dataset,
# data_collection_pipeline/2_select_valid_clips.py and 1_whisperV_inference.py):
#   clip_fps 25               1_whisperV_inference.py re-encodes every video `ffmpeg -r 25`;
#   min_shot_s 5.04           `--min_frame 25*5` and `end - start > 125`: 126 frames / 25 fps; with
#                             trim_to_present it is also the shortest span (a clip of >= 126 frames);
#   min/max_people 2-4        MIT Sec. 3 (2-4 people in one static shot), as talkset's default;
#   trim_to_present True      get_vaild_period: the clip is the overlap of the chosen tracks' periods;
#   presence_gap_s 0.48       TalkNet track_shot with `--min_failed_detect 12`: detections up to
#                             12 frames apart (at 25 fps) stay one track, the gap interpolated;
#   min_face_area 4096        `--min_face_area 64*64` px^2, mean |w*h| of the face track's boxes, in
#                             pixels of the unscaled source (talkset's clips are not scaled either);
#   min_face_area_ratio 0.5   `--min_face_area_radio 0.5`: min / max of the people's mean areas > 0.5.
# NOT reproduced (README "Clip rules", known limits): the seed's people are face tracks (talkset's
# are YOLO person tracks counted when present in >= presence_frac of the shot, faces linked by the
# align stage); it fixes the number of people per run (`--num_people 2`, every combination of that
# many tracks) where talkset keeps all 2-4 counted people; it drops periods claimed by more than one
# combination; its mean face area runs over the whole face track, talkset's over the clip.
PRESETS: dict[str, dict[str, Any]] = {
    "mit": {
        "clip_fps": 25.0,
        "min_shot_s": 126 / 25,
        "min_people": 2,
        "max_people": 4,
        "trim_to_present": True,
        "presence_gap_s": 12 / 25,
        "min_face_area": 64.0 * 64.0,
        "min_face_area_ratio": 0.5,
    },
}
PRESETS["mit"]["split_screens"] = "reject"  # MIT Sec. 3: "avoiding ... editing artifacts" (issue 11 §6)


def preset(name: str) -> dict[str, Any]:
    """The CollectConfig fields of preset ``name`` (a copy); ``ValueError`` names the known ones."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} (known: {sorted(PRESETS)})")
    return dict(PRESETS[name])
