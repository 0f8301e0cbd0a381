"""The ``evaluate`` flow: generate the held-out clips with a CovOG checkpoint and score them.

As in the MIT paper (Sec. 5, Table 2): for every clip of the test split (``test`` = easy + hard,
or ``test_easy`` / ``test_hard``; :mod:`training.splits`), CovOG generates the clip window by
window from the clip's first frame as the reference image and the recorded poses, audio and
speaking scores. Windows are consecutive, ``num_frames`` long, and each window after the first
receives the last ``motion_frames`` generated frames (6 in the paper, ``cfg.motion_frames`` in
tiny) as motion frames. Generated and real frames, both at the model resolution in [0, 1], give
SSIM and PSNR per clip (:mod:`training.metrics`); with an I3D detector (``i3d_path``) the FVD
between the generated and real clips (:mod:`training.fvd`), else the summary says
``FVD skipped: ...`` and ``fvd`` is null.

Results: one row per clip (``clip_id, source, split, ssim, psnr, fvd, frames, checkpoint, step,
config, ablation, num_steps, eval_id, created_at``), written atomically to
``root/tables/eval/source=<source>/<eval_id>.parquet``, and a Prefect table artifact
``evaluate-summary``.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from talkset import env

env.configure(threads=None)

import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from prefect import flow  # noqa: E402

log = logging.getLogger("talkset.evaluate")

EVAL_SCHEMA = pa.schema(
    [
        ("clip_id", pa.string()),
        ("source", pa.string()),
        ("split", pa.string()),
        ("ssim", pa.float64()),
        ("psnr", pa.float64()),
        ("fvd", pa.float64()),
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


def generate_clip(model, data, clip_id: str, max_frames: int | None, num_steps: int, motion_frames: int, seed: int):
    """Generate frames ``0 .. n-1`` of ``clip_id`` (n = clip length or ``max_frames``).

    Returns ``(generated, real)`` float32 tensors ``(n, 3, H, W)`` in [0, 1]."""
    import torch

    from training.dataset import collate, model_batch

    clip = data.clip(clip_id)
    n = clip.num_frames if not max_frames else min(clip.num_frames, int(max_frames))
    F = data.spec.num_frames
    out, real = [], []
    motion = None
    g = torch.Generator().manual_seed(seed)
    for start in range(0, n, F):
        w = data.window(clip_id, start, 0)
        batch = model_batch(collate([w]))
        with torch.no_grad():
            frames = model.generate(batch, num_steps=num_steps, motion_frames=motion, generator=g)[0]
        keep = min(F, n - start)
        out.append(frames[:keep].float().clamp(-1, 1))
        real.append(w["target"][:keep])
        if motion_frames > 0:
            motion = frames[-motion_frames:][None].float()
    gen = (torch.cat(out) + 1) / 2
    ref = (torch.cat(real) + 1) / 2
    return gen, ref


def _write_rows(root: Path, eval_id: str, rows: list[dict]) -> list[str]:
    paths = []
    by_source: dict[str, list[dict]] = {}
    for r in rows:
        by_source.setdefault(r["source"], []).append(r)
    for src, part in by_source.items():
        d = root / "tables" / "eval" / f"source={src}"
        d.mkdir(parents=True, exist_ok=True)
        final = d / f"{eval_id}.parquet"
        tmp = d / f".tmp-{uuid.uuid4().hex}-{final.name}"
        table = pa.Table.from_pylist(part, schema=EVAL_SCHEMA)
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()
        paths.append(str(final))
    return paths


def run_evaluation(
    root: str,
    checkpoint: str,
    split: str = "test",
    i3d_path: str | None = None,
    num_steps: int = 20,
    max_frames: int | None = None,
    motion_frames: int | None = None,
    use_mpe: bool | None = None,
    use_iad: bool | None = None,
    audio_model: str | None = None,
    seed: int = 0,
    eval_id: str | None = None,
) -> dict:
    """Evaluate a checkpoint on ``split`` of ``root`` (see the module docstring).

    ``checkpoint``: a checkpoint folder or a run folder (its latest checkpoint). ``num_steps``:
    denoising steps per window. ``max_frames``: score only the first frames of each clip (None:
    all). ``motion_frames`` None -> the config's. ``use_mpe`` / ``use_iad`` None -> as trained
    (a mismatch raises ``ValueError``). Returns ``{"eval_id", "checkpoint", "step", "split",
    "clips": [row...], "ssim", "psnr" (means over clips), "fvd", "fvd_message", "paths",
    "seconds"}``.
    """
    import torch

    from training.dataset import TalkingClipDataset, spec_from_config
    from training.fvd import I3DFeatures, frechet_distance
    from training.loop import ablation_name, load_model
    from training.metrics import clip_metrics
    from training.splits import clips_in
    from talkset.weights import WeightsNotFound

    t0 = time.perf_counter()
    rootp = Path(root).expanduser().resolve()
    model, meta = load_model(checkpoint, use_mpe=use_mpe, use_iad=use_iad)
    spec = spec_from_config(model.cfg)
    k = spec.motion_frames if motion_frames is None else int(motion_frames)
    clip_ids = clips_in(rootp, split, seed=int((meta.get("options") or {}).get("split_seed", 0)))
    if not clip_ids:
        raise ValueError(f"{rootp}: split {split!r} has no clips")
    data = TalkingClipDataset(rootp, spec, clip_ids, audio_model=audio_model or meta.get("audio_model"), seed=meta.get("seed", 0))
    from training.splits import read_splits

    splits = read_splits(rootp)
    eval_id = eval_id or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    detector, fvd_message = None, None
    if i3d_path:
        try:
            detector = I3DFeatures(i3d_path)
        except WeightsNotFound:
            fvd_message = f"FVD skipped: no I3D at {Path(i3d_path).expanduser()}"
    else:
        fvd_message = "FVD skipped: no I3D detector given (pass i3d_path=<path to i3d_torchscript.pt>)"
    rows, real_feats, gen_feats = [], [], []
    now = datetime.now(timezone.utc)
    for i, cid in enumerate(clip_ids):
        gen, real = generate_clip(model, data, cid, max_frames, num_steps, k, seed + i)
        m = clip_metrics(gen, real)
        if detector is not None:
            gen_feats.append(detector(gen[None]))
            real_feats.append(detector(real[None]))
        rows.append(
            {
                "clip_id": cid,
                "source": data.clips[cid]["source"],
                "split": splits.get(cid, split),
                "ssim": m["ssim"],
                "psnr": m["psnr"],
                "fvd": None,
                "frames": m["frames"],
                "checkpoint": meta["path"],
                "step": int(meta.get("step", -1)),
                "config": str(meta.get("config")),
                "ablation": ablation_name(meta.get("use_mpe", True), meta.get("use_iad", True)),
                "num_steps": int(num_steps),
                "eval_id": eval_id,
                "created_at": now,
            }
        )
        print(f"[evaluate] {cid} ({rows[-1]['split']}): SSIM {m['ssim']:.4f}, PSNR {m['psnr']:.2f} dB, {m['frames']} frames", flush=True)
    fvd = None
    if detector is not None:
        import numpy as np

        if len(gen_feats) < 2:
            fvd_message = f"FVD skipped: needs at least 2 clips (split {split!r} has {len(gen_feats)})"
        else:
            fvd = frechet_distance(np.concatenate(real_feats), np.concatenate(gen_feats))
            for r in rows:
                r["fvd"] = fvd
    if fvd_message:
        print(fvd_message, flush=True)
        log.warning(fvd_message)
    paths = _write_rows(rootp, eval_id, rows)
    summary = {
        "eval_id": eval_id,
        "checkpoint": meta["path"],
        "step": meta.get("step"),
        "split": split,
        "ablation": rows[0]["ablation"],
        "clips": [{k2: v for k2, v in r.items() if k2 != "created_at"} for r in rows],
        "ssim": float(sum(r["ssim"] for r in rows) / len(rows)),
        "psnr": float(sum(r["psnr"] for r in rows) / len(rows)),
        "fvd": fvd,
        "fvd_message": fvd_message,
        "paths": paths,
        "seconds": round(time.perf_counter() - t0, 2),
        "torch_threads": torch.get_num_threads(),
    }
    return summary


@flow(name="evaluate", log_prints=True)
def evaluate(
    root: str,
    checkpoint: str,
    split: str = "test",
    i3d_path: str | None = None,
    num_steps: int = 20,
    max_frames: int | None = None,
    motion_frames: int | None = None,
    use_mpe: bool | None = None,
    use_iad: bool | None = None,
    audio_model: str | None = None,
    seed: int = 0,
) -> dict:
    """Prefect flow around :func:`run_evaluation`; adds the ``evaluate-summary`` table artifact."""
    summary = run_evaluation(
        root, checkpoint, split=split, i3d_path=i3d_path, num_steps=num_steps, max_frames=max_frames,
        motion_frames=motion_frames, use_mpe=use_mpe, use_iad=use_iad, audio_model=audio_model, seed=seed,
    )
    fvd_text = f"{summary['fvd']:.2f}" if summary["fvd"] is not None else summary["fvd_message"]
    desc = (
        f"CovOG {summary['ablation']} at step {summary['step']} on {split}: SSIM {summary['ssim']:.4f}, "
        f"PSNR {summary['psnr']:.2f} dB, FVD {fvd_text}"
    )
    print(desc, flush=True)
    try:
        from prefect.artifacts import create_table_artifact

        table = [
            {"clip": r["clip_id"], "split": r["split"], "SSIM": round(r["ssim"], 4), "PSNR": round(r["psnr"], 2), "frames": r["frames"]}
            for r in summary["clips"]
        ]
        create_table_artifact(key="evaluate-summary", table=table, description=desc)
    except Exception as exc:
        log.warning("could not create the Prefect artifact: %s", exc)
    return summary
