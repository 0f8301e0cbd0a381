"""Audio-visual synchronisation signals: lip aperture from whole-body keypoints, the speech
envelope of the clip's audio, and their lagged windowed correlation (issue 11 §2).

A face whose mouth opens and closes with the speech that plays is the one speaking it; a mouth
that moves with someone else's speech does not follow that speech's loudness. The measure here
is the classic one of the audio-visual speech literature (mouth opening against the acoustic
envelope, e.g. Chandrasekaran et al., PLoS Comput Biol 2009: the envelope follows mouth opening
by 100-300 ms at syllable rates):

- **lip aperture** per frame (:func:`lip_aperture`): the mean gap between the inner-lip pairs of
  the iBUG-68 face in the COCO-WholeBody 133 layout (face slots 23..90: inner lip 60-67, pairs
  61-67, 62-66, 63-65), divided by the outer eye-corner distance (36-45) so that it does not
  depend on the face's size; NaN where a point is not confident.
- **speech envelope** per frame (:func:`speech_envelope`): RMS of the 200-3500 Hz band of the
  16 kHz audio over 40 ms centred on each 25 fps frame.
- **lip sync** per frame (:func:`lip_sync`): Pearson correlation of aperture and envelope over a
  centred window, averaged over the envelope lagging the lips by ``lags`` frames; in [-1, 1],
  about 0 for a mouth unrelated to the audio, positive for the mouth that speaks it.

All numpy; no model.
"""

from __future__ import annotations

import numpy as np

#: COCO-WholeBody slot of iBUG-68 face point i is FACE0 + i
FACE0 = 23
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))
EYE_OUTER = (36, 45)
FPS = 25.0
RATE = 16000


def lip_aperture(keypoints: np.ndarray, score_min: float = 0.3) -> np.ndarray:
    """Inner-lip opening per frame from COCO-WholeBody keypoints.

    keypoints: float (T, 133, 3) rows ``[x px, y px, score]`` (NaN rows allowed). Returns float32
    (T,): mean inner-lip gap / outer eye-corner distance (0 closed, about 0.1-0.5 open), NaN where
    any of the points used scores below ``score_min`` or is missing."""
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.ndim != 3 or kp.shape[1:] != (133, 3):
        raise ValueError(f"lip_aperture needs (T, 133, 3) keypoints, got {kp.shape}")
    idx = [FACE0 + i for pair in INNER_LIP_PAIRS for i in pair] + [FACE0 + i for i in EYE_OUTER]
    ok = np.all(np.nan_to_num(kp[:, idx, 2], nan=0.0) >= score_min, axis=1)
    gaps = [np.linalg.norm(kp[:, FACE0 + a, :2] - kp[:, FACE0 + b, :2], axis=1) for a, b in INNER_LIP_PAIRS]
    eyes = np.linalg.norm(kp[:, FACE0 + EYE_OUTER[0], :2] - kp[:, FACE0 + EYE_OUTER[1], :2], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ap = np.mean(gaps, axis=0) / eyes
    ap[~ok | ~np.isfinite(ap) | (eyes < 1.0)] = np.nan
    return ap.astype(np.float32)


def speech_envelope(audio: np.ndarray, num_frames: int, rate: int = RATE, fps: float = FPS) -> np.ndarray:
    """Speech-band envelope per video frame: RMS of the 200-3500 Hz band (4th-order
    Butterworth, zero phase) over 40 ms centred on each frame centre ``(k + 0.5) / fps``.
    audio: float mono in [-1, 1] at ``rate`` Hz. Returns float32 (num_frames,) >= 0."""
    from scipy.signal import butter, sosfiltfilt

    a = np.asarray(audio, dtype=np.float64).reshape(-1)
    if num_frames <= 0:
        return np.zeros(0, np.float32)
    if len(a) < 64:
        return np.zeros(num_frames, np.float32)
    sos = butter(4, (200.0, 3500.0), btype="band", fs=rate, output="sos")
    b = sosfiltfilt(sos, a)
    half = int(0.020 * rate)
    c = np.concatenate([[0.0], np.cumsum(b * b)])
    centre = np.round((np.arange(num_frames) + 0.5) / fps * rate).astype(np.int64)
    lo = np.clip(centre - half, 0, len(b))
    hi = np.clip(centre + half, 0, len(b))
    e = np.where(hi > lo, (c[hi] - c[lo]) / np.maximum(hi - lo, 1), 0.0)
    return np.sqrt(np.maximum(e, 0.0)).astype(np.float32)


def _box_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Centred moving mean over ``window`` (odd) samples with reflected ends."""
    h = window // 2
    if len(x) == 0:
        return x
    xp = np.pad(x, (h, h), mode="reflect") if len(x) > h else np.pad(x, (h, h), mode="edge")
    c = np.concatenate([[0.0], np.cumsum(xp)])
    return (c[window:] - c[:-window]) / window


def windowed_corr(x: np.ndarray, y: np.ndarray, window: int) -> np.ndarray:
    """Pearson correlation of ``x`` and ``y`` (same length) over a centred window of ``window``
    (odd) frames at every frame; 0 where either is constant. Returns float64 in [-1, 1]."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    mx, my = _box_mean(x, window), _box_mean(y, window)
    cov = _box_mean(x * y, window) - mx * my
    vx = np.maximum(_box_mean(x * x, window) - mx * mx, 0.0)
    vy = np.maximum(_box_mean(y * y, window) - my * my, 0.0)
    den = np.sqrt(vx * vy)
    out = np.where(den > 1e-12, cov / np.maximum(den, 1e-12), 0.0)
    return np.clip(out, -1.0, 1.0)


def lip_sync(
    aperture: np.ndarray,
    envelope: np.ndarray,
    window: int = 41,
    lags: tuple[int, ...] = (1, 2, 3, 4, 5),
    min_valid: float = 0.5,
    min_motion: float = 0.015,
) -> np.ndarray:
    """Lip sync per frame: the mean over ``lags`` of :func:`windowed_corr` between the aperture
    at frame t and the envelope at frame t + lag (the sound follows the mouth; 1-5 frames =
    40-200 ms), over a centred window of ``window`` frames (41 = 1.64 s).

    aperture: (T,) with NaN where the lips were not seen (interpolated over for the
    correlation); envelope: (T,) aligned to the same frames. Frames whose window holds less than
    ``min_valid`` seen apertures are NaN, and so are frames where the mouth barely moves (standard
    deviation of the aperture over the window < ``min_motion``): a correlation of landmark jitter
    with the speech is chance (measured on benchmarks/speaking_quality.py: the listening anchor's
    aperture varies by 0.005 and its lip sync with another man's voice reached a median of +0.27;
    talking mouths vary by 0.024-0.073, the Black Journal host's and guest's barely tracked ones by
    0.006-0.011). Returns float32 (T,) in [-1, 1]."""
    ap = np.asarray(aperture, np.float64).reshape(-1)
    env = np.asarray(envelope, np.float64).reshape(-1)
    if len(ap) != len(env):
        raise ValueError(f"aperture ({len(ap)}) and envelope ({len(env)}) must cover the same frames")
    T = len(ap)
    seen = np.isfinite(ap)
    if T == 0 or seen.sum() < 3:
        return np.full(T, np.nan, np.float32)
    ap = np.interp(np.arange(T), np.flatnonzero(seen), ap[seen])
    w = int(window) | 1
    if T < 3:
        return np.full(T, np.nan, np.float32)
    w = min(w, T if T % 2 else T - 1)
    acc = np.zeros(T)
    for lag in lags:
        e = np.concatenate([env[lag:], np.repeat(env[-1:], lag)]) if lag > 0 else env
        acc += windowed_corr(ap, e, w)
    out = acc / max(len(lags), 1)
    out[_box_mean(seen.astype(np.float64), w) < min_valid] = np.nan
    motion = np.sqrt(np.maximum(_box_mean(ap * ap, w) - _box_mean(ap, w) ** 2, 0.0))
    out[motion < min_motion] = np.nan
    return out.astype(np.float32)
