"""Arrow schemas of the dataset tables. Column names are part of talkset's interface.

Layout under a dataset root (hive-partitioned by source id)::

    root/tables/<table>/source=<source_id>/<part>.parquet

The ``source`` column comes from the partition folder (DuckDB ``hive_partitioning=true``,
pyarrow ``partitioning="hive"``); it is not stored inside the files.

Units: times in seconds, boxes and keypoints in pixels of the clip's frames,
keypoint triples are ``[x px, y px, score]``.
"""

from __future__ import annotations

import pyarrow as pa

F32 = pa.float32()
XYS = pa.list_(F32)  # one [x, y, score] triple
BOX = pa.list_(F32)  # [x1, y1, x2, y2]
KPTS = pa.list_(XYS)

#: the tables of a collection run (always present as views, empty until written)
TABLES = ("clips", "frames", "shots", "failures")

CLIPS = pa.schema(
    [
        ("clip_id", pa.string()),
        ("url", pa.string()),  # the source as given: URL or local path
        ("source_path", pa.string()),  # downloaded / linked source video under root/videos
        ("video_path", pa.string()),  # re-encoded clip, relative to the dataset root
        ("audio_path", pa.string()),  # 16 kHz mono WAV, relative to the dataset root
        ("shot_idx", pa.int32()),
        ("start_s", pa.float64()),  # in the source video
        ("end_s", pa.float64()),
        ("duration_s", pa.float64()),
        ("fps", pa.float32()),
        ("num_frames", pa.int32()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("num_people", pa.int32()),
        ("camera_motion", pa.float32()),
        ("run_id", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        # issue 11 §6 (talkset.stages.layout / overlay): editing artifacts and occlusion, per shot
        ("layout", pa.string()),  # single | split
        ("seams", pa.list_(F32)),  # split-screen seams as shares of the width, left to right ([] single)
        ("overlay_share", F32),  # share of the frame under changing burned-in overlays; null: camera never still
        ("occlusion_share", F32),  # share of person-frames > 30 % covered by a box in front or level
    ]
)

FRAMES = pa.schema(
    [
        ("clip_id", pa.string()),
        ("track_id", pa.int32()),
        ("frame_idx", pa.int32()),  # index of the frame in the clip (clip fps)
        ("time_s", pa.float64()),  # seconds from the clip start (frame_idx / fps)
        ("box", BOX),  # person box x1, y1, x2, y2 px
        ("box_score", F32),
        ("body_keypoints", KPTS),  # 17 COCO body keypoints from YOLO-pose
        # filled by the annotation stages (issue 5); null when not computed
        ("keypoints", KPTS),  # 133 COCO-WholeBody keypoints
        ("keypoints_59", KPTS),  # the 59-keypoint subset (talkset.wholebody.SUBSET_59)
        ("face_box", BOX),
        ("face_track_id", pa.int32()),
        ("asd_logit_talkset", F32),
        ("asd_logit_ava", F32),
        ("vad_prob", F32),
        ("speaking_score", F32),  # [-1, 1]; 1 speaking, -1 silent; null without a face track
        # issue 11: audio-visual attribution (talkset.annotators.av_sync, talkset.stages.align)
        ("lip_aperture", F32),  # inner-lip gap / outer eye-corner distance; null without face keypoints
        ("lip_sync", F32),  # [-1, 1] lagged windowed correlation of lip aperture and speech envelope
        ("asd_vad_score", F32),  # the speaking stage's score before attribution (speaking_score's input)
    ]
)

SHOTS = pa.schema(
    [
        ("shot_idx", pa.int32()),
        ("start_frame", pa.int64()),  # source video frame index, inclusive
        ("end_frame", pa.int64()),  # exclusive
        ("start_s", pa.float64()),
        ("end_s", pa.float64()),
        ("kept", pa.bool_()),
        ("reason", pa.string()),  # why rejected ('' when kept): too_short, people=1, camera_motion=..., layout=split
        ("num_people", pa.int32()),
        ("camera_motion", pa.float32()),
        ("clip_id", pa.string()),  # the shot's first clip (null when none): kept for roots and queries before clip_ids
        ("run_id", pa.string()),
        # issue 11 §6, as in CLIPS (null for shots the people stage did not measure: too_short, errors)
        ("layout", pa.string()),
        ("seams", pa.list_(F32)),
        ("overlay_share", F32),
        ("occlusion_share", F32),
        # issue 11 §3 (trim_to_present): a shot may give several clips, in part order (-s0003, -s0003-p1, ...)
        ("clip_ids", pa.list_(pa.string())),
        ("rejected", pa.list_(pa.string())),  # "<clip_id>: <reason>" per clip a stage rejected (face-size rules)
    ]
)

FAILURES = pa.schema(
    [
        ("stage", pa.string()),
        ("item", pa.string()),  # the source, shot or clip the failure is about
        ("error", pa.string()),
        ("time", pa.timestamp("us", tz="UTC")),
        ("run_id", pa.string()),
    ]
)

# Written by the train flow (talkset.training.splits): one row per clip, one unpartitioned file
# tables/splits/splits.parquet.
SPLITS = pa.schema(
    [
        ("clip_id", pa.string()),
        ("source", pa.string()),
        ("split", pa.string()),  # train | test_easy | test_hard
        ("reason", pa.string()),
        ("num_people", pa.int32()),
        ("overlap_share", pa.float32()),  # share of frames with >= 2 people speaking_score > 0
        ("seed", pa.int64()),
        ("created_at", pa.timestamp("us", tz="UTC")),
    ]
)

# Written by the evaluate flow (talkset.flows.evaluate): one row per generated clip, partitioned
# by source, one shard per evaluation run (eval_id).
EVAL = pa.schema(
    [
        ("clip_id", pa.string()),
        ("source", pa.string()),
        ("split", pa.string()),
        ("ssim", pa.float64()),
        ("psnr", pa.float64()),  # dB
        ("fvd", pa.float64()),  # null without an I3D detector
        ("frames", pa.int32()),
        ("checkpoint", pa.string()),
        ("step", pa.int64()),
        ("config", pa.string()),
        ("ablation", pa.string()),
        ("num_steps", pa.int32()),
        ("eval_id", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
    ]
)

# Written by CovOG training (talkset.training.audio_features.AudioFeatureStore): per-frame audio
# features of one clip under one audio model, computed once and reused. One shard per (clip, model),
# partitioned by source; ``features`` is the float32 (num_frames, layers, dim) array, C order,
# little-endian bytes.
AUDIO_FEATURES = pa.schema(
    [
        ("clip_id", pa.string()),
        ("source", pa.string()),
        ("model", pa.string()),  # e.g. wav2vec2-base-960h-12x768, logmel80-randproj-seed0-2x32
        ("num_frames", pa.int32()),
        ("layers", pa.int32()),
        ("dim", pa.int32()),
        ("features", pa.large_binary()),
        ("created_at", pa.timestamp("us", tz="UTC")),
    ]
)

SCHEMAS = {"clips": CLIPS, "frames": FRAMES, "shots": SHOTS, "failures": FAILURES, "splits": SPLITS, "eval": EVAL}
SCHEMAS["audio_features"] = AUDIO_FEATURES
#: tables stored in one file each (no ``source=<id>`` partition folders); their rows carry ``source``
UNPARTITIONED = ("splits",)


def with_source(table: str) -> pa.Schema:
    """The schema of ``table`` as a query sees it: with the ``source`` column (from the partition
    folder for partitioned tables)."""
    schema = SCHEMAS[table]
    return schema if "source" in schema.names else schema.append(pa.field("source", pa.string()))


def empty(table: str) -> pa.Table:
    """An empty table with the schema of ``table`` plus the ``source`` partition column."""
    return with_source(table).empty_table()
