"""CovOG: the MIT paper's baseline (Sec. 4) - AnimateAnyone with a Multi-Human Pose Encoder and
an Interactive Audio Driver.

Blocks (one file each): :class:`~talkset.covog.reference_net.ReferenceNet` (2D UNet on the reference
latent, reference attention), :class:`~talkset.covog.denoising_unet.DenoisingUNet` (2D UNet +
AnimateDiff motion modules), :class:`~talkset.covog.pose_guider.PoseGuider` (pose guider; pose adaptor
is a smaller one), :class:`~talkset.covog.multi_pose_encoder.MultiPoseEncoder` (MPE, Eq. 1),
:class:`~talkset.covog.audio_projection.AudioProjection` and
:class:`~talkset.covog.audio_driver.InteractiveAudioDriver` (IAD, Eq. 2).

Data flow for one sample (B samples, F frames, P people, image H x W, latent h x w = H/s x W/s):

- latents: ``encode`` (SD 1.5 VAE mean x 0.18215 in ``paper``; exact pixel-unshuffle by 2 in
  ``tiny``, 12 channels in [-1, 1], so ``decode(encode(x)) == x``);
- cross-attention context (B, S, D): CLIP image embedding of the reference (``paper``; the
  image is resized to 224 x 224 and CLIP-normalised) or a learned projection of the reference
  latent pooled to 2 x 2 tokens (``tiny``; no CLIP weights here);
- ReferenceNet(reference latent, t = 0, context, + pose adaptor features after conv_in) -> reference
  bank; the pose adaptor in MPE form as the seed runs it (``cfg.pose.adaptor_per_person``):
  ``sum_i PoseAdaptor(ref_pose * instance_mask_i)`` (``batch["ref_pose_people"]``), else on the
  joint reference pose;
- pose features (B * F, C0, h, w): MPE over the per-person pose images (``use_mpe=False``: one
  pose guider on the joint pose image);
- IAD after the down blocks in ``cfg.iad.down_blocks`` and the up blocks in ``cfg.iad.up_blocks``
  (paper config: the seed's placement, down 0-2 and up 0-1; ``IAD_PLACEMENTS["up"]`` is the earlier
  "after every up block"); audio tokens from ``AudioProjection(batch["audio"])``;
- denoising UNet predicts v (or epsilon, per config) of the noised target latents.

Variants (``cfg.variant`` / ``variant=``): ``covog``; ``animateanyone``, the AnimateAnyone baseline of
the paper's Table 2 (one pose guider on the joint pose image, no pose adaptor, no audio projection,
no IAD: it reads only ``ref_image``, ``pose_joint`` and ``target``). Ablations ``use_mpe=False`` /
``use_iad=False`` keep the pose adaptor. :attr:`CovOG.ablation` names the combination.

Sampling (:meth:`CovOG.generate_window`, :meth:`CovOG.generate_long`), as the seed's long-video
pipeline (``pipeline_pose2vid_audio_long.py`` + ``inference.py``): DDIM, classifier-free guidance
``cfg.sampling.guidance_scale`` (3.5; the unconditional branch has a zero image embedding for both
UNets, everything else kept), ``cfg.sampling.num_steps`` (30); windows of the training length
(15 frames) stride 15 - 6: the first k = 6 latents of a window are the clean latents of the previous
window's last 6 generated frames, set before the first step and reset after every step, with those
frames' own pose, audio and face masks; outputs of overlapping windows are averaged.

Training stages (paper; AnimateAnyone): stage 1 trains ReferenceNet, the denoising UNet without
motion modules and the pose guider + pose adaptor on frames as independent images (motion modules
bypassed, IAD off); stage 2 trains the motion modules and the IAD (+ audio projection) with
everything else frozen.

Noise schedule and target (``scheduler`` in the config), as Moore-AnimateAnyone trains with
``enable_zero_snr``: SD 1.5's scaled-linear betas rescaled to zero terminal SNR, v-prediction,
trailing timesteps; the same schedule trains (DDPMScheduler) and samples (DDIMScheduler).
Epsilon prediction is supported (``prediction_type: epsilon``), but it is ill-conditioned where
sampling starts: DDIM's x0 estimate is ``(x_t - sqrt(1 - a) eps) / sqrt(a)``, so at t = 999
(a = 0.0016 with linear betas, 0 with zero terminal SNR) an eps error is amplified 25x (or
without bound); the tiny model overfitted on one batch for 400 steps then samples saturated
noise (PSNR 4.7 dB vs 13.2 dB with v, flat grey 8.8 dB). :meth:`CovOG.generate` refuses
epsilon with zero terminal SNR.

Scale: every attention is ``F.scaled_dot_product_attention`` (diffusers ``AttnProcessor2_0``: flash /
memory-efficient kernels on GPUs); ``cfg.gradient_checkpointing`` / :meth:`CovOG.set_gradient_checkpointing`
recomputes resnets, spatial and temporal transformer blocks and IADs in backward; bf16: batch inputs
are cast to the model's dtype, the loss is computed in float32 (run under ``torch.autocast`` or
with ``model.to(torch.bfloat16)``). The training recipe (reference dropout through ``uncond=`` of
:meth:`CovOG.noise_prediction`, noise offset, min-SNR weighting, optimizers) lives in
:mod:`talkset.training`. Motion-module weights load from a diffusers ``MotionAdapter`` folder; an
original AnimateDiff ``.ckpt`` must be converted first.

Not as the seed (documented): one IAD attention layer per placement (the seed stacks 1-3
transformer layers per audio block: depth ``[1, 2, 3]`` down, ``[2, 1]`` up).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler
from torch import nn

from talkset.covog.audio_driver import InteractiveAudioDriver
from talkset.covog.audio_projection import AudioProjection
from talkset.covog.config import VARIANTS, CovOGConfig, load_config
from talkset.covog.denoising_unet import DenoisingUNet, build_reference_unet
from talkset.covog.multi_pose_encoder import MultiPoseEncoder, sum_over_people
from talkset.covog.pose_guider import PoseGuider
from talkset.covog.reference_net import ReferenceNet
from talkset.weights import WeightsNotFound, resolve

log = logging.getLogger(__name__)

# name -> (what belongs there, "dir" | "file")
WEIGHTS = {
    "vae": ("SD 1.5 VAE folder in diffusers layout (AutoencoderKL config.json + weights), "
            "e.g. stabilityai/sd-vae-ft-mse", "dir"),
    "unet": ("SD 1.5 UNet folder in diffusers layout (stable-diffusion-v1-5/unet): initialises "
             "ReferenceNet and the denoising UNet's spatial layers", "dir"),
    "motion_module": ("AnimateDiff motion module as a diffusers MotionAdapter folder "
                      "(e.g. guoyww/animatediff-motion-adapter-v1-5-2)", "dir"),
    "image_encoder": ("CLIP image encoder folder (transformers CLIPVisionModelWithProjection, e.g. "
                      "lambdalabs/sd-image-variations-diffusers/image_encoder)", "dir"),
    "reference_unet": ("AnimateAnyone ReferenceNet state dict (Moore-AnimateAnyone reference_unet.pth)", "file"),
    "denoising_unet": ("AnimateAnyone denoising UNet state dict (Moore-AnimateAnyone denoising_unet.pth; "
                       "its spatial keys are loaded)", "file"),
    "pose_guider": ("AnimateAnyone pose guider state dict (Moore-AnimateAnyone pose_guider.pth)", "file"),
    "pose_adaptor": ("pose adaptor state dict (the seed's pose_adaptor-<step>.pth; PoseGuider layout)", "file"),
    "covog": ("a CovOG state dict saved from this class (torch.save(model.state_dict(), path))", "file"),
}

_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _sd15_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512), sample_size=512, scaling_factor=0.18215,
    )


class LatentPoolContext(nn.Module):
    """Tiny config's cross-attention context: reference latent (B, C, h, w) -> average pool to
    grid x grid -> Linear(C, D) -> (B, grid**2, D)."""

    def __init__(self, channels: int, dim: int, grid: int = 2):
        super().__init__()
        self.grid = grid
        self.proj = nn.Linear(channels, dim)

    def forward(self, ref_latent: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(ref_latent, self.grid).flatten(2).transpose(1, 2)
        return self.proj(x)


class ClipImageContext(nn.Module):
    """Paper config's cross-attention context: reference image (B, 3, H, W) in [-1, 1] ->
    resized to size x size, CLIP-normalised -> CLIPVisionModelWithProjection.image_embeds
    (B, 1, projection_dim), as AnimateAnyone conditions both UNets on the CLIP image embedding."""

    def __init__(self, cfg):
        super().__init__()
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        self.size = cfg.image_size
        self.model = CLIPVisionModelWithProjection(CLIPVisionConfig(
            hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
            num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
            image_size=cfg.image_size, patch_size=cfg.patch_size, projection_dim=cfg.projection_dim,
        ))
        self.register_buffer("mean", torch.tensor(_CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_CLIP_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, ref_image: torch.Tensor) -> torch.Tensor:
        x = (ref_image + 1) / 2
        x = F.interpolate(x, size=(self.size, self.size), mode="bicubic", align_corners=False,
                          antialias=x.device.type != "meta").clamp(0, 1)
        x = (x - self.mean.to(x)) / self.std.to(x)
        return self.model(pixel_values=x).image_embeds[:, None]


class CovOG(nn.Module):
    """CovOG (MIT paper Sec. 4). See the module docstring for the data flow.

    ``use_mpe=False``: one pose guider on ``batch["pose_joint"]`` (ablation "no MPE");
    ``use_iad=False``: no audio projection, no IAD (ablation "no IAD");
    ``variant`` None -> ``cfg.variant``; ``"animateanyone"`` forces ``use_mpe=False, use_iad=False``
    and has no pose adaptor (the Table 2 baseline).

    Batch (torch tensors, float32 unless noted): ``ref_image`` (B, 3, H, W) [-1, 1];
    ``ref_pose`` (B, 3, H, W) [0, 1]; ``target`` (B, F, 3, H, W) [-1, 1] (training only);
    ``pose_people`` (B, F, P, 3, H, W) [0, 1]; ``pose_joint`` (B, F, 3, H, W) [0, 1];
    ``people_mask`` (B, P) bool; ``face_masks`` (B, F, P, H, W) {0, 1};
    ``audio`` (B, F, cfg.audio.layers, cfg.audio.dim); ``speaking`` (B, F, P) in [-1, 1], NaN
    where unknown (that person adds nothing to the IAD in that frame); optional ``ref_pose_people``
    (B, P, 3, H, W) [0, 1], the reference pose under each person's instance mask (the pose adaptor's
    MPE input; without it the adaptor runs on ``ref_pose``, logged once). Face masks: build them
    with :func:`talkset.covog.face_mask.face_masks` (kind ``cfg.iad.face_mask``).
    """

    def __init__(self, cfg: CovOGConfig, use_mpe: bool = True, use_iad: bool = True, variant: str | None = None):
        super().__init__()
        cfg.validate()
        variant = variant or cfg.variant
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if variant == "animateanyone":
            use_mpe, use_iad = False, False
        self.variant = variant
        self.cfg, self.use_mpe, self.use_iad = cfg, use_mpe, use_iad
        self._warned_joint_adaptor = False
        c0 = cfg.unet.block_out_channels[0]
        self.vae = _sd15_vae() if cfg.latent.kind == "vae" else None
        if self.vae is not None:
            self.vae.requires_grad_(False)
        self.denoising_unet = DenoisingUNet.from_config(cfg)
        self.reference_net = ReferenceNet(build_reference_unet(cfg), self.denoising_unet.reference_layer_names)
        self.pose_encoder = MultiPoseEncoder(PoseGuider(c0, 3, cfg.pose.guider_channels))
        self.pose_adaptor = PoseGuider(c0, 3, cfg.pose.adaptor_channels) if variant != "animateanyone" else None
        ie = cfg.image_encoder
        if ie.kind == "clip":
            self.image_context = ClipImageContext(ie)
            self.image_context.requires_grad_(False)
        else:
            self.image_context = LatentPoolContext(cfg.latent.channels, cfg.unet.cross_attention_dim, ie.grid)
        a = cfg.audio
        if use_iad:
            self.audio_projection = AudioProjection(a.layers, a.dim, a.context, a.hidden, a.tokens, a.token_dim)
            up_channels = list(reversed(cfg.unet.block_out_channels))
            # keys: "<i>" after up block i (the names before issue 13), "down<i>" after down block i
            drivers = {str(i): InteractiveAudioDriver(up_channels[i], a.token_dim, cfg.iad.heads, cfg.iad.gate_hidden)
                       for i in cfg.iad.up_blocks}
            drivers.update({f"down{i}": InteractiveAudioDriver(cfg.unet.block_out_channels[i], a.token_dim,
                                                               cfg.iad.heads, cfg.iad.gate_hidden)
                            for i in cfg.iad.down_blocks})
            self.audio_drivers = nn.ModuleDict(drivers)
        else:
            self.audio_projection, self.audio_drivers = None, None
        with torch.device("cpu"):
            self.noise_scheduler = DDPMScheduler(**vars(cfg.scheduler))
        self._ref_used: set[str] | None = None
        self._checkpointing = False
        if cfg.gradient_checkpointing:
            self.set_gradient_checkpointing(True)

    @property
    def ablation(self) -> str:
        """``"animateanyone"``, ``""`` (full CovOG), or ``"no-mpe"`` / ``"no-iad"`` / ``"no-mpe-no-iad"``
        (the ``ablation`` column of the ``eval`` table)."""
        if self.variant == "animateanyone":
            return "animateanyone"
        return "-".join(p for p, on in (("no-mpe", self.use_mpe), ("no-iad", self.use_iad)) if not on)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute activations in backward: ReferenceNet and denoising UNet blocks (diffusers),
        motion modules and IADs. Saves most activation memory for ~30 % more compute."""
        self._checkpointing = bool(enabled)
        self.denoising_unet.set_gradient_checkpointing(enabled)
        if enabled:
            self.reference_net.unet.enable_gradient_checkpointing()
        else:
            self.reference_net.unet.disable_gradient_checkpointing()

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_config(cls, name_or_path: str, weights: dict[str, str] | None = None, **kw) -> "CovOG":
        """Build from a config name (``tiny`` / ``paper``) or YAML path, then load ``weights``
        (keys: see :data:`WEIGHTS`; values: local paths). With no weights every block is
        randomly initialised. ``kw``: ``use_mpe``, ``use_iad``, ``variant``.

        Raises WeightsNotFound (naming the path and what belongs there) for a missing path,
        ValueError for an unknown key or a state dict that does not fit.
        """
        cfg = load_config(name_or_path)
        weights = {k: v for k, v in (weights or {}).items() if v}
        unknown = sorted(set(weights) - set(WEIGHTS))
        if unknown:
            raise ValueError(f"unknown weights key(s) {unknown}; known: {sorted(WEIGHTS)}")
        paths = {k: _check_path(k, v) for k, v in weights.items()}  # fail before building
        if "vae" in paths and cfg.latent.kind != "vae":
            raise ValueError(f"config {cfg.name!r} uses a {cfg.latent.kind} latent: a VAE cannot be loaded")
        if "image_encoder" in paths and cfg.image_encoder.kind != "clip":
            raise ValueError(f"config {cfg.name!r} has no CLIP image encoder to load")
        if "pose_adaptor" in paths and (kw.get("variant") or cfg.variant) == "animateanyone":
            raise ValueError("the animateanyone variant has no pose adaptor to load")
        model = cls(cfg, **kw)
        model.load_weights(paths)
        return model

    def load_weights(self, paths: dict[str, Path]) -> None:
        """Load checked local paths (see :meth:`from_config`)."""
        if "vae" in paths:
            self.vae = AutoencoderKL.from_pretrained(paths["vae"]).requires_grad_(False)
        if "image_encoder" in paths:
            from transformers import CLIPVisionModelWithProjection

            self.image_context.model = CLIPVisionModelWithProjection.from_pretrained(paths["image_encoder"])
            self.image_context.requires_grad_(False)
        if "unet" in paths:
            from diffusers import UNet2DConditionModel

            sd = UNet2DConditionModel.from_pretrained(paths["unet"]).state_dict()
            _load_into(self.reference_net.unet, sd, "unet -> ReferenceNet", strict=True)
            _load_into(self.denoising_unet.unet, sd, "unet -> denoising UNet")
        if "motion_module" in paths:
            from diffusers import MotionAdapter

            sd = MotionAdapter.from_pretrained(paths["motion_module"]).state_dict()
            _load_into(self.denoising_unet.unet, sd, "motion_module -> denoising UNet")
        for key, target, strict in (("reference_unet", self.reference_net.unet, True),
                                    ("denoising_unet", self.denoising_unet.unet, False),
                                    ("pose_guider", self.pose_encoder.guider, True),
                                    ("pose_adaptor", self.pose_adaptor, True),
                                    ("covog", self, True)):
            if key in paths:
                sd = torch.load(paths[key], map_location="cpu", weights_only=True)
                _load_into(target, sd, key, strict=strict)

    # ----------------------------------------------------------------- parameters
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """dtype of the denoising UNet's parameters: batch inputs are cast to it."""
        return next(self.denoising_unet.parameters()).dtype

    @property
    def pose_guider(self) -> PoseGuider:
        """The pose guider shared by all people (MPE) or run on the joint pose image."""
        return self.pose_encoder.guider

    def _trainable_names(self, stage: int) -> set[str]:
        names = {n for n, _ in self.named_parameters()}
        motion = {f"denoising_unet.{n}" for n in self.denoising_unet.motion_parameter_names()}
        if stage == 1:
            if self._ref_used is None:
                self._ref_used = self.reference_net.used_parameter_names()
            keep = {f"reference_net.unet.{n}" for n in self._ref_used}
            keep |= {n for n in names if n.startswith("denoising_unet.") and n not in motion}
            keep |= {n for n in names if n.startswith(("pose_encoder.", "pose_adaptor."))}
            if self.cfg.image_encoder.kind != "clip":
                keep |= {n for n in names if n.startswith("image_context.")}
            return keep
        if stage == 2:
            return motion | {n for n in names if n.startswith(("audio_projection.", "audio_drivers."))}
        raise ValueError(f"stage must be 1 or 2, got {stage}")

    def trainable_parameters(self, stage: int) -> list[nn.Parameter]:
        """Parameters trained in ``stage`` (1: ReferenceNet - the parts whose output is used -,
        denoising UNet without motion modules, pose guider, pose adaptor, tiny's context
        projection; 2: motion modules, IAD, audio projection).

        Side effect: sets ``requires_grad`` True on exactly these parameters and False on all
        others, so a backward of :meth:`training_loss` fills only their ``.grad``.
        """
        keep = self._trainable_names(stage)
        if not keep and stage == 2:
            raise ValueError("stage 2 has nothing to train (no motion modules, no IAD)")
        out = []
        for n, p in self.named_parameters():
            p.requires_grad_(n in keep)
            if n in keep:
                out.append(p)
        return out

    # ----------------------------------------------------------------- latents
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> scaled latents (N, C, H / s, W / s). VAE: posterior mean."""
        lat = self.cfg.latent
        if lat.kind == "pixel_unshuffle":
            return F.pixel_unshuffle(images.to(self.dtype), lat.factor) * lat.scaling_factor
        vdt = next(self.vae.parameters()).dtype
        with torch.no_grad():
            out = [self.vae.encode(x.to(vdt)).latent_dist.mean for x in images.split(8)]
        return torch.cat(out).to(self.dtype) * lat.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`encode`: (N, C, h, w) -> images (N, 3, H, W) in [-1, 1] (VAE output
        clamped; pixel-unshuffle is exact)."""
        lat = self.cfg.latent
        if lat.kind == "pixel_unshuffle":
            return F.pixel_shuffle(latents / lat.scaling_factor, lat.factor)
        vdt = next(self.vae.parameters()).dtype
        with torch.no_grad():
            out = [self.vae.decode((z / lat.scaling_factor).to(vdt)).sample for z in latents.split(4)]
        return torch.cat(out).clamp(-1, 1)

    def _encode_video(self, video: torch.Tensor) -> torch.Tensor:
        """(B, F, 3, H, W) -> (B, C, F, h, w)."""
        b, f = video.shape[:2]
        return self.encode(video.flatten(0, 1)).unflatten(0, (b, f)).permute(0, 2, 1, 3, 4)

    # ----------------------------------------------------------------- conditions
    def _context(self, ref_image: torch.Tensor, ref_latent: torch.Tensor) -> torch.Tensor:
        if isinstance(self.image_context, ClipImageContext):
            cdt = next(self.image_context.parameters()).dtype
            return self.image_context(ref_image.to(cdt)).to(self.dtype)
        return self.image_context(ref_latent)

    def adaptor_features(self, batch: dict) -> torch.Tensor | None:
        """Pose adaptor features (B, C0, h, w) for ReferenceNet, None for the AnimateAnyone variant.
        MPE form (``cfg.pose.adaptor_per_person``, full model): the adaptor summed over
        ``batch["ref_pose_people"]`` (B, P, 3, H, W) under ``people_mask``; else (no MPE ablation,
        the option off, or no ``ref_pose_people`` in the batch) on the joint ``ref_pose``."""
        if self.pose_adaptor is None:
            return None
        dev, dt = self.device, self.dtype
        if self.use_mpe and self.cfg.pose.adaptor_per_person:
            if "ref_pose_people" in batch:
                return sum_over_people(self.pose_adaptor, batch["ref_pose_people"].to(dev, dt),
                                       batch["people_mask"].to(dev).to(torch.bool))
            if not self._warned_joint_adaptor:
                log.warning("batch has no ref_pose_people: the pose adaptor runs on the joint ref_pose "
                            "(not the seed's per-person form)")
                self._warned_joint_adaptor = True
        return self.pose_adaptor(batch["ref_pose"].to(dev, dt))

    def reference(self, batch: dict, ref_latent: torch.Tensor, context: torch.Tensor):
        """Run ReferenceNet with the pose adaptor features -> ReferenceBank."""
        cond = self.adaptor_features(batch)
        t0 = torch.zeros(ref_latent.shape[0], dtype=torch.long, device=ref_latent.device)
        return self.reference_net(ref_latent, t0, context, cond)

    def pose_features(self, batch: dict) -> torch.Tensor:
        """MPE (or, without MPE, the pose guider on the joint pose image) -> (B * F, C0, h, w)."""
        dev, dt = self.device, self.dtype
        if not self.use_mpe:
            return self.pose_guider(batch["pose_joint"].to(dev, dt).flatten(0, 1))
        pp = batch["pose_people"].to(dev, dt)
        b, f, p = pp.shape[:3]
        pm = batch["people_mask"].to(dev).to(torch.bool)[:, None].expand(b, f, p)
        return self.pose_encoder(pp.flatten(0, 1), pm.flatten(0, 1))

    def _audio_up_fn(self, batch: dict, prefix: int = 0):
        """IAD callable after the up blocks for DenoisingUNet (None without IAD); see :meth:`_audio_fns`."""
        return self._audio_fns(batch, prefix)[1]

    def _audio_fns(self, batch: dict, prefix: int = 0):
        """(down_fn, up_fn): IAD callables for DenoisingUNet ((None, None) without IAD). ``prefix``
        frames (motion frames in :meth:`generate`'s prepend mode) are prepended with no audio, no
        faces and unknown speaking scores."""
        if not self.use_iad:
            return None, None
        dev = self.device
        audio = batch["audio"].to(dev)
        speaking = batch["speaking"].to(dev).float()
        masks = batch["face_masks"].to(dev)
        b, f, p = speaking.shape
        if prefix:
            audio = torch.cat([audio.new_zeros((b, prefix) + audio.shape[2:]), audio], 1)
            speaking = torch.cat([speaking.new_full((b, prefix, p), float("nan")), speaking], 1)
            masks = torch.cat([masks.new_zeros((b, prefix) + masks.shape[2:]), masks], 1)
            f += prefix
        pdt = next(self.audio_projection.parameters()).dtype
        tokens = self.audio_projection(audio.to(pdt)).flatten(0, 1)  # (B*F, T, D)
        people = batch["people_mask"].to(dev).to(torch.bool)[:, None].expand(b, f, p).flatten(0, 1)
        speaking, masks = speaking.flatten(0, 1), masks.flatten(0, 1)
        drivers = self.audio_drivers
        ckpt = self._checkpointing

        def run(key: str, hidden: torch.Tensor) -> torch.Tensor:
            if key not in drivers:
                return hidden
            if ckpt and torch.is_grad_enabled():
                return torch.utils.checkpoint.checkpoint(drivers[key], hidden, tokens, speaking, masks, people,
                                                         use_reentrant=False)
            return drivers[key](hidden, tokens, speaking, masks, people)

        return (lambda i, hidden: run(f"down{i}", hidden)), (lambda i, hidden: run(str(i), hidden))

    # ----------------------------------------------------------------- training
    def training_loss(self, batch: dict, stage: int, generator: torch.Generator | None = None,
                      timesteps: torch.Tensor | None = None) -> torch.Tensor:
        """Diffusion loss: MSE between the denoising UNet's prediction and its target for the
        target latents noised at a random timestep (one per sample): ``v = sqrt(a) eps -
        sqrt(1 - a) x0`` for ``prediction_type: v_prediction`` (both shipped configs), the noise
        ``eps`` for ``epsilon``. ``generator`` fixes noise and timesteps; ``timesteps`` (B,) or
        scalar long overrides the random ones. Returns a float32 scalar."""
        pred, want = self.noise_prediction(batch, stage, generator, timesteps)
        return F.mse_loss(pred.float(), want.float())

    def noise_prediction(self, batch: dict, stage: int, generator: torch.Generator | None = None,
                         timesteps: torch.Tensor | None = None, uncond: torch.Tensor | None = None):
        """The two sides of :meth:`training_loss`: (prediction, target), each (B, C, F, h, w).
        ``timesteps`` (B,) long: use these instead of random ones (diagnostics, tests).
        ``uncond`` (B,) bool or None: samples trained unconditionally (reference dropout, the seed's
        ``uncond_ratio``): their image embedding (cross-attention context of both UNets) is zero,
        the unconditional branch classifier-free guidance samples with."""
        if stage not in (1, 2):
            raise ValueError(f"stage must be 1 or 2, got {stage}")
        dev, dt = self.device, self.dtype
        target = batch["target"].to(dev)
        b = target.shape[0]
        lat = self._encode_video(target)  # (B, C, F, h, w)
        gdev = generator.device if generator is not None else torch.device("cpu")
        noise = torch.randn(lat.shape, generator=generator, device=gdev).to(dev, lat.dtype)
        t = torch.randint(0, self.cfg.scheduler.num_train_timesteps, (b,), generator=generator, device=gdev).to(dev)
        if timesteps is not None:
            t = torch.as_tensor(timesteps, dtype=torch.long, device=dev).reshape(-1).expand(b)
        ac = self.noise_scheduler.alphas_cumprod.to(dev)[t].view(b, 1, 1, 1, 1).to(lat.dtype)
        noisy = ac.sqrt() * lat + (1 - ac).sqrt() * noise
        want = noise if self.cfg.scheduler.prediction_type == "epsilon" else ac.sqrt() * noise - (1 - ac).sqrt() * lat

        ref_image = batch["ref_image"].to(dev, dt)
        with torch.set_grad_enabled(torch.is_grad_enabled() and stage == 1):
            ref_latent = self.encode(ref_image)
            context = self._context(ref_image, ref_latent)
            if uncond is not None:
                drop = torch.as_tensor(uncond, device=dev).to(torch.bool).view(b, 1, 1)
                context = torch.where(drop, torch.zeros((), dtype=context.dtype, device=dev), context)
            bank = self.reference(batch, ref_latent, context)
            pose = self.pose_features(batch)
        self.denoising_unet.set_motion(stage == 2)
        down_fn, up_fn = self._audio_fns(batch) if stage == 2 else (None, None)
        return self.denoising_unet(noisy, t, context, pose, bank, up_fn, down_fn), want

    # ----------------------------------------------------------------- inference
    def _check_sampling(self) -> None:
        s = self.cfg.scheduler
        if s.rescale_betas_zero_snr and s.prediction_type == "epsilon":
            raise ValueError("cannot sample with prediction_type epsilon and zero terminal SNR (x0 = "
                             "(x_t - eps) / 0 at t = 999): use v_prediction or rescale_betas_zero_snr: false")

    def _sample(self, batch: dict, num_steps: int, generator, guidance_scale: float,
                prefix: torch.Tensor | None = None, fixed: torch.Tensor | None = None) -> torch.Tensor:
        """DDIM (eta 0) with classifier-free guidance; returns the final latents (B, C, K + F, h, w).
        ``prefix`` (B, K, 3, H, W): frames prepended (noised to each step's level, zero pose, no
        audio; :meth:`generate`'s mode). ``fixed`` (B, k, 3, H, W): clean frames for the window's first
        k frames: their latents are set before the first step and reset after every step (the seed's
        mode, :meth:`generate_window`)."""
        self._check_sampling()
        dev, cfg = self.device, self.cfg
        ref_image = batch["ref_image"].to(dev, self.dtype)
        b = ref_image.shape[0]
        poses = batch["pose_people"] if self.use_mpe else batch["pose_joint"]
        f = poses.shape[1]
        k = 0 if prefix is None else prefix.shape[1]
        h, w = ref_image.shape[-2] // cfg.latent.factor, ref_image.shape[-1] // cfg.latent.factor
        cfg_on = guidance_scale > 1.0

        ref_latent = self.encode(ref_image)
        context = self._context(ref_image, ref_latent)
        cond_batch = batch
        if cfg_on:  # [unconditional, conditional]: zero image embedding, all else the same (seed)
            cond_batch = {key: torch.cat([v, v]) if torch.is_tensor(v) else v for key, v in batch.items()
                          if key != "target"}
            context = torch.cat([torch.zeros_like(context), context])
            ref_latent = torch.cat([ref_latent, ref_latent])
        nb = ref_latent.shape[0]
        bank = self.reference(cond_batch, ref_latent, context)
        pose = self.pose_features(cond_batch).unflatten(0, (nb, f))
        if k:
            pose = torch.cat([pose.new_zeros((nb, k) + pose.shape[2:]), pose], 1)
        pose = pose.flatten(0, 1)
        down_fn, up_fn = self._audio_fns(cond_batch, prefix=k)
        self.denoising_unet.set_motion(True)

        with torch.device("cpu"):
            sched = DDIMScheduler(**vars(cfg.scheduler))
        sched.set_timesteps(num_steps, device=dev)
        gdev = generator.device if generator is not None else torch.device("cpu")
        shape = (b, cfg.latent.channels, k + f, h, w)
        latents = (torch.randn(shape, generator=generator, device=gdev).to(dev) * sched.init_noise_sigma).to(self.dtype)
        if k:
            mf_latent = self._encode_video(prefix.to(dev))
            mf_noise = torch.randn(mf_latent.shape, generator=generator, device=gdev).to(dev, mf_latent.dtype)
        kf = 0
        if fixed is not None:
            fixed_latent = self._encode_video(fixed.to(dev))
            kf = fixed_latent.shape[2]
            latents[:, :, :kf] = fixed_latent
        for t in sched.timesteps:
            if k:
                latents[:, :, :k] = sched.add_noise(mf_latent, mf_noise, t.view(1))
            x = sched.scale_model_input(latents, t)
            x = torch.cat([x, x]) if cfg_on else x
            out = self.denoising_unet(x, t.to(dev).expand(nb), context, pose, bank, up_fn, down_fn)
            if cfg_on:
                uncond, cond = out.chunk(2)
                out = uncond + guidance_scale * (cond - uncond)
            latents = sched.step(out.float(), t, latents.float()).prev_sample.to(self.dtype)
            if kf:
                latents[:, :, :kf] = fixed_latent
        return latents

    @torch.no_grad()
    def generate(self, batch: dict, num_steps: int | None = None, motion_frames: torch.Tensor | None = None,
                 generator: torch.Generator | None = None, guidance_scale: float | None = None) -> torch.Tensor:
        """DDIM sampling (eta 0) of one window -> (B, F, 3, H, W) in [-1, 1], F = frames of
        ``batch["pose_people"]`` (or ``pose_joint``). ``num_steps`` / ``guidance_scale`` None -> the
        config's ``sampling`` (paper: 30 steps, guidance 3.5; tiny: 20, none).

        ``motion_frames`` (B, K, 3, H, W), talkset's mode before issue 13 (kept for callers that
        generate non-overlapping windows): the last K generated frames of the previous window are
        prepended as K extra frames whose latents are, before every denoising step, replaced by their
        clean latents noised to that step's level; their pose features are zero, they have no audio
        or faces; they are dropped from the output. The seed's mode is :meth:`generate_window` /
        :meth:`generate_long`.
        """
        steps = num_steps or self.cfg.sampling.num_steps
        gs = self.cfg.sampling.guidance_scale if guidance_scale is None else guidance_scale
        k = 0 if motion_frames is None else motion_frames.shape[1]
        latents = self._sample(batch, steps, generator, gs, prefix=motion_frames)
        return self._decode_video(latents[:, :, k:])

    def _decode_video(self, latents: torch.Tensor) -> torch.Tensor:
        b, f = latents.shape[0], latents.shape[2]
        video = self.decode(latents.permute(0, 2, 1, 3, 4).flatten(0, 1))
        return video.float().clamp(-1, 1).unflatten(0, (b, f))

    @torch.no_grad()
    def generate_window(self, batch: dict, motion_frames: torch.Tensor | None = None, num_steps: int | None = None,
                        guidance_scale: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """One window as the seed's long-video pipeline samples it -> (B, F, 3, H, W) in [-1, 1].

        ``batch``: a window of F frames (per-frame keys have F frames). ``motion_frames`` (B, k, 3, H, W)
        in [-1, 1], k < F: the previous window's last k generated frames, which ARE the first k frames
        of this window: their clean latents are set before the first step and reset after every step,
        while their own pose, audio, speaking scores and face masks (from ``batch``) are kept. The
        returned first k frames are those latents decoded. ``num_steps`` / ``guidance_scale`` None ->
        ``cfg.sampling``. Raises ValueError when k >= F.
        """
        f = (batch["pose_people"] if self.use_mpe else batch["pose_joint"]).shape[1]
        if motion_frames is not None and motion_frames.shape[1] >= f:
            raise ValueError(f"{motion_frames.shape[1]} motion frames do not fit a window of {f} frames")
        steps = num_steps or self.cfg.sampling.num_steps
        gs = self.cfg.sampling.guidance_scale if guidance_scale is None else guidance_scale
        return self._decode_video(self._sample(batch, steps, generator, gs, fixed=motion_frames))

    @torch.no_grad()
    def generate_long(self, batch: dict, window: int | None = None, motion_frames: int | None = None,
                      num_steps: int | None = None, guidance_scale: float | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """A whole clip, window by window (the seed's ``inference.py`` loop) -> (B, N, 3, H, W) in [-1, 1].

        ``batch``: per-frame keys (``pose_people``, ``pose_joint``, ``audio``, ``speaking``,
        ``face_masks``; ``target`` unused) have N frames; ``ref_image``, ``ref_pose(_people)``,
        ``people_mask`` as for one window. ``window`` None -> ``cfg.num_frames`` (the training length;
        paper 15), ``motion_frames`` None -> ``cfg.motion_frames`` (paper 6); the seed's inference
        defaults are ``window=25, motion_frames=10``. Windows start every ``window - motion_frames``
        frames; each after the first gets the current output of its first k frames as motion frames
        (:meth:`generate_window`); frames generated by several windows are averaged (the seed averages
        a window's first k frames with the previous window's last k). The last window is moved back to
        end at frame N (the seed moves it too, but then keeps misaligned frames); N < window -> one
        window of N frames.
        """
        f_key = "pose_people" if self.use_mpe else "pose_joint"
        n = batch[f_key].shape[1]
        L = min(int(window or self.cfg.num_frames), n)
        k = int(self.cfg.motion_frames if motion_frames is None else motion_frames)
        if not 0 <= k < L:
            raise ValueError(f"motion_frames {k} must be in 0..{L - 1} for windows of {L} frames")
        per_frame = {"pose_people", "pose_joint", "audio", "speaking", "face_masks", "target"}
        total = count = None
        starts, s = [], 0
        while True:
            starts.append(min(s, n - L))
            if s + L >= n:
                break
            s += L - k
        for i, s in enumerate(starts):
            sub = {key: (v[:, s:s + L] if key in per_frame and torch.is_tensor(v) else v) for key, v in batch.items()}
            mf = None
            if i and k:
                mf = (total[:, s:s + k] / count[s:s + k].view(1, -1, 1, 1, 1)).to(total.dtype)
            video = self.generate_window(sub, mf, num_steps, guidance_scale, generator)
            if total is None:
                total = video.new_zeros((video.shape[0], n) + video.shape[2:])
                count = torch.zeros(n, device=video.device)
            total[:, s:s + L] += video
            count[s:s + L] += 1
        return (total / count.view(1, -1, 1, 1, 1)).clamp(-1, 1)


def _check_path(key: str, value) -> Path:
    what, kind = WEIGHTS[key]
    p = Path(value).expanduser()
    if kind == "dir":
        if p.is_dir():
            return p.resolve()
        raise WeightsNotFound(
            f"model folder not found for {key!r}: {p}. Expected: {what}. Put it there or pass its "
            f"path in weights[{key!r}]. Nothing is downloaded at run time."
        )
    return resolve(value, what=f"{key}: {what}")


def _load_into(module: nn.Module, state: dict, what: str, strict: bool = False) -> None:
    """Copy the entries of ``state`` that name parameters/buffers of ``module`` with the same
    shape; raise ValueError if a shape differs, nothing matches, or (strict) keys are missing."""
    own = module.state_dict()
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    match = {k: v for k, v in state.items() if k in own}
    bad = [k for k, v in match.items() if tuple(v.shape) != tuple(own[k].shape)]
    if bad:
        raise ValueError(f"{what}: shape mismatch for {len(bad)} tensors, e.g. {bad[0]}: "
                         f"{tuple(state[bad[0]].shape)} vs {tuple(own[bad[0]].shape)}")
    if not match:
        raise ValueError(f"{what}: no tensor of the file matches this model (keys like {next(iter(state), '-')})")
    missing = [k for k in own if k not in match]
    if strict and missing:
        raise ValueError(f"{what}: {len(missing)} tensors missing from the file, e.g. {missing[:3]}")
    module.load_state_dict(match, strict=False)
    log.info("%s: loaded %d tensors (%d of the model not in the file, %d of the file unused)",
             what, len(match), len(missing), len(state) - len(match))
