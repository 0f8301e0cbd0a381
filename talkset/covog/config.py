"""Sizes of the CovOG networks, read from YAML (``talkset/covog/configs/<name>.yaml``).

Configs ship: ``tiny`` (trains on one CPU core; parameter-free pixel-unshuffle latent) and
``paper`` (MIT paper Sec. 4: AnimateAnyone on Stable Diffusion 1.5 at 640x384 (width x height,
landscape: multi-person talk-show footage is 16:9), 15 frames,
6 motion frames; wav2vec2 12 x 768 audio features projected to 32 tokens x 1024), and the
AnimateAnyone baseline of the paper's Table 2 at both sizes (``paper_animateanyone``,
``tiny_animateanyone``: ``base`` + ``variant: animateanyone``).

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
    ``len(channels) - 1`` stride-2 convs: ``2 ** (len - 1)`` must equal the latent factor.

    ``adaptor_per_person`` True: the pose adaptor in MPE form, as the seed's long-video pipeline
    runs it (``pipeline_pose2vid_audio_long.py``: ``sum_i pose_adaptor(ref_pose * instance_bbox_i)``):
    the adaptor is applied to each person's reference pose under their instance mask and the
    embeddings are summed. False: one adaptor on the joint reference pose (talkset before issue 13).
    """

    guider_channels: list[int] = field(default_factory=lambda: [16, 32])
    adaptor_channels: list[int] = field(default_factory=lambda: [8, 16])
    adaptor_per_person: bool = True


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


#: IAD placements by name: (down blocks, up blocks) of an SD 1.5-shaped (4-block) UNet.
#: ``seed``: the official code (``unet_3d_audio.py``: audio modules after down blocks 0-2 and up
#: blocks 0-1, ``down_radio_list = [1, 2, 3]``, ``up_radio_list = [2, 1]``); ``up``: after every up
#: block ("after the denoising blocks"; talkset's placement before issue 13).
IAD_PLACEMENTS: dict[str, tuple[list[int], list[int]]] = {
    "seed": ([0, 1, 2], [0, 1]),
    "up": ([], [0, 1, 2, 3]),
}

#: Face-mask kinds for the IAD (see :mod:`talkset.covog.face_mask`): ``landmarks`` = the seed's
#: (box of four face landmarks scaled 1.4 x 1.6, kept inside the person's upper-body box);
#: ``box`` = the face box as given (face detector / head keypoints; talkset before issue 13).
FACE_MASK_KINDS = ("landmarks", "box")


@dataclass
class IADConfig:
    """Interactive Audio Driver: attention heads, speaking-score gate MLP width, the indices of
    the denoising UNet's down blocks and up blocks it follows (one IAD after each), and the kind
    of face mask the data side should build (``landmarks`` or ``box``, :data:`FACE_MASK_KINDS`).
    Placements by name: :data:`IAD_PLACEMENTS`."""

    heads: int = 2
    gate_hidden: int = 16
    up_blocks: list[int] = field(default_factory=lambda: [0, 1])
    down_blocks: list[int] = field(default_factory=list)
    face_mask: str = "landmarks"


@dataclass
class SamplingConfig:
    """Sampling defaults, from the seed's inference script (``inference.py``: ``--cfg 3.5``,
    ``--steps 30``; its long-video defaults ``-L 25 --motion_frame_num 10`` are the option
    ``window=25, motion_frames=10`` of :meth:`CovOG.generate_long`). ``guidance_scale`` <= 1
    turns classifier-free guidance off (one UNet pass per step instead of two)."""

    guidance_scale: float = 3.5
    num_steps: int = 30


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
    between windows at inference. Defaults are the ``tiny`` config's.

    ``variant``: ``covog`` (MIT paper Sec. 4) or ``animateanyone`` (the paper's Table 2 baseline:
    one pose guider on the joint pose image, no pose adaptor, no audio projection, no IAD).
    ``gradient_checkpointing``: recompute the UNet blocks in backward (diffusers' switch) to
    trade ~30 % more compute for far less activation memory (see benchmarks/covog_paper_size.py).
    """

    name: str = "tiny"
    variant: str = "covog"
    gradient_checkpointing: bool = False
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
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

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
        if any(not 0 <= i < n for i in self.iad.down_blocks):
            raise ValueError(f"iad.down_blocks {self.iad.down_blocks} out of range 0..{n - 1}")
        if self.iad.face_mask not in FACE_MASK_KINDS:
            raise ValueError(f"iad.face_mask must be one of {FACE_MASK_KINDS}, got {self.iad.face_mask!r}")
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.sampling.num_steps < 1:
            raise ValueError(f"sampling.num_steps must be >= 1, got {self.sampling.num_steps}")
        if not 0 <= self.motion_frames < self.num_frames:
            raise ValueError(f"motion_frames {self.motion_frames} must be in 0..num_frames-1 ({self.num_frames - 1})")
        if self.image_encoder.kind not in ("clip", "latent_pool"):
            raise ValueError(f"image_encoder.kind must be clip or latent_pool, got {self.image_encoder.kind!r}")
        if self.num_frames + self.motion_frames > self.motion.max_seq_length:
            raise ValueError("num_frames + motion_frames exceeds motion.max_seq_length")
        return self


#: ``variant`` values: the paper's model and the AnimateAnyone baseline of its Table 2.
VARIANTS = ("covog", "animateanyone")

_SECTION_TYPES = {
    "latent": LatentConfig, "unet": UNetConfig, "motion": MotionConfig, "pose": PoseConfig,
    "image_encoder": ImageEncoderConfig, "audio": AudioConfig, "iad": IADConfig,
    "scheduler": SchedulerConfig, "sampling": SamplingConfig,
}


def _build(cls, data: dict, where: str):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"unknown key(s) in {where}: {sorted(unknown)} (known: {sorted(known)})")
    return cls(**data)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _load_yaml(name_or_path: str) -> tuple[dict, Path]:
    p = Path(name_or_path)
    if p.suffix not in (".yaml", ".yml") and not p.exists():
        p = CONFIG_DIR / f"{name_or_path}.yaml"
    if not p.is_file():
        shipped = sorted(q.stem for q in CONFIG_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"CovOG config not found: {p} (shipped configs: {shipped})")
    with open(p) as fh:
        return yaml.safe_load(fh) or {}, p


def config_from_dict(data: dict, where: str = "config") -> CovOGConfig:
    """Build and validate a :class:`CovOGConfig` from a (YAML-loaded) dict. A ``base`` key (a
    config name or YAML path) loads that config first and overrides it key by key (sections
    merge), e.g. ``{base: paper, variant: animateanyone}``."""
    if "base" in data:
        seen = {where}
        data = dict(data)
        while "base" in data:
            base_name = data.pop("base")
            base, bp = _load_yaml(str(base_name))
            if str(bp) in seen:
                raise ValueError(f"{where}: config base loop at {bp}")
            seen.add(str(bp))
            data = _merge(base, data)
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
    data, p = _load_yaml(name_or_path)
    return config_from_dict(data, str(p))
