"""CovOG sizes and training-step memory at paper size (meta device), tiny config speed.

Run: ``.venv/bin/python benchmarks/covog_paper_size.py [--json out.json] [--steps 10] [--people 2]``

- Parameter counts of the ``paper`` config, per block and trainable per stage (built on the
  meta device: no memory, no weights needed).
- Peak memory of one training step, per recipe and stage, as **parameters + gradients + optimizer
  states + activations**: stage 1 on 640x384 (W x H) single frames at the seed's batch size 2
  (``configs/train/stage1.yaml``: ``train_bs: 2``), stage 2 on 640x384 x 15 frames, batch 1.
  Recipes: ``fp32`` (fp32 weights, AdamW with two fp32 moments, no checkpointing) and ``scaled``
  (the model traced in bf16, gradient checkpointing on, frozen weights bf16, trainable weights fp32
  masters with fp32 gradients, 8-bit AdamW = 2 bytes of state per trainable parameter, as
  ``bitsandbytes.optim.AdamW8bit``).
  Activations: ``training_loss`` runs on meta tensors under
  ``torch.autograd.graph.saved_tensors_hooks``; the bytes of every distinct tensor autograd saves
  for backward are summed (views counted once via their base; parameters excluded). The attention
  matrices that the math SDPA path saves on meta/CPU are left out (flash / memory-efficient SDPA on
  a GPU keeps O(Lq) statistics instead; listed apart). With checkpointing, ``torch.utils.checkpoint``
  is traced: the inputs of every checkpointed segment count as kept, its inside counts only while
  it is recomputed in backward (the largest segment is added to the peak).
  ``peak = parameters + gradients + optimizer + activations kept after forward + largest recomputed
  segment + 2 x the largest single activation (gradients in flight)``. Not modelled: allocator
  fragmentation, cuDNN / SDPA workspaces, NCCL buckets (DDP keeps one more copy of the gradients in
  its buckets unless ``gradient_as_bucket_view=True``): ``benchmarks/covog_gpu_check.py`` measures
  the real ``torch.cuda.max_memory_allocated``.
- Seconds per training step (forward + backward + AdamW) of the ``tiny`` config on this
  machine, one thread, B=1, F=cfg.num_frames, 2 people, stage 1 and stage 2 (``--steps 0`` skips).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from talkset import env  # noqa: E402

env.configure(threads=1)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torch.utils.checkpoint  # noqa: E402

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
    inst = torch.zeros(b, p, 1, h, w)
    for i in range(p):
        faces[:, :, i, h // 8: h // 4, i * w // p: (i + 1) * w // p] = 1
        inst[:, i, :, :, i * w // p: (i + 1) * w // p] = 1
    ref_pose = torch.rand(b, 3, h, w, generator=g)
    batch = dict(
        ref_image=torch.rand(b, 3, h, w, generator=g) * 2 - 1, ref_pose=ref_pose, ref_pose_people=ref_pose[:, None] * inst,
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
        "IAD (all placements)": model.audio_drivers,
    }
    counts = {k: sum(p.numel() for p in m.parameters()) if m is not None else 0 for k, m in out.items()}
    den = sum(p.numel() for p in model.denoising_unet.parameters())
    counts["denoising UNet, spatial"] = den - motion
    counts["motion modules"] = motion
    return counts


def saved_activations(model: CovOG, batch: dict, stage: int, extra: dict | None = None) -> tuple[int, dict[str, int]]:
    """Bytes of distinct tensors saved for backward by one training_loss, total and per block.

    ``extra`` (a dict, filled in): ``recompute_max`` (bytes saved inside the largest checkpointed
    segment), ``largest`` (bytes of the largest single saved tensor, attention matrices excluded)."""
    param_ids = {id(p) for p in model.parameters()}
    seen: dict[int, torch.Tensor] = {}
    per_block: dict[str, int] = {}
    extra = {} if extra is None else extra
    extra.update(recompute_max=0, largest=0, segments=0)
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
        else:
            extra["largest"] = max(extra["largest"], nbytes)
        per_block[where] = per_block.get(where, 0) + nbytes
        return t

    real_checkpoint = torch.utils.checkpoint.checkpoint

    def traced_checkpoint(fn, *args, use_reentrant=None, **kwargs):
        # the segment's inputs stay alive until backward (the recompute reads them)
        for a in list(args) + list(kwargs.values()):
            if torch.is_tensor(a):
                pack(a)
        inside: dict[int, int] = {}

        def inner(t):
            base = t._base if t._base is not None else t
            if id(t) in param_ids or id(base) in param_ids or id(base) in seen:
                return t
            if not (sdpa_shape and base.ndim >= 2 and tuple(base.shape[-2:]) == sdpa_shape[-1]):
                inside[id(base)] = base.numel() * base.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(inner, lambda t: t):
            out = fn(*args, **kwargs)
        extra["recompute_max"] = max(extra["recompute_max"], sum(inside.values()))
        extra["segments"] += 1
        return out

    model.trainable_parameters(stage)
    F.scaled_dot_product_attention = traced_sdpa
    torch.utils.checkpoint.checkpoint = traced_checkpoint
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model.training_loss(batch, stage)
    finally:
        F.scaled_dot_product_attention = sdpa
        torch.utils.checkpoint.checkpoint = real_checkpoint
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


#: (bytes per frozen weight, per trainable weight, per gradient, optimizer bytes per trainable
#: parameter, model dtype traced, gradient checkpointing)
RECIPES = {
    "fp32": {"frozen": 4, "trainable": 4, "grad": 4, "optim": 8, "dtype": torch.float32, "checkpointing": False,
             "what": "fp32 weights, AdamW (2 fp32 moments), no checkpointing"},
    "scaled": {"frozen": 2, "trainable": 4, "grad": 4, "optim": 2, "dtype": torch.bfloat16, "checkpointing": True,
               "what": ("bf16 activations and frozen weights, fp32 master weights + grads, 8-bit AdamW, "
                        "gradient checkpointing")},
}
#: (batch, frames) per stage: stage 1 single frames at the seed's train_bs 2; stage 2 15 frames, batch 1
STAGES = {1: (2, 1), 2: (1, None)}


def step_memory(model: CovOG, cfg, recipe: str, stage: int, people: int) -> dict:
    """Peak-memory parts of one training step (bytes -> GiB), see the module docstring."""
    r = RECIPES[recipe]
    model.to(r["dtype"])
    model.set_gradient_checkpointing(r["checkpointing"])
    b, f = STAGES[stage]
    f = f or cfg.num_frames
    batch = make_batch(cfg, b=b, f=f, p=people, device="meta")
    batch = {k: (v.to(r["dtype"]) if v.is_floating_point() else v) for k, v in batch.items()}
    total = sum(p.numel() for p in model.parameters())
    n_train = sum(p.numel() for p in model.trainable_parameters(stage))
    extra: dict = {}
    t0 = time.perf_counter()
    saved, per = saved_activations(model, batch, stage, extra)
    attn = per.get(ATTN, 0)
    acts = saved - attn
    parts = {
        "parameters_gib": ((total - n_train) * r["frozen"] + n_train * r["trainable"]) / GiB,
        "gradients_gib": n_train * r["grad"] / GiB,
        "optimizer_gib": n_train * r["optim"] / GiB,
        "activations_gib": acts / GiB,
        "recompute_gib": extra["recompute_max"] / GiB,
        "in_flight_gib": 2 * extra["largest"] / GiB,
    }
    peak = sum(parts.values())
    out = {"peak_gib": round(peak, 2), **{k: round(v, 3) for k, v in parts.items()},
           "math_attention_matrices_gib": round(attn / GiB, 3), "trainable_params_m": round(n_train / 1e6, 1),
           "batch": b, "frames": f, "height": cfg.height, "width": cfg.width, "people": people,
           "checkpointed_segments": extra["segments"], "trace_s": round(time.perf_counter() - t0, 1),
           "activations_per_block_gib": {k: round(v / GiB, 3) for k, v in sorted(per.items(), key=lambda kv: -kv[1])}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="paper", help="CovOG config name or YAML (default: paper)")
    ap.add_argument("--people", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10, help="timed tiny training steps per stage (0: skip)")
    ap.add_argument("--json", default=None, help="write {recipe: {stage1: {...}, stage2: {...}}} here")
    ap.add_argument("--gpu-gib", type=float, default=48.0, help="GPU memory to compare with (A6000: 48 GB)")
    args = ap.parse_args()

    cfg = load_config(args.config)
    with torch.device("meta"):
        model = CovOG(cfg)
    counts = block_params(model)
    total = sum(p.numel() for p in model.parameters())
    print(f"{cfg.name} config: {cfg.height}x{cfg.width} (HxW), latents {cfg.latent_size}, "
          f"{cfg.num_frames} frames, {cfg.motion_frames} motion frames, IAD after down {cfg.iad.down_blocks} "
          f"and up {cfg.iad.up_blocks}")
    print("parameters per block:")
    for k, v in counts.items():
        print(f"  {k:28s} {v / 1e6:10.2f} M")
    print(f"  {'total':28s} {total / 1e6:10.2f} M  ({total * 4 / GiB:.2f} GiB fp32)")

    results: dict = {}
    # 48 GB (A6000 "48 GB" = 48e9 bytes = 44.7 GiB after nothing else)
    budget = args.gpu_gib * 1e9 / GiB
    for recipe, r in RECIPES.items():
        results[recipe] = {}
        print(f"\nrecipe {recipe}: {r['what']}")
        for stage in (1, 2):
            m = step_memory(model, cfg, recipe, stage, args.people)
            results[recipe][f"stage{stage}"] = m
            fits = "fits" if m["peak_gib"] <= budget else "does NOT fit"
            print(f"  stage {stage} ({m['batch']} x {m['frames']} frames, {m['height']}x{m['width']}): "
                  f"peak {m['peak_gib']:.1f} GiB = parameters {m['parameters_gib']:.1f} + gradients "
                  f"{m['gradients_gib']:.1f} + optimizer {m['optimizer_gib']:.1f} + activations "
                  f"{m['activations_gib']:.1f} + recompute {m['recompute_gib']:.2f} + in flight "
                  f"{m['in_flight_gib']:.2f}  -> {fits} a {args.gpu_gib:.0f} GB GPU ({budget:.1f} GiB)  "
                  f"[{m['trainable_params_m']:.0f} M trainable; math-attention matrices left out: "
                  f"{m['math_attention_matrices_gib']:.1f} GiB; traced in {m['trace_s']:.0f} s]")
            for k, v in list(m["activations_per_block_gib"].items())[:6]:
                print(f"      {k:32s} {v:8.3f} GiB")
    model.to(torch.float32)
    model.set_gradient_checkpointing(False)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")

    if args.steps > 0:
        secs = tiny_step_seconds(args.steps)
        tcfg = load_config("tiny")
        print(f"tiny config ({tcfg.height}x{tcfg.width} HxW, latents {tcfg.latent_size}, {tcfg.num_frames} frames, "
              f"B=1, 2 people, 1 thread): stage 1 {secs[1]:.3f} s/step, stage 2 {secs[2]:.3f} s/step "
              f"(median of {args.steps})")


if __name__ == "__main__":
    main()
