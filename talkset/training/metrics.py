"""Per-clip image metrics for CovOG evaluation: SSIM and PSNR (MIT paper, Sec. 5, Table 2).

Inputs are clips as float tensors ``(F, 3, H, W)`` in [0, 1] (data range 1). Each metric is computed
per frame and averaged over the clip's frames (the usual practice of AnimateAnyone-style video
evaluation).

- SSIM: ``torchmetrics`` ``structural_similarity_index_measure`` with an 11x11 Gaussian window,
  sigma 1.5, K1 0.01, K2 0.03, mean over channels and pixels (Wang et al. 2004).
- PSNR: ``10 log10(1 / MSE)`` per frame with MSE over channels and pixels. Identical frames have
  MSE 0; their PSNR is capped at :data:`PSNR_CAP` (100 dB) so clip means stay finite.
"""

from __future__ import annotations

import torch

PSNR_CAP = 100.0


def _check(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    pred = torch.as_tensor(pred, dtype=torch.float32)
    target = torch.as_tensor(target, dtype=torch.float32)
    if pred.shape != target.shape or pred.dim() != 4 or pred.shape[1] != 3:
        raise ValueError(f"need two (F, 3, H, W) clips of the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    return pred, target


def psnr_frames(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per frame, ``(F,)`` float32, capped at :data:`PSNR_CAP`."""
    pred, target = _check(pred, target)
    mse = ((pred - target) ** 2).flatten(1).mean(1).double()
    psnr = 10.0 * torch.log10(1.0 / mse.clamp_min(10 ** (-PSNR_CAP / 10)))
    return psnr.clamp_max(PSNR_CAP).float()


def ssim_frames(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM per frame, ``(F,)`` float32 in [-1, 1] (1 for identical frames)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    pred, target = _check(pred, target)
    return structural_similarity_index_measure(
        pred, target, gaussian_kernel=True, sigma=1.5, kernel_size=11, data_range=1.0, reduction="none"
    ).float()


def clip_metrics(pred: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """``{"ssim": mean SSIM, "psnr": mean PSNR dB, "frames": F}`` of one clip in [0, 1]."""
    return {
        "ssim": float(ssim_frames(pred, target).mean()),
        "psnr": float(psnr_frames(pred, target).mean()),
        "frames": int(pred.shape[0]),
    }
