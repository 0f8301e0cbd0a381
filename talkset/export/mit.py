"""``talkset export --format mit ROOT OUT``: the layout the official MIT training code reads.

What the MIT baseline's stage-2 dataset class reads (``HumanDanceVideoDataset`` in
``baseline_train/src/dataset/stage_two.py`` of Zeyu-Zhu/Multi-human-Talking-Video-Dataset; its data
config ``baseline_train/data_config/train.json`` is a list of ``{image_dir, pose_dir,
speak_info_path, audio_embedding_path}``), and what this export writes for it, per clip::

    OUT/train.json                                   the data config, absolute paths, one entry per clip
    OUT/export-summary.json                          what was written, what is missing and why
    OUT/<clip>/frames/output_0001.png ...            image_dir: RGB frames, 1920 x 1080
    OUT/<clip>/pose_images/output_0001.png ...       pose_dir: rendered pose frames, 1920 x 1080
    OUT/<clip>/pose/output_0001.json ...             per-frame poses, read at image_dir.replace("frames", "pose")
    OUT/<clip>/speaker_info_with_instance_bbox.json  speak_info_path
    OUT/<clip>/audio_embedding.pt                    audio_embedding_path (only with wav2vec2 features)
    OUT/<clip>/video.mp4, meta.json                  the clip and MIT's meta keys (as 3_speaking_annotate.py)

How the class uses them, and so why these names and sizes:

- ``sorted(os.listdir(image_dir))[start-1:end]`` with ``[start, end] = infos[0]["clip_range"]``
  (1-based, inclusive) and the same for ``pose_dir``: frame files sort in frame order
  (``output_%04d.png``, MIT's ffmpeg pattern; wider numbers past 9,999 frames) and ``clip_range`` is
  ``[1, n]``; both folders hold exactly ``n`` images.
- The per-frame pose folder is found as ``image_dir.replace("frames", "pose")`` (every occurrence in
  the path), so ``OUT`` may not contain ``frames`` (a clear error) and a clip id containing it is
  written as ``frms``. Each ``.json`` is ``{"instance_info": [{"keypoints": 133 x [x, y],
  "keypoint_scores": 133 floats}, ...]}`` (mmpose / Sapiens output, COCO-WholeBody order); the class
  matches each person to the instance with most keypoints of score >= 0.4 inside its
  ``instance_bbox`` and uses points 5, 6, 23, 31, 39, 53 for the masks. Every person of the speaker
  info gets an instance in every frame (all-zero keypoints with score 0 where the pose is unknown),
  so that match never sees an empty list.
- Instance boxes become masks on a fixed 1080 x 1920 canvas (``get_mask_from_bbox``) that is resized
  like the frames, so frames, pose images, keypoints and boxes are all in 1920 x 1080 pixels: each
  clip frame is letterboxed into 1920 x 1080 (scaled to fit, centred, black bars;
  :func:`talkset.training.dataset.fit_transform`) and every coordinate goes through the same map.
- ``speaker_info_with_instance_bbox.json``: one entry per person (track), in track order:
  ``instance_bbox`` [x1, y1, x2, y2] (the union of the person's boxes over the exported frames),
  ``clip_range`` [1, n], ``speaking_score`` (n floats, indexed by the frame within the range), and
  MIT's other keys ``face_track`` (per-frame face box or null), ``speak`` / ``listen`` (frame
  ranges, MIT's median-filter-5 sign segmentation), ``period_num``, plus ``track_id``.
- Speaking scores on the seed's scale: MIT stores TalkNet's raw, 5-frame-smoothed logit and divides
  it by 3 when training (``activate_score_normalize``). talkset's ``speaking_score`` s in [-1, 1] is
  ``2 min(p_speech, p_face) - 1`` with ``p_face = sigmoid(mean ASD logit)``
  (:mod:`talkset.stages.speaking`); the export writes ``logit((s + 1) / 2)``, clipped to +-6.9
  (p in [0.001, 0.999]): the mean Light-ASD logit where the face decides, lower where the VAD hears
  no speech, and > 0 exactly where ``speaking_score`` > 0. A frame without a face track gets 0.0
  (neither speaking nor silent).
- ``audio_embedding.pt``: ``torch.load`` gives a float32 tensor ``(n, layers, dim)`` indexed by the
  same frame indices: the clip's wav2vec2 rows of the ``audio_features`` table (written by
  ``talkset.training.audio_features.AudioFeatureStore``; ``features`` is little-endian float32
  ``(num_frames, layers, dim)``). Without wav2vec2 rows (no table, or only the log-mel stand-in) no
  file is written and ``export-summary.json`` says so: MIT's class needs it to train.

Measured (4 s of the blackjournal two-shot, 12-16 s, collected with every stage; the whole export
read back with the class's own rules): the scores span -5.47 .. +3.40 (the guest > 0 in 87 % of
frames, the interviewer in none, as ``speaking_score``). MIT's keypoints-in-box match gives the
guest her own pose in 101 of 101 frames but gives the interviewer, seen 3/4 from behind (15 of 133
keypoints >= 0.4), the guest's pose in 86 of 101 frames, because more of her confident points fall
inside his (overlapping) instance box than his own. That is the class's rule, not the export: the
per-frame JSON carries each instance's ``track_id`` and ``bbox`` (unused by the class), and
talkset's own dataset pairs poses with people by track id. Speed: 0.74 frames/s for the 101
frames (2-core VM shared with other jobs, load average ~50).

Writing: each clip is built in ``OUT/.tmp-<uuid>-<clip>`` and renamed into place, so a clip folder
is complete or absent; ``train.json`` and the summary are replaced atomically at the end. A clip
that cannot be exported (missing media, no frames) is left out, listed in the summary with its
error and recorded as a ``failures`` row (stage ``export``) in the root; the others go on.
Cost: decoding, letterboxing and writing two 1920 x 1080 PNGs per frame (PNG level 1).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import FramesReader, committed_clips

WIDTH, HEIGHT = 1920, 1080  # stage_two.py get_mask_from_bbox's canvas
SPEAK_INFO = "speaker_info_with_instance_bbox.json"
AUDIO_FILE = "audio_embedding.pt"
P_CLIP = 1e-3  # speaking probability clip before the logit: |score| <= 6.9
MEDFILT = 5  # MIT 3_speaking_annotate.py --ks


def to_seed_scale(speaking_score: np.ndarray) -> np.ndarray:
    """talkset ``speaking_score`` in [-1, 1] (NaN unknown) -> MIT's raw logit scale (see module
    docstring): ``logit(clip((s + 1) / 2, 1e-3, 1 - 1e-3))``, 0.0 where unknown. float64 (n,)."""
    s = np.asarray(speaking_score, dtype=np.float64)
    p = np.clip((s + 1.0) / 2.0, P_CLIP, 1.0 - P_CLIP)
    out = np.log(p / (1.0 - p))
    return np.where(np.isfinite(s), out, 0.0)


def speak_listen_periods(scores: np.ndarray) -> tuple[list[list[int]], list[list[int]]]:
    """MIT's segmentation (``get_speak_period`` with no minimum length): break where the
    median-filtered (5) score changes sign; a segment ``[start, end)`` is speaking when the mean raw
    score over it is > 0."""
    from scipy.signal import medfilt

    s = np.asarray(scores, dtype=np.float64)
    n = len(s)
    if n == 0:
        return [], []
    f = medfilt(s, MEDFILT) if n >= MEDFILT else s
    breaks = [0] + [i for i in range(1, n) if f[i] * f[i - 1] <= 0 and not (f[i] == 0 and f[i - 1] == 0)] + [n]
    breaks = sorted(set(breaks))
    speak, listen = [], []
    for a, b in itertools.pairwise(breaks):
        (speak if float(np.mean(s[a:b])) > 0 else listen).append([int(a), int(b)])
    return speak, listen


def _wholebody(row: dict) -> np.ndarray | None:
    """(133, 3) float32 from the row's best pose column, or None."""
    from talkset.wholebody import as_wholebody

    for col in ("keypoints", "keypoints_59"):
        if row.get(col) is not None:
            return as_wholebody(np.asarray(row[col], dtype=np.float32))
    body = row.get("body_keypoints")
    if body is not None:
        out = np.zeros((133, 3), np.float32)
        b = np.asarray(body, dtype=np.float32)
        out[: len(b)] = b[:, :3]
        return out
    return None


def _audio_rows(root: Path) -> dict[str, dict]:
    """``{clip_id: row}`` of wav2vec2 rows of the ``audio_features`` table (metadata only)."""
    base = root / "tables" / "audio_features"
    files = sorted(p for p in base.rglob("*.parquet") if not p.name.startswith(".")) if base.is_dir() else []
    found: dict[str, dict] = {}
    for p in files:
        meta = pq.read_table(p, columns=["clip_id", "model", "num_frames", "layers", "dim"]).to_pylist()
        for i, r in enumerate(meta):
            if str(r["model"]).startswith("wav2vec2"):
                found.setdefault(r["clip_id"], {**r, "path": p, "row": i})
    return found


def _audio_models(root: Path) -> list[str]:
    base = root / "tables" / "audio_features"
    files = sorted(p for p in base.rglob("*.parquet") if not p.name.startswith(".")) if base.is_dir() else []
    return sorted({m for p in files for m in pq.read_table(p, columns=["model"]).column(0).to_pylist()})


def _read_features(info: dict) -> np.ndarray:
    tbl = pq.read_table(info["path"], columns=["features"])
    buf = tbl.column(0)[info["row"]].as_py()
    return np.frombuffer(buf, dtype="<f4").reshape(info["num_frames"], info["layers"], info["dim"])


def _clip_dir_name(clip_id: str) -> str:
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in clip_id)
    return name.replace("frames", "frms")


def _export_clip(root: Path, row: dict, frames: pa.Table, dest: Path, max_frames: int | None, audio: dict | None) -> dict:
    import cv2
    import torch

    from talkset import media
    from talkset.training.dataset import fit_transform, warp_frame
    from talkset.wholebody import pose_image

    if frames.num_rows == 0:
        raise ValueError("clip has no frames rows")
    video = root / row["video_path"]
    if not video.is_file():
        raise FileNotFoundError(f"clip video missing: {video}")
    n_want = int(row["num_frames"] or 0)
    if max_frames:
        n_want = min(n_want, int(max_frames)) if n_want else int(max_frames)
    rows = frames.to_pylist()
    tracks = sorted({r["track_id"] for r in rows})
    by = {(r["track_id"], r["frame_idx"]): r for r in rows}
    tf = fit_transform((int(row["height"]), int(row["width"])), (HEIGHT, WIDTH), "pad")
    s, ox, oy = tf

    def pt(a):
        a = np.asarray(a, dtype=np.float64).copy()
        a[..., 0] = a[..., 0] * s + ox
        a[..., 1] = a[..., 1] * s + oy
        return a

    def box(b):
        return [float(b[0] * s + ox), float(b[1] * s + oy), float(b[2] * s + ox), float(b[3] * s + oy)]

    for sub in ("frames", "pose", "pose_images"):
        (dest / sub).mkdir(parents=True)
    width = max(4, len(str(n_want)))
    png = [cv2.IMWRITE_PNG_COMPRESSION, 1]
    n = 0
    for k, _t, img in media.iter_frames(video):
        if n_want and k >= n_want:
            break
        name = f"output_{k + 1:0{width}d}"
        cv2.imwrite(str(dest / "frames" / f"{name}.png"), warp_frame(img, (HEIGHT, WIDTH), tf), png)
        inst, kps = [], []
        for t in tracks:
            r = by.get((t, k))
            kp = _wholebody(r) if r else None
            if kp is None:
                kp = np.zeros((133, 3), np.float32)
            else:
                kp = kp.copy()
                kp[:, :2] = pt(kp[:, :2])
                kps.append(kp)
            inst.append({"keypoints": np.round(kp[:, :2], 2).tolist(), "keypoint_scores": np.round(kp[:, 2], 4).tolist(),
                         "track_id": int(t), "bbox": box(r["box"]) if r and r.get("box") else None})
        (dest / "pose" / f"{name}.json").write_text(json.dumps({"instance_info": inst}))
        cv2.imwrite(str(dest / "pose_images" / f"{name}.png"), pose_image(kps, HEIGHT, WIDTH), png)
        n += 1
    if n == 0:
        raise ValueError(f"no frame decoded from {video}")

    infos = []
    for t in tracks:
        boxes = [box(by[(t, k)]["box"]) for k in range(n) if (t, k) in by and by[(t, k)].get("box")]
        if boxes:
            b = np.asarray(boxes)
            ib = [max(0.0, b[:, 0].min()), max(0.0, b[:, 1].min()), min(WIDTH, b[:, 2].max()), min(HEIGHT, b[:, 3].max())]
        else:
            ib = [0.0, 0.0, 0.0, 0.0]
        raw = np.array([by[(t, k)]["speaking_score"] if (t, k) in by and by[(t, k)]["speaking_score"] is not None
                        else np.nan for k in range(n)], dtype=np.float64)
        score = to_seed_scale(raw)
        speak, listen = speak_listen_periods(score)
        faces = [box(by[(t, k)]["face_box"]) if (t, k) in by and by[(t, k)].get("face_box") else None for k in range(n)]
        infos.append({"track_id": int(t), "instance_bbox": [round(v) for v in ib], "clip_range": [1, n],
                      "speaking_score": np.round(score, 4).tolist(), "face_track": faces, "speak": speak,
                      "listen": listen, "period_num": len(speak) + len(listen),
                      "speaking_frames_known": int(np.isfinite(raw).sum())})
    (dest / SPEAK_INFO).write_text(json.dumps(infos))
    shutil.copyfile(video, dest / "video.mp4")
    meta = {"source": row.get("source"), "video": row.get("clip_id"), "period": [row.get("start_s"), row.get("end_s")],
            "num_speaker": len(tracks), "url": row.get("url"), "fps": row.get("fps"), "frames": n,
            "letterbox": {"scale": s, "offset_x": ox, "offset_y": oy, "width": WIDTH, "height": HEIGHT}}
    (dest / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
    has_audio = False
    if audio is not None:
        feats = _read_features(audio)
        if feats.shape[0] < n:
            raise ValueError(f"audio_features has {feats.shape[0]} frames for {n} video frames")
        torch.save(torch.from_numpy(np.array(feats[:n], dtype=np.float32)), dest / AUDIO_FILE)
        has_audio = True
    return {"frames": n, "people": len(tracks), "audio_embedding": has_audio}


def export_mit(
    root: str | os.PathLike,
    out: str | os.PathLike,
    clip_ids: list[str] | None = None,
    max_frames: int | None = None,
    run_id: str = "export",
) -> dict:
    """Write the root's committed clips in MIT's training layout (module docstring) into ``out``.

    ``max_frames``: export at most this many frames per clip (from the first). Returns the summary
    written to ``out/export-summary.json``. Raises ``ValueError`` when ``out`` contains ``frames``.
    """
    from talkset.storage.root import DatasetRoot

    droot = DatasetRoot(root)
    out = Path(out).expanduser().resolve()
    if "frames" in str(out):
        raise ValueError(f"{out}: the MIT dataset class finds poses at image_dir.replace('frames', 'pose'): "
                         "choose an output folder whose path does not contain 'frames'")
    rows, _con = committed_clips(droot.root, clip_ids)
    reader = FramesReader(droot.root)
    out.mkdir(parents=True, exist_ok=True)
    audio = _audio_rows(droot.root)
    entries, clips, failed = [], [], []
    for row in rows:
        cid = row["clip_id"]
        name = _clip_dir_name(cid)
        final = out / name
        tmp = out / f".tmp-{uuid.uuid4().hex}-{name}"
        try:
            info = _export_clip(droot.root, row, reader.clip(str(row["source"]), cid), tmp, max_frames, audio.get(cid))
        except (OSError, ValueError, RuntimeError) as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            err = f"{type(exc).__name__}: {exc}"
            failed.append({"clip_id": cid, "error": err})
            droot.write_failure(str(row.get("source") or "unknown"), "export", cid, err, run_id)
            continue
        if final.exists():
            old = out / f".tmp-{uuid.uuid4().hex}-old-{name}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        entries.append({"image_dir": str(final / "frames"), "pose_dir": str(final / "pose_images"),
                        "speak_info_path": str(final / SPEAK_INFO), "audio_embedding_path": str(final / AUDIO_FILE)})
        clips.append({"clip_id": cid, "dir": name, **info})
    with_audio = sum(c["audio_embedding"] for c in clips)
    models = _audio_models(droot.root)
    if with_audio == len(clips):
        audio_note = f"wav2vec2 embeddings for all {len(clips)} clips"
    else:
        audio_note = (f"audio embeddings ABSENT for {len(clips) - with_audio} of {len(clips)} clips: "
                      + ("no audio_features table in the root" if not models else
                         f"the audio_features table has no wav2vec2 rows for them (models there: {models})")
                      + "; MIT's dataset class torch.loads audio_embedding_path, so these clips cannot train with it "
                      "until wav2vec2 features are computed (talkset train with a wav2vec2 audio model stores them)")
    summary = {"format": "mit", "root": str(droot.root), "clips": clips, "failed": failed, "audio_embeddings": audio_note,
               "size": [WIDTH, HEIGHT], "max_frames": max_frames, "data_config": str(out / "train.json"),
               "speaking_score": "logit((speaking_score + 1) / 2), clipped to +-6.9; 0.0 without a face track"}
    for name, obj in (("train.json", entries), ("export-summary.json", summary)):
        tmp = out / f".tmp-{uuid.uuid4().hex}-{name}"
        tmp.write_text(json.dumps(obj, indent=1))
        os.replace(tmp, out / name)
    return summary
