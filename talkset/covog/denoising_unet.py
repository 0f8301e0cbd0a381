"""Denoising UNet: SD 1.5 2D UNet inflated with AnimateDiff motion modules (diffusers
``UNetMotionModel``), conditioned as in AnimateAnyone (Hu et al. 2023, Sec. 3) and CovOG (MIT
paper Sec. 4):

- pose features (pose guider / MPE output, (B * F, C0, h, w)) are added to the ``conv_in``
  output;
- spatial self-attention reads ReferenceNet's hidden states (reference attention, see
  :mod:`talkset.covog.reference_net`);
- cross-attention attends to the reference image embedding (CLIP image embedding in the paper
  config), the same for every frame;
- optional callables run after each down block (on its output hidden states, not on the skip
  connections it passes to the up blocks, as the seed's ``unet_3d_audio.py``) and after each up
  block: the Interactive Audio Driver is placed there (``cfg.iad.down_blocks`` / ``up_blocks``);
- the motion modules (temporal transformers) can be switched off: stage 1 trains the spatial
  UNet on frames as independent images, as AnimateAnyone's image stage does.

Randomly initialised motion modules get a zero ``proj_out`` (AnimateDiff's
``zero_initialize``), so they start as the identity.

Attention: every attention layer (spatial, reference, cross, motion) runs diffusers'
``AttnProcessor2_0``, i.e. ``torch.nn.functional.scaled_dot_product_attention``, which picks the
flash / memory-efficient kernel on a GPU. Gradient checkpointing (:meth:`DenoisingUNet.set_gradient_checkpointing`)
is diffusers' own (``enable_gradient_checkpointing``); the per-call conditioning (pose, reference
bank, IAD callables) is kept until the next forward while it is on, because backward re-runs the
checkpointed blocks and their reference-attention processors read the bank again.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.utils.checkpoint
from diffusers import UNet2DConditionModel, UNetMotionModel
from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D
from torch import nn

from talkset.covog.config import CovOGConfig
from talkset.covog.reference_net import (
    ReferenceBank,
    ReferenceReadProcessor,
    spatial_self_attention_names,
)

_MOTION_TYPES = {
    "CrossAttnDownBlock2D": "CrossAttnDownBlockMotion", "DownBlock2D": "DownBlockMotion",
    "CrossAttnUpBlock2D": "CrossAttnUpBlockMotion", "UpBlock2D": "UpBlockMotion",
}


def unet2d_kwargs(cfg: CovOGConfig) -> dict:
    """``UNet2DConditionModel`` arguments for the spatial UNet (ReferenceNet) of ``cfg``."""
    u = cfg.unet
    h, w = cfg.latent_size
    return dict(
        sample_size=max(h, w), in_channels=cfg.latent.channels, out_channels=cfg.latent.channels,
        block_out_channels=tuple(u.block_out_channels), layers_per_block=u.layers_per_block,
        attention_head_dim=u.num_attention_heads, cross_attention_dim=u.cross_attention_dim,
        norm_num_groups=u.norm_num_groups, down_block_types=tuple(u.down_block_types),
        up_block_types=tuple(u.up_block_types),
    )


def motion_unet_kwargs(cfg: CovOGConfig) -> dict:
    """``UNetMotionModel`` arguments for the denoising UNet of ``cfg``."""
    u, m = cfg.unet, cfg.motion
    try:
        down = tuple(_MOTION_TYPES[t] for t in u.down_block_types)
        up = tuple(_MOTION_TYPES[t] for t in u.up_block_types)
    except KeyError as e:
        raise ValueError(f"unsupported UNet block type {e} (supported: {sorted(_MOTION_TYPES)})") from None
    return dict(
        in_channels=cfg.latent.channels, out_channels=cfg.latent.channels,
        down_block_types=down, up_block_types=up, block_out_channels=tuple(u.block_out_channels),
        layers_per_block=u.layers_per_block, norm_num_groups=u.norm_num_groups,
        cross_attention_dim=u.cross_attention_dim, num_attention_heads=u.num_attention_heads,
        motion_num_attention_heads=m.num_attention_heads, motion_max_seq_length=m.max_seq_length,
        use_motion_mid_block=m.use_mid_block,
    )


class SwitchableMotionModule(AnimateDiffTransformer3D):
    """An AnimateDiff temporal transformer that returns its input while ``enabled`` is False.
    (Assigned as ``__class__`` of the diffusers modules: state-dict keys stay diffusers'.)"""

    enabled: bool = True
    checkpointing: bool = False

    def forward(self, hidden_states, *args, **kwargs):
        if not self.enabled:
            return hidden_states
        if self.checkpointing and torch.is_grad_enabled():
            # diffusers checkpoints the resnets and spatial transformer blocks, not these
            return torch.utils.checkpoint.checkpoint(super().forward, hidden_states, *args, use_reentrant=False,
                                                     **kwargs)
        return super().forward(hidden_states, *args, **kwargs)


class DenoisingUNet(nn.Module):
    """Wrapper of a diffusers ``UNetMotionModel``.

    forward(sample (B, C, F, h, w), timestep (B,) long, encoder_hidden_states (B, S, D),
    pose (B * F, C0, h, w) or None, bank: ReferenceBank or None,
    up_fn: callable(up_block_index, hidden (B * F, C_i, h_i, w_i)) -> same shape, or None,
    down_fn: the same for the down blocks' outputs, or None)
    -> predicted noise (B, C, F, h, w). Frames are ordered frame-major inside each sample
    (row ``b * F + f``), as diffusers does.
    """

    def __init__(self, unet: UNetMotionModel, zero_init_motion: bool = True):
        super().__init__()
        self.unet = unet
        self._bank: ReferenceBank | None = None
        self._pose: torch.Tensor | None = None
        self._up_fn: Callable | None = None
        self._down_fn: Callable | None = None
        self.reference_layer_names = spatial_self_attention_names(unet)
        modules = dict(unet.named_modules())
        for name in self.reference_layer_names:
            modules[name].set_processor(ReferenceReadProcessor(name, self))
        self.motion_modules = [m for m in unet.modules() if isinstance(m, AnimateDiffTransformer3D)]
        for m in self.motion_modules:
            m.__class__ = SwitchableMotionModule
            if zero_init_motion:
                nn.init.zeros_(m.proj_out.weight)
                nn.init.zeros_(m.proj_out.bias)
        unet.conv_in.register_forward_hook(self._add_pose)
        for i, block in enumerate(unet.up_blocks):
            block.register_forward_hook(self._make_up_hook(i))
        for i, block in enumerate(unet.down_blocks):
            block.register_forward_hook(self._make_down_hook(i))

    @classmethod
    def from_config(cls, cfg: CovOGConfig) -> "DenoisingUNet":
        return cls(UNetMotionModel(**motion_unet_kwargs(cfg)))

    def motion_parameter_names(self) -> set[str]:
        """Parameter names (relative to this module) of the motion modules."""
        return {n for n, _ in self.named_parameters() if ".motion_modules." in n}

    def set_motion(self, enabled: bool) -> None:
        for m in self.motion_modules:
            m.enabled = enabled

    def _add_pose(self, module, inputs, output):
        if self._pose is None:
            return output
        return output + self._pose.to(output.dtype)

    def _make_up_hook(self, index: int):
        def hook(module, inputs, output):
            if self._up_fn is None:
                return output
            return self._up_fn(index, output)
        return hook

    def _make_down_hook(self, index: int):
        def hook(module, inputs, output):
            if self._down_fn is None:
                return output
            hidden, res = output
            return self._down_fn(index, hidden), res
        return hook

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Gradient checkpointing on / off: diffusers' (resnets, spatial transformer blocks) and the
        motion modules (temporal transformers)."""
        if enabled:
            self.unet.enable_gradient_checkpointing()
        else:
            self.unet.disable_gradient_checkpointing()
        for m in self.motion_modules:
            m.checkpointing = bool(enabled)

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                pose: torch.Tensor | None = None, bank: ReferenceBank | None = None,
                up_fn: Callable | None = None, down_fn: Callable | None = None) -> torch.Tensor:
        f = sample.shape[2]
        ehs = encoder_hidden_states.repeat_interleave(f, dim=0)
        self._pose, self._bank, self._up_fn, self._down_fn = pose, bank, up_fn, down_fn
        keep = torch.is_grad_enabled() and self.unet.is_gradient_checkpointing
        try:
            return self.unet(sample, timestep, encoder_hidden_states=ehs, return_dict=False)[0]
        finally:
            if not keep:  # backward re-runs checkpointed blocks: they read the bank again
                self._pose, self._bank, self._up_fn, self._down_fn = None, None, None, None


def build_reference_unet(cfg: CovOGConfig) -> UNet2DConditionModel:
    """Randomly initialised ReferenceNet UNet of ``cfg``'s sizes."""
    return UNet2DConditionModel(**unet2d_kwargs(cfg))
