"""CovOG sizes and speed: paper config parameter counts and activation memory, tiny config speed.

Run: ``.venv/bin/python benchmarks/covog_paper_size.py [--frames 15] [--steps 10]``

- Parameter counts of the ``paper`` config, per block and trainable per stage (built on the
  meta device: no memory, no weights needed).
- Activation memory of one training step at 640x384 (W x H, landscape; latents 48 x 80),
  15 frames, batch 1 per GPU (the paper: batch 4 on 4 GPUs): ``training_loss`` runs on meta tensors under
  ``torch.autograd.graph.saved_tensors_hooks``; the bytes of every distinct tensor autograd
  saves for backward are summed (views counted once via their base; parameters excluded),
  attributed to the innermost CovOG block running. On meta/CPU, scaled-dot-product attention
  takes the math path, which saves the (B, heads, Lq, Lk) attention matrices; they are listed
  apart, since flash / memory-efficient attention on a GPU keeps only O(Lq) statistics.
  fp32 figures; fp16/bf16 autocast roughly halves them. No gradient checkpointing (the
  paper's Moore-AnimateAnyone setup enables it).
- Seconds per training step (forward + backward + AdamW) of the ``tiny`` config on this
  machine, one thread, B=1, F=cfg.num_frames, 2 people, stage 1 and stage 2.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from talkset import env  # noqa: E402

env.configure(threads=1)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from talkset.covog.config import load_config  # noqa: E402
from talkset.covog.model import CovOG  # noqa: E402

GiB = 1024**3
ATTN = "attention matrices (math SDPA)"


def make_batch(cfg, b=1, f=None, p=2, device="cpu"):
    f = f or cfg.num_frames
    h, w = cfg.height, cfg.width
    g = torch.Generator().manual_seed(0)
    people = torch.ones(b, p, dtype=torch.bool)
    faces = torch.zeros(b, f, p, h, w)
    for i in range(p):
        faces[:, :, i, h // 8: h // 4, i * w // p: (i + 1) * w // p] = 1
    batch = dict(
        ref_image=torch.rand(b, 3, h, w, generator=g) * 2 - 1, ref_pose=torch.rand(b, 3, h, w, generator=g),
        target=torch.rand(b, f, 3, h, w, generator=g) * 2 - 1, pose_people=torch.rand(b, f, p, 3, h, w, generator=g),
        pose_joint=torch.rand(b, f, 3, h, w, generator=g), people_mask=people, face_masks=faces,
        audio=torch.randn(b, f, cfg.audio.layers, cfg.audio.dim, generator=g),
        speaking=torch.rand(b, f, p, generator=g) * 2 - 1,
    )
    return {k: v.to(device) for k, v in batch.items()}


def block_params(model: CovOG) -> dict[str, int]:
    motion = sum(p.numel() for n, p in model.denoising_unet.named_parameters() if ".motion_modules." in n)
    out = {
        "VAE (frozen)": model.vae,
        "ReferenceNet": model.reference_net,
        "image encoder (frozen)": model.image_context,
        "pose guider (MPE, shared)": model.pose_encoder,
        "pose adaptor": model.pose_adaptor,
        "audio projection": model.audio_projection,
        "IAD (all up blocks)": model.audio_drivers,
    }
    counts = {k: sum(p.numel() for p in m.parameters()) if m is not None else 0 for k, m in out.items()}
    den = sum(p.numel() for p in model.denoising_unet.parameters())
    counts["denoising UNet, spatial"] = den - motion
    counts["motion modules"] = motion
    return counts


def saved_activations(model: CovOG, batch: dict, stage: int) -> tuple[int, dict[str, int]]:
    """Bytes of distinct tensors saved for backward by one training_loss, total and per block."""
    param_ids = {id(p) for p in model.parameters()}
    seen: dict[int, torch.Tensor] = {}
    per_block: dict[str, int] = {}
    stack = ["covog (latents, loss)"]
    names = {
        model.reference_net: "ReferenceNet", model.pose_encoder: "pose guider (MPE)",
        model.pose_adaptor: "pose adaptor", model.image_context: "image context",
    }
    if model.audio_projection is not None:
        names[model.audio_projection] = "audio projection"
        for d in model.audio_drivers.values():
            names[d] = "IAD"
    for m in model.denoising_unet.motion_modules:
        names[m] = "motion modules"
    names[model.denoising_unet] = "denoising UNet, spatial"
    hooks = []
    for mod, name in names.items():
        hooks.append(mod.register_forward_pre_hook(lambda m, i, n=name: stack.append(n)))
        hooks.append(mod.register_forward_hook(lambda m, i, o: stack.pop() and None))

    sdpa_shape: list[tuple[int, int]] = []  # (Lq, Lk) while inside scaled_dot_product_attention
    sdpa = F.scaled_dot_product_attention

    def traced_sdpa(q, k, v, *args, **kwargs):
        sdpa_shape.append((q.shape[-2], k.shape[-2]))
        try:
            return sdpa(q, k, v, *args, **kwargs)
        finally:
            sdpa_shape.pop()

    def pack(t):
        base = t._base if t._base is not None else t
        if id(t) in param_ids or id(base) in param_ids or id(base) in seen:
            return t
        seen[id(base)] = base  # keep it alive so ids stay unique
        nbytes = base.numel() * base.element_size()
        where = stack[-1]
        if sdpa_shape and base.ndim >= 2 and tuple(base.shape[-2:]) == sdpa_shape[-1]:
            where = ATTN
        per_block[where] = per_block.get(where, 0) + nbytes
        return t

    model.trainable_parameters(stage)
    F.scaled_dot_product_attention = traced_sdpa
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model.training_loss(batch, stage)
    finally:
        F.scaled_dot_product_attention = sdpa
        for h in hooks:
            h.remove()
    return sum(per_block.values()), per_block


def tiny_step_seconds(steps: int) -> dict[int, float]:
    cfg = load_config("tiny")
    torch.manual_seed(0)
    model = CovOG(cfg)
    batch = make_batch(cfg)
    out = {}
    for stage in (1, 2):
        opt = torch.optim.AdamW(model.trainable_parameters(stage), lr=1e-5)
        times = []
        for i in range(steps + 2):
            t0 = time.perf_counter()
            loss = model.training_loss(batch, stage)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i >= 2:
                times.append(time.perf_counter() - t0)
        out[stage] = statistics.median(times)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=None, help="frames per window (paper: 15)")
    ap.add_argument("--people", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10, help="timed tiny training steps per stage")
    args = ap.parse_args()

    cfg = load_config("paper")
    with torch.device("meta"):
        model = CovOG(cfg)
    counts = block_params(model)
    total = sum(p.numel() for p in model.parameters())
    print(f"paper config: {cfg.height}x{cfg.width} (HxW), latents {cfg.latent_size}, "
          f"{cfg.num_frames} frames, {cfg.motion_frames} motion frames")
    print("parameters per block:")
    for k, v in counts.items():
        print(f"  {k:28s} {v / 1e6:10.2f} M")
    print(f"  {'total':28s} {total / 1e6:10.2f} M  ({total * 4 / GiB:.2f} GiB fp32)")
    for stage in (1, 2):
        n = sum(p.numel() for p in model.trainable_parameters(stage))
        # fp32 weights of the whole model + grads and AdamW moments of the trainable part
        state = total * 4 + n * 4 * 3
        print(f"  stage {stage} trainable {n / 1e6:10.2f} M; weights + grads + AdamW state "
              f"{state / GiB:.1f} GiB fp32")

    f = args.frames or cfg.num_frames
    batch = make_batch(cfg, f=f, p=args.people, device="meta")
    print(f"activation memory saved for backward, one sample, {cfg.height}x{cfg.width}x{f}, "
          f"{args.people} people, fp32, no gradient checkpointing:")
    for stage in (1, 2):
        t0 = time.perf_counter()
        tot, per = saved_activations(model, batch, stage)
        attn = per.get(ATTN, 0)
        print(f"  stage {stage}: {tot / GiB:7.2f} GiB with the math attention kernel (CPU/meta path), "
              f"{(tot - attn) / GiB:.2f} GiB without its (B, heads, Lq, Lk) attention matrices, which "
              f"flash / memory-efficient SDPA on a GPU does not keep   (traced in {time.perf_counter() - t0:.1f} s)")
        for k, v in sorted(per.items(), key=lambda kv: -kv[1]):
            print(f"      {k:28s} {v / GiB:8.3f} GiB")

    secs = tiny_step_seconds(args.steps)
    tcfg = load_config("tiny")
    print(f"tiny config ({tcfg.height}x{tcfg.width} HxW, latents {tcfg.latent_size}, {tcfg.num_frames} frames, B=1, 2 people, 1 thread): "
          f"stage 1 {secs[1]:.3f} s/step, stage 2 {secs[2]:.3f} s/step (median of {args.steps})")


if __name__ == "__main__":
    main()
