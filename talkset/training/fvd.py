"""Frechet Video Distance (Unterthiner et al. 2018) as used by the MIT paper's Table 2.

FVD = Frechet distance between Gaussians fitted to I3D features of real and generated videos:

    d^2 = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^{1/2})

:func:`frechet_distance` works on any two feature sets; :class:`I3DFeatures` loads the Kinetics-400
I3D TorchScript detector used by StyleGAN-V and most FVD code (``i3d_torchscript.pt``) from a user
path and returns its 400-d pre-softmax features. Nothing is downloaded: without the file,
:class:`talkset.weights.WeightsNotFound` names the path.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.linalg
import torch

from talkset.weights import WeightsNotFound


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(D,)`` and covariance ``(D, D)`` (unbiased, ``np.cov``) of ``features`` ``(N, D)``."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"need features (N >= 2, D), got shape {f.shape}")
    return f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def frechet_distance_stats(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2) (squared form, as FID/FVD)."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    s1, s2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():  # singular product: regularise as the FID reference does
        off = np.eye(s1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((s1 + off) @ (s2 + off))
    covmean = np.real(covmean)
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def frechet_distance(feats1: np.ndarray, feats2: np.ndarray) -> float:
    """Frechet distance between Gaussians fitted to two feature sets ``(N1, D)`` and ``(N2, D)``."""
    return frechet_distance_stats(*gaussian_stats(feats1), *gaussian_stats(feats2))


class I3DFeatures:
    """I3D (Kinetics-400) video features from the StyleGAN-V TorchScript file.

    ``path``: ``i3d_torchscript.pt``. Called as StyleGAN-V does
    (``detector(videos, rescale=True, resize=True, return_features=True)``) on uint8 videos
    ``(B, 3, T, H, W)``; the detector rescales to [-1, 1] and resizes to 224x224 itself.
    """

    def __init__(self, path: str | os.PathLike, device: str = "cpu"):
        p = Path(path).expanduser()
        if not p.is_file():
            raise WeightsNotFound(
                f"I3D detector not found at {p}: expected the StyleGAN-V TorchScript file i3d_torchscript.pt "
                "(https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt). Nothing is downloaded at run "
                "time; FVD is skipped without it."
            )
        self.path = p
        self.device = device
        self.model = torch.jit.load(str(p), map_location=device).eval()

    @torch.no_grad()
    def __call__(self, videos: torch.Tensor) -> np.ndarray:
        """``videos``: ``(B, F, 3, H, W)`` float in [0, 1] (F >= 10 recommended). Returns ``(B, 400)``."""
        v = (videos.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 1, 3, 4).contiguous()
        feats = self.model(v.to(self.device), rescale=True, resize=True, return_features=True)
        return feats.float().cpu().numpy()
