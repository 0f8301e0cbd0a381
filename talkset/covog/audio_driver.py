"""Interactive Audio Driver (IAD), MIT paper Sec. 4, Eq. 2.

For each person i in a frame, the audio tokens e_audio are gated by that person's speaking
score a_i, ``g_i = sigmoid(MLP(a_i))`` (a vector gate, one value per token channel), and
cross-attended from the UNet hidden states (queries) to ``g_i * e_audio`` (keys / values).
The result is masked to person i's face box, summed over people and added to the hidden
states as a residual:

    h' = h + sum_i M_i * Attn(LN(h), g_i * e_audio)

The attention output projection is zero-initialised, so h' == h at initialisation.

Speaking scores: talkset's speaking scores are already normalised to [-1, 1] (the seed code
divides raw active-speaker logits by 3); they are used as they are, no further scaling.
A NaN score (no face track / unknown) or a padded person (people mask False) removes that
person from the sum for that frame.

Face masks are resized to the hidden-state grid with adaptive max pooling (a cell is inside
when any pixel of its area is inside the face box), so a small face never vanishes at the
coarse resolutions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from torch import nn


def resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, P, H, W) {0, 1} masks -> (N, P, h, w) {0, 1} by adaptive max pooling."""
    m = masks.to(torch.float32)
    if tuple(m.shape[-2:]) == tuple(size):
        return m
    return F.adaptive_max_pool2d(m, size)


class InteractiveAudioDriver(nn.Module):
    """IAD residual block for hidden states with ``channels`` channels.

    forward(hidden (N, C, h, w), audio_tokens (N, T, token_dim), speaking (N, P) in [-1, 1]
    with NaN = unknown, face_masks (N, P, H, W) {0, 1} at any resolution, people_mask (N, P)
    bool) -> (N, C, h, w). N is batch x frames (every frame has its own tokens, scores, masks).
    """

    def __init__(self, channels: int, token_dim: int, heads: int = 8, gate_hidden: int = 64):
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels {channels} not divisible by heads {heads}")
        self.channels, self.token_dim = channels, token_dim
        self.norm = nn.LayerNorm(channels)
        self.gate = nn.Sequential(nn.Linear(1, gate_hidden), nn.SiLU(), nn.Linear(gate_hidden, token_dim))
        self.attn = Attention(query_dim=channels, cross_attention_dim=token_dim, heads=heads,
                              dim_head=channels // heads, out_bias=True)
        nn.init.zeros_(self.attn.to_out[0].weight)
        nn.init.zeros_(self.attn.to_out[0].bias)

    def gates(self, speaking: torch.Tensor) -> torch.Tensor:
        """(N, P) scores -> (N, P, token_dim) gates in (0, 1); NaN scores read as 0 here (the
        person is masked out in :meth:`forward`)."""
        a = torch.nan_to_num(speaking.to(torch.float32), nan=0.0).to(self.gate[0].weight.dtype)
        return torch.sigmoid(self.gate(a[..., None]))

    def forward(self, hidden: torch.Tensor, audio_tokens: torch.Tensor, speaking: torch.Tensor,
                face_masks: torch.Tensor, people_mask: torch.Tensor | None = None) -> torch.Tensor:
        n, c, h, w = hidden.shape
        p = speaking.shape[1]
        if audio_tokens.shape[0] != n or audio_tokens.shape[-1] != self.token_dim:
            raise ValueError(f"audio_tokens must be ({n}, T, {self.token_dim}), got {tuple(audio_tokens.shape)}")
        if tuple(face_masks.shape[:2]) != (n, p):
            raise ValueError(f"face_masks must be ({n}, {p}, H, W), got {tuple(face_masks.shape)}")
        valid = ~torch.isnan(speaking)
        if people_mask is not None:
            valid = valid & people_mask.to(torch.bool)
        gated = self.gates(speaking)[:, :, None, :] * audio_tokens[:, None]  # (N, P, T, D)
        q = self.norm(hidden.flatten(2).transpose(1, 2))  # (N, hw, C)
        q = q[:, None].expand(n, p, h * w, c).reshape(n * p, h * w, c)
        out = self.attn(q, encoder_hidden_states=gated.flatten(0, 1).to(q.dtype))  # (N*P, hw, C)
        out = out.view(n, p, h, w, c).permute(0, 1, 4, 2, 3)  # (N, P, C, h, w)
        m = resize_masks(face_masks, (h, w)) * valid[:, :, None, None].to(torch.float32)
        out = torch.where(m[:, :, None] > 0, out * m[:, :, None].to(out.dtype),
                          torch.zeros((), dtype=out.dtype, device=out.device))
        return hidden + out.sum(dim=1)
