"""ReferenceNet and reference attention (AnimateAnyone, Hu et al. 2023, Sec. 3.2).

ReferenceNet is a 2D UNet (diffusers ``UNet2DConditionModel``, SD 1.5 layout) run once per
sample on the clean reference-image latent at timestep 0. Its spatial self-attention layers
(``...transformer_blocks.N.attn1``) run in *write* mode: each stores its input (the normed
hidden states, (B, L, C)) in a :class:`ReferenceBank` under its layer name. The denoising
UNet's layers of the same name run in *read* mode: keys and values are computed from the
concatenation ``[hidden states, reference hidden states]`` along the token axis (the reference
repeated for every frame), the query from the hidden states alone ("spatial attention" in the
paper; ``ReferenceAttentionControl`` in Moore-AnimateAnyone). Both modes are diffusers
attention processors wrapping ``AttnProcessor2_0``.

The pose adaptor's features are added to ReferenceNet's ``conv_in`` output (MIT paper Sec. 4).
ReferenceNet stops right after it stored the last layer the denoising UNet reads; everything
after that point (and ``conv_norm_out`` / ``conv_out``) never runs:
:meth:`ReferenceNet.used_parameter_names` lists what does.
"""

from __future__ import annotations

import re

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from torch import nn

_PLAIN = AttnProcessor2_0()


def spatial_self_attention_names(model: nn.Module) -> list[str]:
    """Names of the spatial self-attention layers (``attn1`` of spatial transformer blocks, not
    of motion modules), in execution order: down blocks, mid block, up blocks."""
    names = [n for n, m in model.named_modules()
             if isinstance(m, Attention) and n.endswith(".attn1") and "motion_modules" not in n]

    def key(name: str):
        section = {"down_blocks": 0, "mid_block": 1, "up_blocks": 2}[name.split(".")[0]]
        return (section, [int(x) for x in re.findall(r"\.(\d+)", name)])

    return sorted(names, key=key)


class ReferenceBank:
    """Reference hidden states by layer name: ``tensors[name]`` is (B, L, C)."""

    def __init__(self) -> None:
        self.tensors: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.tensors)


class _ReferenceDone(Exception):
    """Raised inside ReferenceNet after the last needed layer wrote to the bank."""


class ReferenceWriteProcessor:
    """Attention processor for ReferenceNet's ``attn1``: stores its input, then attends as usual."""

    def __init__(self, name: str, owner: "ReferenceNet"):
        self.name, self.owner = name, owner

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        bank = self.owner._bank
        if bank is not None:
            bank.tensors[self.name] = hidden_states
            if self.name == self.owner._stop_after:
                raise _ReferenceDone
        return _PLAIN(attn, hidden_states, encoder_hidden_states, attention_mask, temb)


class ReferenceReadProcessor:
    """Attention processor for the denoising UNet's ``attn1``: self-attention whose keys and
    values also cover the reference hidden states of the same layer. ``owner._bank`` is the
    bank of the current forward (or None: plain self-attention). Hidden states are
    (B * F, L, C); the bank's (B, L_ref, C) is repeated F times."""

    def __init__(self, name: str, owner: nn.Module):
        self.name, self.owner = name, owner

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        bank = getattr(self.owner, "_bank", None)
        ref = None if bank is None else bank.tensors.get(self.name)
        if ref is None or encoder_hidden_states is not None or hidden_states.ndim != 3:
            return _PLAIN(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        n, b = hidden_states.shape[0], ref.shape[0]
        if n % b:
            raise ValueError(f"{self.name}: {n} hidden-state rows are not a multiple of {b} references")
        ref = ref.to(hidden_states.dtype).repeat_interleave(n // b, dim=0)
        kv = torch.cat([hidden_states, ref], dim=1)
        return _PLAIN(attn, hidden_states, kv, attention_mask, temb)


class ReferenceNet(nn.Module):
    """ReferenceNet around a diffusers ``UNet2DConditionModel``.

    forward(latent (B, C, h, w), timestep (B,) or int, encoder_hidden_states (B, S, D),
    cond (B, C0, h, w) or None: pose-adaptor features added after ``conv_in``) -> ReferenceBank
    holding, for every name in ``layer_names``, the (B, h_l * w_l, C_l) input of that layer.
    """

    def __init__(self, unet: UNet2DConditionModel, read_names: list[str] | None = None):
        super().__init__()
        self.unet = unet
        names = spatial_self_attention_names(unet)
        if read_names is not None:
            missing = sorted(set(read_names) - set(names))
            if missing:
                raise ValueError(f"denoising UNet reads reference layers ReferenceNet lacks: {missing[:3]}")
            names = [n for n in names if n in set(read_names)]
        self.layer_names = names
        self._stop_after = names[-1] if names else None
        self._bank: ReferenceBank | None = None
        self._cond: torch.Tensor | None = None
        modules = dict(unet.named_modules())
        for name in names:
            modules[name].set_processor(ReferenceWriteProcessor(name, self))
        unet.conv_in.register_forward_hook(self._add_cond)

    def _add_cond(self, module, inputs, output):
        if self._cond is None:
            return output
        return output + self._cond.to(output.dtype)

    def forward(self, latent: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor,
                cond: torch.Tensor | None = None) -> ReferenceBank:
        bank = ReferenceBank()
        self._bank, self._cond = bank, cond
        try:
            self.unet(latent, timestep, encoder_hidden_states=encoder_hidden_states, return_dict=False)
        except _ReferenceDone:
            pass
        finally:
            # also with gradient checkpointing: a re-run in backward must not write (nor stop early)
            self._bank, self._cond = None, None
        return bank

    def used_parameter_names(self) -> set[str]:
        """Names (relative to ``self.unet``) of the parameters a forward actually uses, found by
        running it once on a tiny zero input (on the parameters' device: meta works too)."""
        ran: set[str] = set()
        hooks = []
        for name, mod in self.unet.named_modules():
            if any(True for _ in mod.parameters(recurse=False)):
                hooks.append(mod.register_forward_pre_hook(lambda m, i, n=name: ran.add(n)))
        p = next(self.unet.parameters())
        s = 2 ** (len(self.unet.config.block_out_channels) - 1)
        cfg = self.unet.config
        try:
            with torch.no_grad():
                self(torch.zeros(1, cfg.in_channels, s, s, device=p.device, dtype=p.dtype),
                     torch.zeros(1, device=p.device, dtype=torch.long),
                     torch.zeros(1, 1, cfg.cross_attention_dim, device=p.device, dtype=p.dtype))
        finally:
            for h in hooks:
                h.remove()
        return {f"{m}.{n}" if m else n for m, mod in self.unet.named_modules() if m in ran
                for n, _ in mod.named_parameters(recurse=False)}
