"""The image renderer's foreground mask: which pixels of a keyframe move with the head, predicted once per keyframe."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Hourglass2d, keypoints_to_gaussian, make_coordinate_grid
from .config import FV2VConfig


# Where on softplus's curve the shrink-only residual starts: -softplus(-4) = -0.018.
_SHRINK_OFFSET = 4.0


def head_prior_logit(keypoints: torch.Tensor, size: int, radius: float, gain: float) -> torch.Tensor:
    """(B,1,size,size) logit of a disc around the keypoints: `gain` at their centroid, 0 at `radius` times
    their RMS spread. A face's landmarks span about 0.35 of the frame; head and hair about 2.5 times that."""
    centre = keypoints.mean(1, keepdim=True)  # (B,1,2)
    spread = ((keypoints - centre) ** 2).sum(-1).mean(1).clamp(min=1e-4).sqrt()  # (B,)
    grid = make_coordinate_grid((size, size), keypoints.dtype, keypoints.device).reshape(1, -1, 2)
    d2 = ((grid - centre) ** 2).sum(-1) / (radius * spread[:, None]) ** 2
    return (gain * (1 - d2)).reshape(-1, 1, size, size)


class ForegroundMask(nn.Module):
    """A 2D hourglass at `image.size`² over the keyframe and its keypoint Gaussians; its logit is added to a
    disc around the keypoints, so training starts from "the head moves, the rest stays" and learns the outline
    (with `mask_residual` "shrink", only inward: what lies outside the disc never moves)."""

    def __init__(self, config: FV2VConfig):
        super().__init__()
        cfg = config.image
        self.size, self.variance = cfg.size, cfg.kp_variance
        self.radius, self.gain = cfg.mask_prior_radius, cfg.mask_prior_gain
        self.shrink_only = cfg.mask_residual == "shrink"
        self.hourglass = Hourglass2d(3 + config.num_keypoints, cfg.mask_block_expansion, cfg.mask_num_blocks,
                                     cfg.mask_max_features)
        self.head = nn.Conv2d(self.hourglass.out_channels, 1, 3, padding=1)
        # Zero residual at the start: the mask is the prior disc until training moves it.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, keyframe: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
        """keyframe (B,3,s,s) at `size`², keypoints (B,K,2) → foreground probability (B,1,s,s)."""
        side = (self.size, self.size)
        x = torch.cat([keyframe, keypoints_to_gaussian(keypoints, side, self.variance)], 1)
        residual = self.head(self.hourglass(x))
        if self.shrink_only:
            # A smooth cap at 0 (a clamp's gradient is 0 at 0, where the zero-initialised head starts): at
            # the start the mask is the disc less 0.018 logit, and the gradient gets through.
            residual = -F.softplus(-(residual + _SHRINK_OFFSET))
        return torch.sigmoid(residual + head_prior_logit(keypoints, self.size, self.radius, self.gain))
