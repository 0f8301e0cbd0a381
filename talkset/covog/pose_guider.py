"""Pose guider: a small conv encoder from a pose image to UNet-input-sized features.

Layout as in AnimateAnyone (Hu et al. 2023, Sec. 3.2) / Moore-AnimateAnyone ``PoseGuider``:
``conv_in`` 3x3 -> per stage (3x3 conv, 3x3 stride-2 conv) with SiLU after every conv ->
zero-initialised 3x3 ``conv_out`` to the UNet's first block width (320 for SD 1.5). The
parameter names (``conv_in``, ``blocks.N``, ``conv_out``) match that repository's state dicts,
so its ``pose_guider.pth`` loads directly. Paper channels: (16, 32, 96, 256).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class PoseGuider(nn.Module):
    """Pose image (N, 3, H, W) in [0, 1] -> features (N, C, H / 2**k, W / 2**k), float32,
    with ``k = len(block_out_channels) - 1`` and ``C = conditioning_embedding_channels``.

    The output is exactly zero at initialisation (zero ``conv_out``), so adding it to a UNet's
    ``conv_in`` output leaves the UNet unchanged until trained.
    """

    def __init__(
        self,
        conditioning_embedding_channels: int,
        conditioning_channels: int = 3,
        block_out_channels: Sequence[int] = (16, 32, 96, 256),
    ):
        super().__init__()
        ch = list(block_out_channels)
        self.downscale = 2 ** (len(ch) - 1)
        self.conv_in = nn.Conv2d(conditioning_channels, ch[0], kernel_size=3, padding=1)
        self.blocks = nn.ModuleList()
        for c_in, c_out in zip(ch[:-1], ch[1:]):
            self.blocks.append(nn.Conv2d(c_in, c_in, kernel_size=3, padding=1))
            self.blocks.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, stride=2))
        self.conv_out = nn.Conv2d(ch[-1], conditioning_embedding_channels, kernel_size=3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, pose: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.conv_in(pose))
        for block in self.blocks:
            x = F.silu(block(x))
        return self.conv_out(x)
