"""Audio projection: per-frame speech features -> audio tokens e_audio for the IAD.

MIT paper Sec. 4: wav2vec2 hidden states (12 layers x 768 per video frame) are projected to
32 tokens x 1024. Our design (the paper gives only the sizes): the features of the frame and
``context`` frames each side (edge frames repeated) are flattened and passed through an MLP
``Linear -> SiLU -> Linear -> SiLU -> Linear`` to ``tokens * token_dim``, then LayerNorm per
token (the shape of the audio projection in EMO / Hallo-style talking-head models).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AudioProjection(nn.Module):
    """(B, F, layers, dim) float32 audio features -> (B, F, tokens, token_dim) audio tokens.

    Raises ValueError when the feature shape differs from (layers, dim).
    """

    def __init__(self, layers: int = 12, dim: int = 768, context: int = 2, hidden: int = 512,
                 tokens: int = 32, token_dim: int = 1024):
        super().__init__()
        self.layers, self.dim, self.context = layers, dim, context
        self.tokens, self.token_dim = tokens, token_dim
        window = 2 * context + 1
        self.net = nn.Sequential(
            nn.Linear(window * layers * dim, hidden), nn.SiLU(),
            nn.Linear(hidden, hidden), nn.SiLU(),
            nn.Linear(hidden, tokens * token_dim),
        )
        self.norm = nn.LayerNorm(token_dim)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.ndim != 4 or tuple(audio.shape[2:]) != (self.layers, self.dim):
            raise ValueError(
                f"audio features must be (B, F, {self.layers}, {self.dim}), got {tuple(audio.shape)}"
            )
        b, f = audio.shape[:2]
        x = audio.flatten(2)  # (B, F, L*D)
        if self.context:
            c = self.context
            # repeat the edge frames, then gather a (2c+1)-frame window around every frame
            x = F.pad(x.transpose(1, 2), (c, c), mode="replicate").transpose(1, 2)
            x = x.unfold(1, 2 * c + 1, 1)  # (B, F, L*D, 2c+1)
            x = x.transpose(2, 3).flatten(2)
        tok = self.net(x).view(b, f, self.tokens, self.token_dim)
        return self.norm(tok)
