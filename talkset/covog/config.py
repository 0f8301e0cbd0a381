"""Sizes of the CovOG networks, read from YAML (``talkset/covog/configs/<name>.yaml``).

Two configs ship: ``tiny`` (trains on one CPU core; parameter-free pixel-unshuffle latent) and
``paper`` (MIT paper Sec. 4: AnimateAnyone on Stable Diffusion 1.5 at 640x384 (width x height,
landscape: multi-person talk-show footage is 16:9), 15 frames,
6 motion frames; wav2vec2 12 x 768 audio features projected to 32 tokens x 1024).

Every section is a small dataclass so callers read ``cfg.audio.layers`` / ``cfg.audio.dim``;
:func:`load_config` rejects unknown keys and checks that the blocks fit together.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass
class LatentConfig:
    """Latent space. ``kind``: ``pixel_unshuffle`` (parameter-free, exactly invertible:
    ``factor`` x ``factor`` pixel blocks to channels, ``channels = 3 * factor**2``) or ``vae``
    (diffusers AutoencoderKL, SD 1.5: factor 8, 4 channels, ``scaling_factor`` 0.18215)."""

    kind: str = "pixel_unshuffle"
    factor: int = 2
    channels: int = 12
    scaling_factor: float = 1.0


@dataclass
class UNetConfig:
    """Spatial UNet sizes shared by ReferenceNet and the denoising UNet (diffusers names;
    ``num_attention_heads`` is what SD 1.5's config calls ``attention_head_dim``: 8 heads)."""

    block_out_channels: list[int] = field(default_factory=lambda: [32, 64])
    layers_per_block: int = 1
    num_attention_heads: int = 4
    cross_attention_dim: int = 32
    norm_num_groups: int = 8
    down_block_types: list[str] = field(default_factory=lambda: ["DownBlock2D", "CrossAttnDownBlock2D"])
    up_block_types: list[str] = field(default_factory=lambda: ["CrossAttnUpBlock2D", "UpBlock2D"])


@dataclass
class MotionConfig:
    """Temporal transformers (AnimateDiff motion modules in diffusers ``UNetMotionModel``)."""

    num_attention_heads: int = 4
    max_seq_length: int = 32
    use_mid_block: bool = True


@dataclass
class PoseConfig:
    """Pose guider (per person, MPE) and pose adaptor (reference pose) channels.
    ``len(channels) - 1`` stride-2 convs: ``2 ** (len - 1)`` must equal the latent factor."""

    guider_channels: list[int] = field(default_factory=lambda: [16, 32])
    adaptor_channels: list[int] = field(default_factory=lambda: [8, 16])


@dataclass
class ImageEncoderConfig:
    """Cross-attention context of both UNets. ``clip``: CLIPVisionModelWithProjection image
    embedding of the reference (1 token, ``projection_dim``); ``latent_pool``: a learned linear
    projection of the reference latent average-pooled to ``grid`` x ``grid`` tokens."""

    kind: str = "latent_pool"
    grid: int = 2
    image_size: int = 224
    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    patch_size: int = 14
    projection_dim: int = 768


@dataclass
class AudioConfig:
    """Audio features per video frame (``layers`` x ``dim``, wav2vec2 hidden states) and the
    audio projection to ``tokens`` x ``token_dim`` (``context`` frames each side)."""

    layers: int = 2
    dim: int = 32
    context: int = 0
    hidden: int = 64
    tokens: int = 4
    token_dim: int = 32


@dataclass
class IADConfig:
    """Interactive Audio Driver: attention heads, speaking-score gate MLP width, and the
    indices of the denoising UNet's up blocks it follows."""

    heads: int = 2
    gate_hidden: int = 16
    up_blocks: list[int] = field(default_factory=lambda: [0, 1])


@dataclass
class SchedulerConfig:
    """Noise schedule (diffusers DDPMScheduler for training, DDIMScheduler for sampling; the
    keys are theirs). Shipped configs: scaled-linear betas rescaled to zero terminal SNR,
    v-prediction, trailing timesteps (Moore-AnimateAnyone's ``enable_zero_snr``)."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: str = "scaled_linear"
    steps_offset: int = 1
    clip_sample: bool = False
    prediction_type: str = "v_prediction"
    timestep_spacing: str = "trailing"
    rescale_betas_zero_snr: bool = True


@dataclass
class CovOGConfig:
    """All CovOG sizes. ``height`` x ``width``: image size in pixels (landscape in both shipped
    configs); ``num_frames``: frames per training window; ``motion_frames``: frames carried
    between windows at inference. Defaults are the ``tiny`` config's."""

    name: str = "tiny"
    height: int = 48
    width: int = 80
    num_frames: int = 4
    motion_frames: int = 2
    max_people: int = 4
    latent: LatentConfig = field(default_factory=LatentConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    pose: PoseConfig = field(default_factory=PoseConfig)
    image_encoder: ImageEncoderConfig = field(default_factory=ImageEncoderConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    iad: IADConfig = field(default_factory=IADConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)

    @property
    def latent_size(self) -> tuple[int, int]:
        """(h, w) of the latent."""
        return self.height // self.latent.factor, self.width // self.latent.factor

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> "CovOGConfig":
        """Raise ValueError when the blocks do not fit together."""
        lat = self.latent
        if lat.kind not in ("pixel_unshuffle", "vae"):
            raise ValueError(f"latent.kind must be pixel_unshuffle or vae, got {lat.kind!r}")
        if lat.kind == "pixel_unshuffle" and lat.channels != 3 * lat.factor**2:
            raise ValueError(f"pixel_unshuffle by {lat.factor} gives {3 * lat.factor**2} channels, not {lat.channels}")
        for what, ch in (("pose.guider_channels", self.pose.guider_channels),
                         ("pose.adaptor_channels", self.pose.adaptor_channels)):
            if 2 ** (len(ch) - 1) != lat.factor:
                raise ValueError(f"{what} {ch} downsamples by {2 ** (len(ch) - 1)}, latent factor is {lat.factor}")
        if self.unet.block_out_channels[0] < 2 * lat.channels:
            # epsilon is i.i.d. per latent channel: conv_in -> ... -> SiLU -> conv_out can pass it
            # through only if the first block is at least twice as wide (silu(x) - silu(-x) = x)
            raise ValueError(
                f"unet.block_out_channels[0] = {self.unet.block_out_channels[0]} is narrower than 2 x the "
                f"{lat.channels} latent channels: the UNet cannot carry the noise through and the "
                f"noise-prediction loss stalls; use a smaller latent (pixel_unshuffle factor) or wider blocks")
        n = len(self.unet.block_out_channels)
        if not (len(self.unet.down_block_types) == len(self.unet.up_block_types) == n):
            raise ValueError("unet: block_out_channels, down_block_types, up_block_types differ in length")
        div = lat.factor * 2 ** (n - 1)
        if self.height % div or self.width % div:
            raise ValueError(f"height x width {self.height}x{self.width} must be multiples of {div}")
        if any(not 0 <= i < n for i in self.iad.up_blocks):
            raise ValueError(f"iad.up_blocks {self.iad.up_blocks} out of range 0..{n - 1}")
        if self.image_encoder.kind not in ("clip", "latent_pool"):
            raise ValueError(f"image_encoder.kind must be clip or latent_pool, got {self.image_encoder.kind!r}")
        if self.num_frames + self.motion_frames > self.motion.max_seq_length:
            raise ValueError("num_frames + motion_frames exceeds motion.max_seq_length")
        return self


_SECTION_TYPES = {
    "latent": LatentConfig, "unet": UNetConfig, "motion": MotionConfig, "pose": PoseConfig,
    "image_encoder": ImageEncoderConfig, "audio": AudioConfig, "iad": IADConfig,
    "scheduler": SchedulerConfig,
}


def _build(cls, data: dict, where: str):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown key(s) in {where}: {sorted(unknown)} (known: {sorted(known)})")
    return cls(**data)


def config_from_dict(data: dict, where: str = "config") -> CovOGConfig:
    """Build and validate a :class:`CovOGConfig` from a (YAML-loaded) dict."""
    top = {}
    for key, value in data.items():
        if key in _SECTION_TYPES:
            top[key] = _build(_SECTION_TYPES[key], value or {}, f"{where}:{key}")
        else:
            top[key] = value
    return _build(CovOGConfig, top, where).validate()


def load_config(name_or_path: str) -> CovOGConfig:
    """``"tiny"`` / ``"paper"`` -> ``talkset/covog/configs/<name>.yaml``; anything else is a YAML path.

    Raises FileNotFoundError for a missing file, ValueError for unknown keys or blocks that do
    not fit together.
    """
    p = Path(name_or_path)
    if p.suffix not in (".yaml", ".yml") and not p.exists():
        p = CONFIG_DIR / f"{name_or_path}.yaml"
    if not p.is_file():
        shipped = sorted(q.stem for q in CONFIG_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"CovOG config not found: {p} (shipped configs: {shipped})")
    with open(p) as fh:
        data = yaml.safe_load(fh) or {}
    return config_from_dict(data, str(p))
