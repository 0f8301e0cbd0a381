"""CovOG on one GPU with random weights: s/step and peak ``torch.cuda.max_memory_allocated``.

Run (GPU machine: Python 3.12, torch, transformers; diffusers carried as a wheel, no ray / prefect):

    pip install --no-deps diffusers-0.42.1-py3-none-any.whl   # if diffusers is missing
    python benchmarks/covog_gpu_check.py --json gpu.json                 # paper config, scaled recipe
    python benchmarks/covog_gpu_check.py --recipe fp32 --json gpu32.json
    python benchmarks/covog_gpu_check.py --tiny --device cpu             # proves it runs, no GPU

Builds the ``paper`` config (``--tiny``: the tiny one) with random weights on ``--device``, then
``--steps`` training steps of stage 1 (640x384 single frames, batch 2 as the seed's stage 1) and of
stage 2 (640x384 x 15 frames, batch 1), and one sampling window (``generate_window`` with 6 motion
frames, the config's guidance scale and steps). Recipes as ``benchmarks/covog_paper_size.py``:
``scaled`` = bf16 autocast, frozen weights in bf16, fp32 trainable weights and gradients, gradient
checkpointing, 8-bit AdamW when ``bitsandbytes`` imports (else ``torch.optim.AdamW``, printed:
6 more bytes per trainable parameter); ``fp32`` = all fp32, AdamW, no checkpointing. Prints and
writes (``--json``) ``{recipe: {"stage1": {"s_per_step", "peak_gib"}, "stage2": {...},
"sample_window": {"s", "peak_gib"}}}``. Imports only torch, diffusers, transformers, numpy, yaml and
``talkset.covog``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from talkset.covog.config import load_config
from talkset.covog.model import CovOG

GiB = 1024**3


def make_batch(cfg, b: int, f: int, p: int, device) -> dict:
    """Random batch with the keys, shapes and ranges of :class:`CovOG` (2 people side by side)."""
    h, w = cfg.height, cfg.width
    g = torch.Generator().manual_seed(0)
    faces = torch.zeros(b, f, p, h, w)
    inst = torch.zeros(b, p, 1, h, w)
    for i in range(p):
        faces[:, :, i, h // 8: h // 4, i * w // p + w // (4 * p): (i + 1) * w // p - w // (4 * p)] = 1
        inst[:, i, :, :, i * w // p:(i + 1) * w // p] = 1
    ref_pose = torch.rand(b, 3, h, w, generator=g)
    batch = {
        "ref_image": torch.rand(b, 3, h, w, generator=g) * 2 - 1, "ref_pose": ref_pose,
        "ref_pose_people": ref_pose[:, None] * inst, "target": torch.rand(b, f, 3, h, w, generator=g) * 2 - 1,
        "pose_people": torch.rand(b, f, p, 3, h, w, generator=g), "pose_joint": torch.rand(b, f, 3, h, w, generator=g),
        "people_mask": torch.ones(b, p, dtype=torch.bool), "face_masks": faces,
        "audio": torch.randn(b, f, cfg.audio.layers, cfg.audio.dim, generator=g),
        "speaking": torch.rand(b, f, p, generator=g) * 2 - 1,
    }
    return {k: v.to(device) for k, v in batch.items()}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / GiB, 2) if device.type == "cuda" else None


def make_optimizer(params, recipe: str):
    if recipe == "scaled":
        try:
            import bitsandbytes as bnb

            return bnb.optim.AdamW8bit(params, lr=1e-5, weight_decay=1e-2), "bitsandbytes AdamW8bit"
        except Exception as e:  # noqa: BLE001 - any import failure: fall back, say so
            print(f"  bitsandbytes unavailable ({type(e).__name__}): torch AdamW (fp32 states)")
    return torch.optim.AdamW(params, lr=1e-5, weight_decay=1e-2), "torch AdamW"


def train_steps(model: CovOG, cfg, stage: int, recipe: str, steps: int, device, people: int) -> dict:
    b, f = (2, 1) if stage == 1 else (1, cfg.num_frames)
    params = model.trainable_parameters(stage)
    bf16 = recipe == "scaled"
    with torch.no_grad():  # frozen weights bf16, trainable fp32 (masters)
        for p in model.parameters():
            p.data = p.data.to(torch.bfloat16 if (bf16 and not p.requires_grad) else torch.float32)
    model.set_gradient_checkpointing(bf16)
    opt, opt_name = make_optimizer(params, recipe)
    batch = make_batch(cfg, b, f, people, device)
    _reset_peak(device)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model.training_loss(batch, stage)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
        if i:  # the first step warms up kernels and allocates optimizer state
            times.append(time.perf_counter() - t0)
        if not torch.isfinite(loss):
            raise RuntimeError(f"stage {stage}: loss {loss.item()} at step {i}")
    out = {"s_per_step": round(statistics.median(times), 3) if times else None, "peak_gib": _peak(device),
           "batch": b, "frames": f, "loss": round(float(loss.detach()), 4), "optimizer": opt_name,
           "trainable_params_m": round(sum(p.numel() for p in params) / 1e6, 1)}
    del opt
    for p in model.parameters():
        p.grad = None
    return out


@torch.no_grad()
def sample_window(model: CovOG, cfg, recipe: str, device, people: int, steps: int | None) -> dict:
    dt = torch.bfloat16 if recipe == "scaled" else torch.float32
    model.set_gradient_checkpointing(False)
    model.to(dt)
    batch = make_batch(cfg, 1, cfg.num_frames, people, device)
    k = cfg.motion_frames
    mf = batch["target"][:, :k]
    _reset_peak(device)
    t0 = time.perf_counter()
    video = model.generate_window(batch, mf, num_steps=steps, generator=torch.Generator(device).manual_seed(0))
    _sync(device)
    s = time.perf_counter() - t0
    if not torch.isfinite(video).all():
        raise RuntimeError("sampling produced non-finite frames")
    return {"s": round(s, 2), "peak_gib": _peak(device), "frames": cfg.num_frames, "motion_frames": k,
            "num_steps": steps or cfg.sampling.num_steps, "guidance_scale": cfg.sampling.guidance_scale}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny config (runs on a CPU in seconds)")
    ap.add_argument("--config", default=None, help="config name / YAML (default: paper, or tiny with --tiny)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--recipe", choices=("scaled", "fp32"), default="scaled")
    ap.add_argument("--steps", type=int, default=3, help="timed training steps per stage (after 1 warm-up)")
    ap.add_argument("--sample-steps", type=int, default=None, help="denoising steps of the window (config: 30)")
    ap.add_argument("--people", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    device = torch.device(args.device)
    cfg = load_config(args.config or ("tiny" if args.tiny else "paper"))
    torch.manual_seed(0)
    if device.type == "cpu":
        torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"python {platform.python_version()}, torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
          + f", config {cfg.name} {cfg.height}x{cfg.width}x{cfg.num_frames}, recipe {args.recipe}")
    t0 = time.perf_counter()
    model = CovOG(cfg).to(device)
    print(f"  built with random weights in {time.perf_counter() - t0:.1f} s: "
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.0f} M parameters")
    result = {}
    for stage in (1, 2):
        r = train_steps(model, cfg, stage, args.recipe, args.steps, device, args.people)
        result[f"stage{stage}"] = r
        print(f"  stage {stage} ({r['batch']} x {r['frames']} frames): {r['s_per_step']} s/step, peak "
              f"{r['peak_gib']} GiB allocated, {r['trainable_params_m']} M trainable, {r['optimizer']}, loss {r['loss']}")
    r = sample_window(model, cfg, args.recipe, device, args.people, args.sample_steps)
    result["sample_window"] = r
    print(f"  sampling one window ({r['frames']} frames, {r['motion_frames']} motion, {r['num_steps']} steps, "
          f"guidance {r['guidance_scale']}): {r['s']} s, peak {r['peak_gib']} GiB")
    out = {args.recipe: result, "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
           "config": cfg.name}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
