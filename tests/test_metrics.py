"""SSIM / PSNR per clip and the Frechet distance of FVD, against answers known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from talkset import env

env.configure(threads=1)


def _exact_moments(n: int, mean: np.ndarray, cov: np.ndarray, seed: int) -> np.ndarray:
    """n samples whose sample mean is exactly ``mean`` and unbiased sample covariance exactly ``cov``."""
    rng = np.random.default_rng(seed)
    d = len(mean)
    x = rng.standard_normal((n, d))
    x -= x.mean(0)
    white = np.linalg.cholesky(np.atleast_2d(np.cov(x, rowvar=False)))
    x = x @ np.linalg.inv(white).T  # sample covariance now exactly I
    return x @ np.linalg.cholesky(cov).T + mean


def test_frechet_distance_matches_closed_form_for_diagonal_gaussians():
    from talkset.training.fvd import frechet_distance, gaussian_stats

    d = 6
    mu1, mu2 = np.arange(d, dtype=float), np.arange(d, dtype=float)[::-1] * 0.5
    a = np.array([1.0, 2.0, 0.5, 3.0, 1.5, 0.25])
    b = np.array([2.0, 0.5, 0.5, 1.0, 4.0, 1.0])
    f1 = _exact_moments(500, mu1, np.diag(a), 0)
    f2 = _exact_moments(800, mu2, np.diag(b), 1)
    m1, s1 = gaussian_stats(f1)
    assert np.allclose(m1, mu1) and np.allclose(s1, np.diag(a))
    # commuting covariances: Tr(S1 + S2 - 2 sqrt(S1 S2)) = sum (sqrt(a) - sqrt(b))^2
    want = float(np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2))
    assert frechet_distance(f1, f2) == pytest.approx(want, rel=1e-8, abs=1e-8)
    assert frechet_distance(f1, f1) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_is_rotation_invariant_and_matches_1d_formula():
    from talkset.training.fvd import frechet_distance, frechet_distance_stats

    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    a, b = np.diag([1.0, 4.0, 9.0, 0.5]), np.diag([2.0, 1.0, 1.0, 3.0])
    mu1, mu2 = np.array([1.0, 0, 0, 2]), np.array([0.0, 1, 1, 0])
    plain = frechet_distance_stats(mu1, a, mu2, b)
    rotated = frechet_distance_stats(q @ mu1, q @ a @ q.T, q @ mu2, q @ b @ q.T)  # non-diagonal covariances
    assert rotated == pytest.approx(plain, rel=1e-9)
    assert plain == pytest.approx(float(np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(np.diag(a)) - np.sqrt(np.diag(b))) ** 2)))
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    x = _exact_moments(200, np.array([3.0]), np.array([[4.0]]), 5)
    y = _exact_moments(300, np.array([-1.0]), np.array([[0.25]]), 6)
    assert frechet_distance(x, y) == pytest.approx(16.0 + (2.0 - 0.5) ** 2, rel=1e-9)


def test_i3d_missing_file_is_a_clear_error(tmp_path):
    from talkset.training.fvd import I3DFeatures
    from talkset.weights import WeightsNotFound

    with pytest.raises(WeightsNotFound, match=f"I3D detector not found at {tmp_path}/i3d_torchscript.pt"):
        I3DFeatures(tmp_path / "i3d_torchscript.pt")


def test_identical_clips_give_ssim_1_and_capped_psnr():
    from talkset.training.metrics import PSNR_CAP, clip_metrics

    g = torch.Generator().manual_seed(0)
    clip = torch.rand(5, 3, 48, 64, generator=g)
    m = clip_metrics(clip, clip.clone())
    assert m["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert m["psnr"] == PSNR_CAP and m["frames"] == 5


def test_psnr_matches_hand_computation():
    from talkset.training.metrics import clip_metrics, psnr_frames

    grey = torch.full((3, 3, 32, 32), 0.5)
    assert psnr_frames(grey, grey + 0.1).tolist() == pytest.approx([20.0] * 3, abs=1e-4)  # MSE 0.01
    g = torch.Generator().manual_seed(1)
    clean = torch.rand(4, 3, 40, 40, generator=g) * 0.8 + 0.1
    sigma = 0.05
    noisy = (clean + sigma * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    mse = ((noisy.double() - clean.double()) ** 2).flatten(1).mean(1)
    want = float((10 * torch.log10(1.0 / mse)).mean())
    got = clip_metrics(noisy, clean)["psnr"]
    assert got == pytest.approx(want, abs=1e-3)
    assert got == pytest.approx(-10 * math.log10(sigma**2), abs=0.3)  # ~26 dB for sigma 0.05


def test_ssim_agrees_with_scikit_image():
    from skimage.metrics import structural_similarity

    from talkset.training.metrics import ssim_frames

    g = torch.Generator().manual_seed(2)
    a = torch.rand(2, 3, 64, 64, generator=g)
    b = (a * 0.7 + 0.3 * torch.rand(2, 3, 64, 64, generator=g)).clamp(0, 1)
    ours = ssim_frames(a, b)
    for i in range(2):
        ref = structural_similarity(
            a[i].permute(1, 2, 0).numpy(), b[i].permute(1, 2, 0).numpy(), channel_axis=2, data_range=1.0,
            gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        )
        assert float(ours[i]) == pytest.approx(ref, abs=0.02)
    assert 0.2 < float(ours.mean()) < 0.95
