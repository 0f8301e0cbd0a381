"""Multi-Human Pose Encoder (MPE), MIT paper Sec. 4, Eq. 1.

One pose guider with shared weights runs on each person's pose image (the pose image masked by
that person's instance box); the per-person embeddings are summed:
``e_pose = sum_i m_i * PoseGuider(p_i)`` with ``m_i`` the people mask (padding slots are 0).
The sum makes it invariant to the order of people; with one person it equals the guider.
"""

from __future__ import annotations

import torch
from torch import nn

from talkset.covog.pose_guider import PoseGuider


def sum_over_people(guider: nn.Module, pose_people: torch.Tensor, people_mask: torch.Tensor | None = None) -> torch.Tensor:
    """``sum_i m_i * guider(p_i)``: pose_people (N, P, 3, H, W) float in [0, 1] (person i's pose image
    under their instance mask), people_mask (N, P) bool or None (all used) -> (N, C, h, w) in the
    guider's output dtype. Padding people (mask False) contribute exact zeros. The seed runs both the
    pose guider and the pose adaptor this way (``pipeline_pose2vid_audio_long.py``). Raises ValueError
    on mismatched shapes."""
    if pose_people.ndim != 5:
        raise ValueError(f"pose_people must be (N, P, 3, H, W), got {tuple(pose_people.shape)}")
    n, p = pose_people.shape[:2]
    if people_mask is None:
        people_mask = torch.ones(n, p, dtype=torch.bool, device=pose_people.device)
    if tuple(people_mask.shape) != (n, p):
        raise ValueError(f"people_mask must be {(n, p)}, got {tuple(people_mask.shape)}")
    feats = guider(pose_people.flatten(0, 1))  # (N*P, C, h, w)
    feats = feats.unflatten(0, (n, p))
    # where(), not multiply: a padded slot adds exact zeros even if its features are not finite
    keep = people_mask.to(torch.bool)[:, :, None, None, None]
    return torch.where(keep, feats, torch.zeros((), dtype=feats.dtype, device=feats.device)).sum(dim=1)


class MultiPoseEncoder(nn.Module):
    """Sum of a shared :class:`PoseGuider` over people.

    forward(pose_people (N, P, 3, H, W) float in [0, 1], people_mask (N, P) bool or None)
    -> (N, C, H / 2**k, W / 2**k). Padding people (mask False) contribute exactly nothing,
    not the guider's response to an empty image. Raises ValueError on mismatched shapes.
    """

    def __init__(self, guider: PoseGuider):
        super().__init__()
        self.guider = guider

    def forward(self, pose_people: torch.Tensor, people_mask: torch.Tensor | None = None) -> torch.Tensor:
        return sum_over_people(self.guider, pose_people, people_mask)
