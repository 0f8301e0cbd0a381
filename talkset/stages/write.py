"""write stage: turn an annotated :class:`~talkset.items.Clip` into committed Parquet shards.

Frames rows come from ``clip.person_tracks`` (box, box score, 17 YOLO body keypoints) plus, when
the annotation stages ran, ``clip.alignment.columns``: ``{track_id: {column: array}}`` with arrays
aligned to that track's ``frame_idx``:

- ``keypoints`` float32 (T, 133, 3), ``keypoints_59`` float32 (T, 59, 3); an all-NaN frame (no
  pose assigned to this person there) becomes null
- ``face_box`` float32 (T, 4), NaN where the person has no face in that frame
- ``face_track_id`` int32 (T,), -1 for none
- ``asd_logit_talkset``, ``asd_logit_ava``, ``vad_prob``, ``speaking_score`` float32 (T,), NaN for none
- ``lip_aperture``, ``lip_sync``, ``asd_vad_score`` float32 (T,), NaN for none (align stage, issue 11)

NaN / -1 become nulls in Parquet. The clip's ``clips`` row is written last (the commit point).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa

from talkset.items import Clip
from talkset.stages.base import Resources, Stage
from talkset.storage import schema as S
from talkset.storage.root import DatasetRoot


def _kpt_list(arr: np.ndarray | None, n: int):
    """(T, K, 3) -> list of T lists of K [x, y, s]; None -> T nulls."""
    if arr is None:
        return pa.nulls(n, type=S.KPTS)
    arr = np.asarray(arr, dtype=np.float32)
    t, k, c = arr.shape
    flat = pa.array(arr.reshape(-1), type=S.F32)
    inner = pa.ListArray.from_arrays(pa.array(np.arange(0, t * k * c + 1, c, dtype=np.int32)), flat)
    offsets = pa.array(np.arange(0, t * k + 1, k, dtype=np.int32))
    missing = np.isnan(arr).all(axis=(1, 2))  # a frame with no pose for this person -> null
    if missing.any():
        return pa.ListArray.from_arrays(offsets, inner, mask=pa.array(missing))
    return pa.ListArray.from_arrays(offsets, inner)


def _box_list(arr: np.ndarray | None, n: int):
    """(T, 4) with NaN rows -> list<float>[4] with nulls."""
    if arr is None:
        return pa.nulls(n, type=S.BOX)
    arr = np.asarray(arr, dtype=np.float32)
    valid = ~np.isnan(arr).any(axis=1)
    offsets = pa.array(np.arange(0, 4 * n + 1, 4, dtype=np.int32))
    lst = pa.ListArray.from_arrays(offsets, pa.array(np.nan_to_num(arr).reshape(-1), type=S.F32))
    if valid.all():
        return lst
    return pa.ListArray.from_arrays(offsets, lst.values, mask=pa.array(~valid))


def _float_col(arr: np.ndarray | None, n: int):
    if arr is None:
        return pa.nulls(n, type=S.F32)
    arr = np.asarray(arr, dtype=np.float32)
    return pa.array(arr, type=S.F32, from_pandas=True)  # NaN -> null


def frames_table(task: Clip) -> pa.Table:
    """One row per (track, frame) of the clip, with the ``talkset.storage.schema.FRAMES`` columns."""
    cols_by_track = task.alignment.columns if task.alignment is not None else {}
    parts = []
    fps = float(task.clip_fps)
    for tr in task.person_tracks:
        n = len(tr)
        if n == 0:
            continue
        extra = cols_by_track.get(tr.track_id, {})
        fid = extra.get("face_track_id")
        if fid is not None:
            fid = np.asarray(fid, dtype=np.int32)
            fid_arr = pa.array(fid, type=pa.int32(), mask=fid < 0)
        else:
            fid_arr = pa.nulls(n, type=pa.int32())
        cols = {
            "clip_id": pa.array([task.clip_id] * n, type=pa.string()),
            "track_id": pa.array(np.full(n, tr.track_id, dtype=np.int32)),
            "frame_idx": pa.array(np.asarray(tr.frame_idx, dtype=np.int32)),
            "time_s": pa.array(np.asarray(tr.frame_idx, dtype=np.float64) / fps),
            "box": _box_list(tr.boxes, n),
            "box_score": pa.array(np.asarray(tr.scores, dtype=np.float32)),
            "body_keypoints": _kpt_list(tr.body_kpts, n),
            "keypoints": _kpt_list(extra.get("keypoints"), n),
            "keypoints_59": _kpt_list(extra.get("keypoints_59"), n),
            "face_box": _box_list(extra.get("face_box"), n),
            "face_track_id": fid_arr,
            "asd_logit_talkset": _float_col(extra.get("asd_logit_talkset"), n),
            "asd_logit_ava": _float_col(extra.get("asd_logit_ava"), n),
            "vad_prob": _float_col(extra.get("vad_prob"), n),
            "speaking_score": _float_col(extra.get("speaking_score"), n),
            "lip_aperture": _float_col(extra.get("lip_aperture"), n),
            "lip_sync": _float_col(extra.get("lip_sync"), n),
            "asd_vad_score": _float_col(extra.get("asd_vad_score"), n),
        }
        parts.append(pa.Table.from_pydict(cols, schema=S.FRAMES))
    if not parts:
        return S.FRAMES.empty_table()
    return pa.concat_tables(parts).sort_by([("track_id", "ascending"), ("frame_idx", "ascending")])


def clip_row(task: Clip, root: DatasetRoot, run_id: str) -> dict:
    def rel(p):
        if p is None:
            return None
        try:
            return str(Path(p).resolve().relative_to(root.root))
        except ValueError:
            return str(p)

    return {
        "clip_id": task.clip_id,
        "url": task.source.url,
        "source_path": rel(task.source.video_path),
        "video_path": rel(task.video_path),
        "audio_path": rel(task.audio_path),
        "shot_idx": task.shot.shot_idx,
        "start_s": task.start_s,
        "end_s": task.end_s,
        "duration_s": task.end_s - task.start_s,
        "fps": task.clip_fps,
        "num_frames": task.num_frames,
        "width": task.width,
        "height": task.height,
        "num_people": len(task.person_tracks),
        "camera_motion": task.shot.camera_motion,
        "run_id": run_id,
        "created_at": datetime.now(timezone.utc),
        **shot_labels(task.shot),
    }


def shot_labels(shot) -> dict:
    """The issue 11 §6 columns of a shot (``layout``, ``seams``, ``overlay_share``, ``occlusion_share``;
    :mod:`talkset.stages.overlay`) for the ``clips`` and ``shots`` rows."""
    return {"layout": shot.layout, "seams": shot.seams, "overlay_share": shot.overlay_share,
            "occlusion_share": shot.occlusion_share}


@dataclass
class WriteStage(Stage):
    """Commit a clip: ``frames`` shard then ``clips`` shard, each atomic (temp + rename).

    ``root`` must be a path every Ray node sees (a shared filesystem on a cluster).
    """

    root: str
    run_id: str = ""
    name: ClassVar[str] = "write"
    resources: ClassVar[Resources] = Resources(cpus=0.5)
    reads: ClassVar[tuple[str, ...]] = ("source", "shot", "person_tracks", "video_path", "audio_path")
    optional_reads: ClassVar[tuple[str, ...]] = ("alignment",)
    writes: ClassVar[tuple[str, ...]] = ()  # commits the clip's shards; returns a summary dict

    def process(self, task: Clip) -> dict:
        root = DatasetRoot(self.root)
        frames = frames_table(task)
        meta = {"models": task.models, "clip_id": task.clip_id, "run_id": self.run_id}
        root.commit_clip(task.source.source_id, task.clip_id, clip_row(task, root, self.run_id), frames, meta)
        return {"clip_id": task.clip_id, "frames": frames.num_rows, "people": len(task.person_tracks), "pid": os.getpid()}
