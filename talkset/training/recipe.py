"""The CovOG training recipe on top of the model's diffusion loss: reference dropout, noise offset,
min-SNR weighting, mixed precision and the optimiser (MIT paper Sec. 5; the values are the seed's
``baseline_train/configs/train/stage*.yaml``, i.e. Moore-AnimateAnyone's ``train_stage_*.py``).

Per step and sample b (B samples, timestep ``t_b`` uniform in ``0..999``):

- **reference dropout** (``uncond_ratio`` 0.1): with probability ``p`` the sample is trained
  unconditionally, the branch classifier-free guidance samples with. One Bernoulli per sample from
  the step's generator (the seed draws once per batch). When :meth:`CovOG.noise_prediction` takes
  ``uncond=`` (the model's own definition of the unconditional branch: a zero image embedding, as
  the seed zeroes the CLIP image) the mask goes there; with a model without it, ``ref_image`` and
  ``ref_pose(_people)`` of the dropped samples become zeros (a blank reference) instead.
- **noise offset** (0.05): the noise is ``eps + offset * z`` with ``z ~ N(0, 1)`` of shape
  ``(B, C, 1, 1, 1)`` (one value per sample and latent channel, constant over frames and pixels),
  which lets the model shift a frame's mean brightness. :meth:`CovOG.noise_prediction` draws
  ``eps`` itself, so the offset is added where its noisy latent enters the denoising UNet (a
  forward pre-hook adds ``sqrt(1 - a_t) offset z``) and to its target (``sqrt(a_t) offset z`` for
  v-prediction, ``offset z`` for epsilon): exactly the seed's ``noisy = sqrt(a) x0 + sqrt(1 - a)
  (eps + offset z)``.
- **min-SNR weighting** (gamma 5, Hang et al. 2023, diffusers ``compute_snr``): per-sample MSE
  times ``w_b = min(SNR_b, gamma) / SNR_b`` with ``SNR = a_t / (1 - a_t)``, plus 1 for
  v-prediction (as the seed: ``snr = snr + 1``); the loss is the mean of the weighted per-sample
  MSEs. With zero terminal SNR (``a_999 = 0``) the epsilon weight there is its limit, 1.

Mixed precision: ``torch.autocast`` in bf16 or fp16 around the forward (the loss in fp32); fp16
adds a ``torch.amp.GradScaler``. The optimiser: ``torch.optim.AdamW`` (the seed's betas 0.9 /
0.999, eps 1e-8) or bitsandbytes' ``AdamW8bit`` (the seed's stage 2 ``use_8bit_adam``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Recipe:
    """The loss-side recipe fields of :class:`talkset.training.config.TrainConfig`."""

    ref_dropout: float = 0.1
    noise_offset: float = 0.05
    snr_gamma: float | None = 5.0

    @classmethod
    def from_options(cls, opts) -> Recipe:
        return cls(float(opts.ref_dropout), float(opts.noise_offset), opts.snr_gamma)


def snr(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio ``a_t / (1 - a_t)`` (float64, shape of ``timesteps``)."""
    ac = alphas_cumprod.to(torch.float64)[timesteps.long().cpu()]
    return ac / (1.0 - ac)


def min_snr_weights(alphas_cumprod: torch.Tensor, timesteps: torch.Tensor, gamma: float,
                    prediction_type: str = "v_prediction") -> torch.Tensor:
    """Min-SNR-gamma loss weights ``min(SNR, gamma) / SNR`` per timestep, SNR + 1 for
    ``v_prediction`` (see the module docstring). Returns float32, shape of ``timesteps``."""
    s = snr(alphas_cumprod, timesteps)
    if prediction_type == "v_prediction":
        s = s + 1.0
    s = s.clamp_min(1e-12)  # zero terminal SNR with epsilon: the limit of min(s, g) / s is 1
    return (torch.minimum(s, torch.full_like(s, float(gamma))) / s).float()


def drop_reference(batch: dict, p: float, generator: torch.Generator | None = None) -> tuple[dict, torch.Tensor]:
    """``(batch with the dropped samples' ref_image and ref_pose(_people) zeroed, dropped (B,) bool)``;
    each sample is dropped with probability ``p`` (``torch.rand`` from ``generator``). The input
    batch is not modified."""
    ref = batch["ref_image"]
    b = ref.shape[0]
    gdev = generator.device if generator is not None else torch.device("cpu")
    dropped = (torch.rand(b, generator=generator, device=gdev) < float(p)).cpu()
    return _zero_reference(batch, dropped), dropped


def takes_uncond(model) -> bool:
    """Whether ``model.noise_prediction`` has the ``uncond=`` argument (reference dropout inside)."""
    import inspect

    return "uncond" in inspect.signature(model.noise_prediction).parameters


def _zero_reference(batch: dict, dropped: torch.Tensor) -> dict:
    if not dropped.any():
        return batch
    b = dropped.shape[0]
    out = dict(batch)
    for key in ("ref_image", "ref_pose", "ref_pose_people"):
        if key not in batch:
            continue
        x = batch[key]
        keep = (~dropped).to(x.device).view(b, *([1] * (x.dim() - 1)))
        out[key] = x * keep.to(x.dtype)
    return out


@contextlib.contextmanager
def _offset_noise(unet: torch.nn.Module, ac: torch.Tensor, z: torch.Tensor):
    """Add ``sqrt(1 - a_t) z`` to the noisy latent (first argument) of ``unet``'s next forward."""
    calls = []

    def hook(_module, args):
        if calls:
            raise RuntimeError("noise offset: the denoising UNet ran twice in one training step")
        calls.append(1)
        noisy = args[0]
        shift = ((1 - ac).sqrt() * z).to(noisy.device, noisy.dtype)
        return (noisy + shift,) + tuple(args[1:])

    handle = unet.register_forward_pre_hook(hook)
    try:
        yield calls
    finally:
        handle.remove()


def recipe_terms(model, batch: dict, stage: int, recipe: Recipe, generator: torch.Generator | None = None,
                 timesteps: torch.Tensor | None = None) -> dict:
    """One step's pieces: ``{"pred", "want"`` (B, C, F, h, w) fp32, ``"timesteps"`` (B,),
    ``"weights"`` (B,) (ones without min-SNR), ``"dropped"`` (B,) bool, ``"offset"`` (B, C, 1, 1, 1)
    (the noise offset ``offset * z``, zeros without)}``. Draw order from ``generator``: dropout,
    timesteps, offset, then the model's own noise. ``timesteps`` overrides the random ones."""
    ref = batch["ref_image"]
    b = ref.shape[0]
    gdev = generator.device if generator is not None else torch.device("cpu")
    dev = model.device
    dropped = torch.zeros(b, dtype=torch.bool)
    kw = {}
    if recipe.ref_dropout > 0:
        dropped = (torch.rand(b, generator=generator, device=gdev) < float(recipe.ref_dropout)).cpu()
        if takes_uncond(model):
            kw["uncond"] = dropped.to(dev)
        elif dropped.any():
            batch = _zero_reference(batch, dropped)
    sched = model.cfg.scheduler
    t = torch.randint(0, sched.num_train_timesteps, (b,), generator=generator, device=gdev)
    if timesteps is not None:
        t = torch.as_tensor(timesteps, dtype=torch.long).reshape(-1).expand(b).to(gdev)
    t = t.to(dev)
    channels = model.cfg.latent.channels
    ac = model.noise_scheduler.alphas_cumprod.to(dev)[t].view(b, 1, 1, 1, 1).float()
    offset = torch.zeros(b, channels, 1, 1, 1, device=dev)
    if recipe.noise_offset:
        offset = float(recipe.noise_offset) * torch.randn((b, channels, 1, 1, 1), generator=generator, device=gdev).to(dev)
        with _offset_noise(model.denoising_unet, ac, offset) as calls:
            pred, want = model.noise_prediction(batch, stage, generator, timesteps=t, **kw)
        if len(calls) != 1:
            raise RuntimeError("noise offset: the denoising UNet did not run in noise_prediction")
        want = want.float() + (offset if sched.prediction_type == "epsilon" else ac.sqrt() * offset)
    else:
        pred, want = model.noise_prediction(batch, stage, generator, timesteps=t, **kw)
    if recipe.snr_gamma:
        w = min_snr_weights(model.noise_scheduler.alphas_cumprod, t, recipe.snr_gamma, sched.prediction_type).to(dev)
    else:
        w = torch.ones(b, device=dev)
    return {"pred": pred.float(), "want": want.float(), "timesteps": t, "weights": w, "dropped": dropped, "offset": offset}


def weighted_mse(pred: torch.Tensor, want: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``mean_b(w_b * mean(MSE of sample b))`` as a float32 scalar."""
    per = F.mse_loss(pred.float(), want.float(), reduction="none").flatten(1).mean(1)
    return (per * weights.to(per)).mean()


def recipe_loss(model, batch: dict, stage: int, recipe: Recipe, generator: torch.Generator | None = None,
                precision: str = "fp32") -> torch.Tensor:
    """The recipe's training loss (module docstring) of one batch; ``precision`` bf16 / fp16
    runs the forward under ``torch.autocast`` on the model's device type."""
    with autocast(model.device, precision):
        terms = recipe_terms(model, batch, stage, recipe, generator)
    return weighted_mse(terms["pred"], terms["want"], terms["weights"])


def autocast(device: torch.device | str, precision: str):
    """``torch.autocast`` for ``bf16`` / ``fp16``; a no-op context for ``fp32``."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None:
        raise ValueError(f"precision must be fp32, bf16 or fp16, got {precision!r}")
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def grad_scaler(device: torch.device | str, precision: str):
    """A ``torch.amp.GradScaler`` for fp16 (None otherwise)."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(torch.device(device).type)


def make_optimizer(params, kind: str, lr: float, weight_decay: float):
    """``adamw`` -> ``torch.optim.AdamW``; ``adamw8bit`` -> ``bitsandbytes.optim.AdamW8bit``
    (raises ``ImportError`` saying so when bitsandbytes is not installed). Betas 0.9 / 0.999, eps
    1e-8 (the seed's)."""
    kw = {"lr": lr, "weight_decay": weight_decay, "betas": (0.9, 0.999), "eps": 1e-8}
    if kind == "adamw":
        return torch.optim.AdamW(params, **kw)
    if kind == "adamw8bit":
        try:
            import bitsandbytes as bnb
        except ImportError as exc:
            raise ImportError(
                "optimizer='adamw8bit' needs bitsandbytes, which is not importable here "
                f"({exc}); install it (pip install bitsandbytes, CUDA machines) or use optimizer='adamw'"
            ) from exc
        return bnb.optim.AdamW8bit(params, **kw)
    raise ValueError(f"optimizer must be adamw or adamw8bit, got {kind!r}")
