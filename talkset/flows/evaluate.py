"""The ``evaluate`` flow: generate the held-out clips with a CovOG checkpoint and score them.

As in the MIT paper (Sec. 5, Table 2): for every clip of the test split (``test`` = easy + hard,
or ``test_easy`` / ``test_hard``; :mod:`talkset.training.splits`), CovOG generates the clip window by
window from the clip's first frame as the reference image and the recorded poses, audio and
speaking scores. Windows are consecutive, ``num_frames`` long, and each window after the first
receives the last ``motion_frames`` generated frames (6 in the paper, ``cfg.motion_frames`` in
tiny) as motion frames. Generated and real frames, both at the model resolution in [0, 1], give
SSIM and PSNR per clip (:mod:`talkset.training.metrics`). The ``ablation`` column names the variant
(``full``, ``no-mpe``, ``no-iad``, ``no-mpe,no-iad``, ``animateanyone``), so the rows of the paper's
Table 2 are one ``evaluate`` per trained variant, compared with
``SELECT ablation, avg(ssim), avg(psnr), any_value(fvd) FROM eval GROUP BY ablation``; with an I3D detector (``i3d_path``) the FVD
between the generated and real clips (:mod:`talkset.training.fvd`), else the summary says
``FVD skipped: ...`` and ``fvd`` is null.

Device: ``device="auto"`` runs on the first CUDA GPU when one is present, else on the CPU. The
pose images are drawn with the checkpoint's ``pose_keypoints`` (59 unless trained otherwise) and
the audio comes from the checkpoint's audio model through the root's ``audio_features`` table.

Results: one row per clip (``clip_id, source, split, ssim, psnr, fvd, frames, checkpoint, step,
config, ablation, num_steps, eval_id, created_at``), written atomically to
``root/tables/eval/source=<source>/<eval_id>.parquet``, and a Prefect table artifact
``evaluate-summary``.
"""

from __future__ import annotations

import logging
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from talkset import env

env.configure(threads=None)

from prefect import flow  # noqa: E402

from talkset.storage.root import DatasetRoot  # noqa: E402
from talkset.training.config import EvalConfig  # noqa: E402

log = logging.getLogger("talkset.evaluate")

def generate_clip(model, data, clip_id: str, max_frames: int | None, num_steps: int | None, motion_frames: int | None,
                  seed: int, guidance_scale: float | None = None):
    """Generate frames ``0 .. n-1`` of ``clip_id`` (n = clip length or ``max_frames``).

    With a model that has ``generate_long`` (the seed's long-video pipeline: overlapping windows of
    the training length whose first ``motion_frames`` latents are the previous window's clean
    outputs, overlaps averaged) the whole clip goes in one call; otherwise consecutive windows, each
    after the first given the last ``motion_frames`` generated frames (``generate``'s prefix mode).
    ``num_steps`` / ``guidance_scale`` / ``motion_frames`` None -> the model config's.

    Returns ``(generated, real)`` float32 tensors ``(n, 3, H, W)`` in [0, 1] on the CPU."""
    import numpy as np
    import torch

    from talkset.training.dataset import collate, model_batch

    clip = data.clip(clip_id)
    n = clip.num_frames if not max_frames else min(clip.num_frames, int(max_frames))
    g = torch.Generator().manual_seed(seed)
    kw = {} if guidance_scale is None else {"guidance_scale": float(guidance_scale)}
    if hasattr(model, "generate_long"):
        w = data.window_at(clip_id, np.arange(n), 0)
        with torch.no_grad():
            gen = model.generate_long(model_batch(collate([w])), motion_frames=motion_frames, num_steps=num_steps,
                                      generator=g, **kw)[0]
        return (gen.float().clamp(-1, 1).cpu() + 1) / 2, (w["target"] + 1) / 2
    F = data.spec.num_frames
    k = data.spec.motion_frames if motion_frames is None else int(motion_frames)
    out, real = [], []
    motion = None
    for start in range(0, n, F):
        w = data.window(clip_id, start, 0)
        batch = model_batch(collate([w]))
        with torch.no_grad():
            frames = model.generate(batch, num_steps=num_steps or 20, motion_frames=motion, generator=g, **kw)[0]
        keep = min(F, n - start)
        out.append(frames[:keep].float().clamp(-1, 1).cpu())
        real.append(w["target"][:keep])
        if k > 0:
            motion = frames[-k:][None].float()
    gen = (torch.cat(out) + 1) / 2
    ref = (torch.cat(real) + 1) / 2
    return gen, ref


def variant_name(model, meta: dict) -> str:
    """The ``ablation`` column: ``animateanyone`` for the AnimateAnyone baseline (a model whose
    ``variant`` is ``animateanyone``), else ``full`` / ``no-mpe`` / ``no-iad`` / ``no-mpe,no-iad``."""
    from talkset.training.loop import ablation_name

    if getattr(model, "variant", None) == "animateanyone":
        return "animateanyone"
    return ablation_name(getattr(model, "use_mpe", meta.get("use_mpe", True)), getattr(model, "use_iad", meta.get("use_iad", True)))


def eval_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when ``torch.cuda.is_available()``, else ``cpu``; other values as
    given (``cuda`` asked for without a GPU raises ``RuntimeError``)."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} but no CUDA GPU is available here (use device='auto' or 'cpu')")
    return device


def _write_rows(root: Path, eval_id: str, rows: list[dict]) -> list[str]:
    """One ``eval`` shard per source, through the dataset root's atomic writer."""
    droot = DatasetRoot(root)
    by_source: dict[str, list[dict]] = {}
    for r in rows:
        by_source.setdefault(r["source"], []).append(r)
    return [str(droot.write_shard("eval", src, eval_id, part)) for src, part in by_source.items()]


def _fvd_detector(i3d_path: str | None):
    """``(I3D feature extractor or None, message saying why FVD is skipped or None)``."""
    from talkset.training.fvd import I3DFeatures
    from talkset.weights import WeightsNotFound

    if not i3d_path:
        return None, "FVD skipped: no I3D detector given (pass i3d_path=<path to i3d_torchscript.pt>)"
    try:
        return I3DFeatures(i3d_path), None
    except WeightsNotFound:
        return None, f"FVD skipped: no I3D at {Path(i3d_path).expanduser()}"


def run_evaluation(cfg: EvalConfig, eval_id: str | None = None) -> dict:
    """Evaluate a checkpoint on a split of a root (see the module docstring and
    :class:`talkset.training.config.EvalConfig`). Returns ``{"eval_id", "checkpoint", "step",
    "split", "clips": [row...], "ssim", "psnr" (means over clips), "fvd", "fvd_message",
    "paths", "seconds"}``.
    """
    import numpy as np
    import torch

    from talkset.training.dataset import TalkingClipDataset, spec_from_config
    from talkset.training.fvd import frechet_distance
    from talkset.training.loop import load_model
    from talkset.training.metrics import clip_metrics
    from talkset.training.splits import clips_in, read_splits

    t0 = time.perf_counter()
    rootp = Path(cfg.root).expanduser().resolve()
    device = eval_device(cfg.device)
    model, meta = load_model(cfg.checkpoint, use_mpe=cfg.use_mpe, use_iad=cfg.use_iad, device=device)
    spec = spec_from_config(model.cfg, pose_keypoints=int(meta.get("pose_keypoints") or 59))
    clip_ids = clips_in(rootp, cfg.split, seed=int((meta.get("options") or {}).get("split_seed", 0)))
    if not clip_ids:
        raise ValueError(f"{rootp}: split {cfg.split!r} has no clips")
    data = TalkingClipDataset(rootp, spec, clip_ids, audio_model=cfg.audio_model or meta.get("audio_model"), seed=meta.get("seed", 0))
    splits = read_splits(rootp)
    eval_id = eval_id or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    detector, fvd_message = _fvd_detector(cfg.i3d_path)
    common = {
        "checkpoint": meta["path"], "step": int(meta.get("step", -1)), "config": str(meta.get("config")),
        "ablation": variant_name(model, meta),
        "num_steps": int(cfg.num_steps or getattr(getattr(model.cfg, "sampling", None), "num_steps", 20)), "eval_id": eval_id, "created_at": datetime.now(timezone.utc), "fvd": None,
    }  # fmt: skip
    rows, real_feats, gen_feats = [], [], []
    for i, cid in enumerate(clip_ids):
        gen, real = generate_clip(model, data, cid, cfg.max_frames, cfg.num_steps, cfg.motion_frames, cfg.seed + i,
                                  cfg.guidance_scale)
        m = clip_metrics(gen, real)
        if detector is not None:
            gen_feats.append(detector(gen[None]))
            real_feats.append(detector(real[None]))
        rows.append({"clip_id": cid, "source": data.clips[cid]["source"], "split": splits.get(cid, cfg.split),
                     "ssim": m["ssim"], "psnr": m["psnr"], "frames": m["frames"], **common})  # fmt: skip
        print(f"[evaluate] {cid} ({rows[-1]['split']}): SSIM {m['ssim']:.4f}, PSNR {m['psnr']:.2f} dB, {m['frames']} frames", flush=True)
    fvd = None
    if detector is not None:
        if len(gen_feats) < 2:
            fvd_message = f"FVD skipped: needs at least 2 clips (split {cfg.split!r} has {len(gen_feats)})"
        else:
            fvd = frechet_distance(np.concatenate(real_feats), np.concatenate(gen_feats))
            for r in rows:
                r["fvd"] = fvd
    if fvd_message:
        print(fvd_message, flush=True)
        log.warning(fvd_message)
    paths = _write_rows(rootp, eval_id, rows)
    return {
        "eval_id": eval_id,
        "checkpoint": meta["path"],
        "step": meta.get("step"),
        "split": cfg.split,
        "ablation": rows[0]["ablation"],
        "clips": [{k2: v for k2, v in r.items() if k2 != "created_at"} for r in rows],
        "ssim": float(sum(r["ssim"] for r in rows) / len(rows)),
        "psnr": float(sum(r["psnr"] for r in rows) / len(rows)),
        "fvd": fvd,
        "fvd_message": fvd_message,
        "paths": paths,
        "seconds": round(time.perf_counter() - t0, 2),
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }


@flow(name="evaluate", log_prints=True)
def evaluate(root: str, checkpoint: str, config: dict | None = None, config_file: str | None = None) -> dict:
    """Prefect flow around :func:`run_evaluation`: ``config`` holds fields of
    :class:`talkset.training.config.EvalConfig` (over those of the YAML ``config_file``); adds
    the ``evaluate-summary`` table artifact."""
    fields = {**(config or {}), "root": root, "checkpoint": checkpoint}
    cfg = EvalConfig.from_yaml(config_file, **fields) if config_file else EvalConfig.from_dict(fields)
    summary = run_evaluation(cfg)
    split = cfg.split
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
