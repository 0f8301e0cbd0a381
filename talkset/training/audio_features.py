"""Audio features per video frame for CovOG's Interactive Audio Driver (IAD).

The paper (MIT, Sec. 4, IAD) drives the denoising UNet with wav2vec2 hidden states: for each
video frame, the hidden states of wav2vec2's 12 transformer layers (768 channels each) at that
frame's time. :class:`Wav2Vec2Features` computes exactly that from a local wav2vec2 checkpoint
(a Hugging Face folder given by the user; nothing is downloaded).

The wav2vec2 folder is ``audio_model`` (a path); ``None`` means :data:`DEFAULT_WAV2VEC2`
looked up in ``$TALKSET_WEIGHTS`` then ``../shared/weights``. A missing folder raises
:class:`talkset.weights.WeightsNotFound` naming it: the stand-in below is never used silently.

Stand-in (:class:`LogMelFeatures`, only with ``audio_model="logmel"``): a documented
*stand-in shaped like wav2vec2's output*, not a learned speech representation:

1. 80-band log-mel spectrogram at 100 Hz (25 ms Hann window, 10 ms hop, 16 kHz, ``torch.stft``),
2. normalised per clip (zero mean, unit variance per mel band),
3. grouped per video frame: the ``4`` mel frames of each 40 ms video frame (25 fps) and
   ``context`` video frames either side, concatenated,
4. projected by a FIXED random matrix (seeded ``torch.Generator``, N(0, 1/in_dim)) to ``(L, D)``.

Both return float32 arrays of shape ``(num_frames, L, D)``: one ``(L, D)`` block per video frame.

Stored once (:class:`AudioFeatureStore`): the features of a clip under a model are computed at the
first request and written to the root's ``audio_features`` table (one Parquet shard per clip and
model, through :meth:`talkset.storage.root.DatasetRoot.write_shard`'s temp file + ``os.replace``);
every later request (a dataset cache miss, another Ray worker, the next run, ``evaluate``) reads
them back. wav2vec2-base over a 3 s clip costs about a second on one CPU thread, and the
dataset's clip cache evicts clips (``max_cached_clips``), so recomputing at every miss would
charge it again and again.
"""

from __future__ import annotations

import math
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

from talkset.weights import WeightsNotFound

SAMPLE_RATE = 16000
VIDEO_FPS = 25.0
#: ``audio_model`` value that asks for the log-mel stand-in
LOGMEL = "logmel"
#: wav2vec2 folder looked up (``$TALKSET_WEIGHTS``, ``../shared/weights``) when ``audio_model`` is None
DEFAULT_WAV2VEC2 = "wav2vec2-base-960h"


def _frame_count(num_samples: int, rate: int, fps: float) -> int:
    return int(math.floor(num_samples / rate * fps + 1e-6))


def _resample_time(feats: torch.Tensor, src_rate: float, num_frames: int, fps: float, t0: float | None = None) -> torch.Tensor:
    """Linear interpolation of ``feats`` (T_src, ...) whose sample i is at time ``t0 + i / src_rate``
    seconds (``t0`` default ``0.5 / src_rate``) to ``num_frames`` samples at the video frame
    centres ``(k + 0.5) / fps``; times outside the source range take the edge sample."""
    t0 = 0.5 / src_rate if t0 is None else t0
    t_dst = (torch.arange(num_frames, dtype=torch.float64) + 0.5) / fps
    pos = torch.clamp((t_dst - t0) * src_rate, 0, feats.shape[0] - 1)
    lo = pos.floor().long()
    hi = torch.clamp(lo + 1, max=feats.shape[0] - 1)
    w = (pos - lo).to(feats.dtype).view(-1, *([1] * (feats.dim() - 1)))
    return feats[lo] * (1 - w) + feats[hi] * w


class Wav2Vec2Features:
    """wav2vec2 hidden states per video frame: ``(num_frames, 12, 768)`` float32.

    ``path``: a local folder loadable by ``transformers.Wav2Vec2Model.from_pretrained`` (config.json +
    weights), e.g. a copy of ``facebook/wav2vec2-base-960h``. Raises
    :class:`talkset.weights.WeightsNotFound` naming the path when it is missing.

    wav2vec2 emits one vector per 20 ms (50 Hz, step i centred at 12.5 + 20 i ms); the 12 transformer layers' outputs
    (``hidden_states[1:]``; index 0 is the CNN feature projection) are linearly interpolated to the
    video frame centres at ``fps``. ``layers`` keeps the last ``layers`` of them.
    """

    def __init__(self, path: str | os.PathLike, layers: int = 12, device: str = "cpu"):
        p = Path(path).expanduser()
        _check_wav2vec2(p)
        from transformers import Wav2Vec2Model

        self.model = Wav2Vec2Model.from_pretrained(str(p), local_files_only=True).to(device).eval()
        self.layers = layers
        self.device = device
        self.name = f"wav2vec2:{p.name}"

    @property
    def shape(self) -> tuple[int, int]:
        return self.layers, int(self.model.config.hidden_size)

    @torch.no_grad()
    def __call__(self, audio: np.ndarray, num_frames: int | None = None, fps: float = VIDEO_FPS) -> np.ndarray:
        """``audio``: mono float32 at 16 kHz in [-1, 1]. Returns ``(num_frames, L, 768)`` float32."""
        audio = np.asarray(audio, dtype=np.float32)
        n = num_frames if num_frames is not None else _frame_count(len(audio), SAMPLE_RATE, fps)
        x = torch.from_numpy(audio)
        x = (x - x.mean()) / (x.std() + 1e-7)  # Wav2Vec2FeatureExtractor's do_normalize
        min_len = 400  # one CNN receptive field
        if x.numel() < min_len:
            x = torch.nn.functional.pad(x, (0, min_len - x.numel()))
        out = self.model(x[None].to(self.device), output_hidden_states=True)
        hs = torch.stack(out.hidden_states[1:], dim=2)[0]  # (T50, 12, 768)
        hs = hs[:, -self.layers :]
        # wav2vec2-base's CNN: receptive field 400 samples, stride 320 -> step i is centred at
        # (320 i + 200) / 16000 s, 50 Hz
        return _resample_time(hs.float().cpu(), SAMPLE_RATE / 320, n, fps, t0=200 / SAMPLE_RATE).numpy().astype(np.float32)


class LogMelFeatures:
    """Offline stand-in for wav2vec2 (see module docstring): ``(num_frames, L, D)`` float32.

    ``layers`` (L) and ``dim`` (D) give the output shape (12 x 768 mimics wav2vec2-base; the tiny
    CovOG config asks for smaller). ``seed`` fixes the projection: the same seed gives the same
    features for the same audio in every process.
    """

    def __init__(self, layers: int = 12, dim: int = 768, n_mels: int = 80, context: int = 1, seed: int = 0):
        self.layers, self.dim, self.n_mels, self.context, self.seed = layers, dim, n_mels, context, seed
        self.n_fft, self.hop = 400, 160  # 25 ms window, 10 ms hop at 16 kHz -> 100 Hz
        in_dim = n_mels * 4 * (2 * context + 1)  # 4 mel frames per 25 fps video frame
        g = torch.Generator().manual_seed(seed)
        self.proj = torch.randn(in_dim, layers * dim, generator=g) / math.sqrt(in_dim)
        self.mel_fb = torch.from_numpy(mel_filterbank(n_mels, self.n_fft, SAMPLE_RATE)).float()
        self.name = f"logmel{n_mels}-randproj-seed{seed}"

    @property
    def shape(self) -> tuple[int, int]:
        return self.layers, self.dim

    def log_mel(self, audio: np.ndarray) -> torch.Tensor:
        """``(T100, n_mels)`` natural-log mel energies at 100 Hz."""
        x = torch.from_numpy(np.asarray(audio, dtype=np.float32))
        if x.numel() < self.n_fft:
            x = torch.nn.functional.pad(x, (0, self.n_fft - x.numel()))
        spec = torch.stft(
            x, self.n_fft, self.hop, window=torch.hann_window(self.n_fft), center=True, return_complex=True
        )
        power = spec.abs() ** 2  # (n_fft/2+1, T)
        return torch.log(self.mel_fb @ power + 1e-6).T

    def __call__(self, audio: np.ndarray, num_frames: int | None = None, fps: float = VIDEO_FPS) -> np.ndarray:
        """``audio``: mono float32 at 16 kHz. Returns ``(num_frames, L, D)`` float32."""
        audio = np.asarray(audio, dtype=np.float32)
        n = num_frames if num_frames is not None else _frame_count(len(audio), SAMPLE_RATE, fps)
        mel = self.log_mel(audio)
        mel = (mel - mel.mean(0)) / (mel.std(0) + 1e-5)
        if abs(fps - VIDEO_FPS) > 1e-6:
            raise ValueError(f"log-mel features are defined for 25 fps clips (got {fps} fps)")
        per = 4  # 100 Hz mel frames per 25 fps video frame
        need = (n + 2 * self.context) * per
        # pad `context` video frames of edge values either side, then to the needed length
        left = mel[:1].expand(self.context * per, -1)
        mel = torch.cat([left, mel], 0)
        if mel.shape[0] < need:
            mel = torch.cat([mel, mel[-1:].expand(need - mel.shape[0], -1)], 0)
        blocks = mel[:need].reshape(n + 2 * self.context, per * self.n_mels)
        win = torch.cat([blocks[i : i + n] for i in range(2 * self.context + 1)], 1)
        out = win @ self.proj
        return out.view(n, self.layers, self.dim).numpy().astype(np.float32)


def mel_filterbank(n_mels: int, n_fft: int, rate: int, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Slaney-style triangular mel filterbank ``(n_mels, n_fft // 2 + 1)`` (HTK mel scale, area
    normalised), as librosa's ``mel(htk=True)``."""
    fmax = fmax or rate / 2

    def hz2mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel2hz(m):
        return 700.0 * (10 ** (np.asarray(m) / 2595.0) - 1.0)

    freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    pts = mel2hz(np.linspace(hz2mel(fmin), hz2mel(fmax), n_mels + 2))
    fb = np.zeros((n_mels, len(freqs)), dtype=np.float64)
    for i in range(n_mels):
        lo, c, hi = pts[i], pts[i + 1], pts[i + 2]
        up = (freqs - lo) / max(c - lo, 1e-9)
        down = (hi - freqs) / max(hi - c, 1e-9)
        fb[i] = np.maximum(0, np.minimum(up, down)) * (2.0 / (hi - lo))
    return fb.astype(np.float32)


def wav2vec2_path(audio_model: str | os.PathLike | None) -> Path:
    """The wav2vec2 folder for ``audio_model``: the path itself, or for ``None`` the first of
    ``<dir>/wav2vec2-base-960h`` over :func:`talkset.weights.weights_dirs` that exists (else the
    first candidate, so the error names where it was looked for)."""
    if audio_model:
        return Path(audio_model).expanduser()
    from talkset.weights import weights_dirs

    cands = [d / DEFAULT_WAV2VEC2 for d in weights_dirs()]
    return next((c for c in cands if c.is_dir()), cands[0])


def audio_extractor(audio_model: str | os.PathLike | None, layers: int = 12, dim: int = 768, seed: int = 0):
    """``audio_model`` a wav2vec2 folder -> :class:`Wav2Vec2Features` (its own 768 channels;
    ``dim`` must match); ``None`` -> the default wav2vec2 folder (:func:`wav2vec2_path`);
    ``"logmel"`` -> :class:`LogMelFeatures` ``(layers, dim)``. A missing wav2vec2 folder raises
    :class:`talkset.weights.WeightsNotFound` naming it (never a silent fallback)."""
    if str(audio_model) == LOGMEL:
        return LogMelFeatures(layers=layers, dim=dim, seed=seed)
    path = wav2vec2_path(audio_model)
    fx = Wav2Vec2Features(path, layers=layers)
    if fx.shape != (layers, dim):
        raise ValueError(f"wav2vec2 at {path} gives {fx.shape} per frame but the model config wants {(layers, dim)}")
    return fx


def _check_wav2vec2(path: Path) -> None:
    if not (path.is_dir() and (path / "config.json").is_file()):
        raise WeightsNotFound(
            f"wav2vec2 model not found at {path}: expected a Hugging Face folder with config.json and "
            "model weights (e.g. facebook/wav2vec2-base-960h saved with save_pretrained). Nothing is "
            f"downloaded at run time; pass audio_model='{LOGMEL}' to train with the log-mel stand-in instead."
        )


class AudioFeatureStore:
    """Per-clip audio features of one model, computed once and kept in the root's
    ``audio_features`` table (see the module docstring).

    ``audio_model``: as :func:`audio_extractor`; a missing wav2vec2 folder raises
    ``WeightsNotFound`` here, at construction (the model itself loads at the first miss).
    ``model_key``: the table's ``model`` value, e.g. ``wav2vec2-base-960h-12x768`` or
    ``logmel80-randproj-seed0-2x32``. Counters ``computed`` / ``loaded`` say what happened.
    """

    def __init__(self, root: str | os.PathLike, audio_model: str | os.PathLike | None, layers: int, dim: int, seed: int = 0):
        from talkset.storage.root import DatasetRoot

        self.droot = DatasetRoot(root)
        self.layers, self.dim, self.seed = int(layers), int(dim), int(seed)
        self.audio_model = audio_model
        if str(audio_model) == LOGMEL:
            name = f"logmel80-randproj-seed{self.seed}"
        else:
            path = wav2vec2_path(audio_model)
            _check_wav2vec2(path)
            name = f"wav2vec2-{path.resolve().name}"
        self.model_key = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{name}-{self.layers}x{self.dim}")
        self._fx = None
        self.computed = 0
        self.loaded = 0

    @property
    def extractor(self):
        if self._fx is None:
            self._fx = audio_extractor(self.audio_model, self.layers, self.dim, seed=self.seed)
        return self._fx

    def shard(self, clip_id: str, source: str) -> Path:
        return self.droot.shard_path("audio_features", source, f"{clip_id}--{self.model_key}")

    def read(self, clip_id: str, source: str, num_frames: int | None = None) -> np.ndarray | None:
        """The stored ``(T, L, D)`` float32 features, or None when absent or of another length."""
        import pyarrow.parquet as pq

        p = self.shard(clip_id, source)
        if not p.is_file():
            return None
        row = pq.read_table(p).to_pylist()[0]
        if row["model"] != self.model_key or (num_frames is not None and row["num_frames"] != num_frames):
            return None
        arr = np.frombuffer(row["features"], dtype="<f4").reshape(row["num_frames"], row["layers"], row["dim"])
        return arr.astype(np.float32, copy=True)

    def get(self, clip_id: str, info: dict, num_frames: int) -> np.ndarray:
        """Features ``(num_frames, L, D)`` of a clip (``info``: its ``clips`` row with ``source`` and
        ``audio_path``): read back when stored, else computed from the clip's WAV and stored.
        Raises ``ValueError`` naming the clip when it has no audio."""
        from talkset import media

        source = str(info.get("source") or "unknown")
        got = self.read(clip_id, source, num_frames)
        if got is not None:
            self.loaded += 1
            return got
        apath = info.get("audio_path")
        if not apath:
            raise ValueError(f"clip {clip_id}: no audio_path in the clips table (CovOG needs the clip's audio)")
        wav_path = self.droot.root / apath
        if not wav_path.is_file():
            raise ValueError(f"clip {clip_id}: audio {wav_path} is missing (re-run collect)")
        feats = np.ascontiguousarray(self.extractor(media.read_audio(wav_path, rate=SAMPLE_RATE), num_frames=num_frames), dtype="<f4")
        row = {"clip_id": clip_id, "source": source, "model": self.model_key, "num_frames": int(feats.shape[0]),
               "layers": int(feats.shape[1]), "dim": int(feats.shape[2]), "features": feats.tobytes(),
               "created_at": datetime.now(UTC)}  # fmt: skip
        self.droot.write_shard("audio_features", source, f"{clip_id}--{self.model_key}", [row])
        self.computed += 1
        return feats.astype(np.float32)
