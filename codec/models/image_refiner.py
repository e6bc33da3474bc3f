"""The image renderer's network: spline-warped keyframe + keypoints → flow correction, occlusion, fill colours."""
from __future__ import annotations

import torch
from torch import nn

from .blocks import Hourglass2d, keypoints_to_gaussian, make_coordinate_grid
from .config import FV2VConfig

# Starting occlusion logit: the untrained renderer shows the spline warp, not its fill layer.
_OCCLUSION_BIAS = -4.0


class ImageRefiner(nn.Module):
    """A 2D hourglass at `image.size`² over the warped keyframe, the spline's displacement and the
    source/driving keypoint Gaussians; predicts a flow residual, an occlusion logit and RGB fill."""

    def __init__(self, config: FV2VConfig):
        super().__init__()
        cfg = config.image
        self.size, self.variance = cfg.size, cfg.kp_variance
        channels = 3 + 3 + 2 + 2 * config.num_keypoints
        self.hourglass = Hourglass2d(channels, cfg.block_expansion, cfg.num_blocks, cfg.max_features)
        self.head = nn.Conv2d(self.hourglass.out_channels, 6, 3, padding=1)
        # Zero flow residual and a closed occlusion mask at the start: training begins at the spline warp.
        nn.init.zeros_(self.head.weight)
        with torch.no_grad():
            self.head.bias.copy_(torch.tensor([0.0, 0.0, _OCCLUSION_BIAS, 0.0, 0.0, 0.0]))

    def forward(self, keyframe: torch.Tensor, warped: torch.Tensor, spline: torch.Tensor,
                kp_source: torch.Tensor, kp_driving: torch.Tensor) -> dict[str, torch.Tensor]:
        """keyframe and warped (B,3,s,s), spline grid (B,s,s,2), keypoints (B,K,2) → flow residual
        (B,s,s,2), occlusion (B,1,s,s) in (0,1), fill (B,3,s,s) in (0,1)."""
        side = (self.size, self.size)
        identity = make_coordinate_grid(side, spline.dtype, spline.device)
        x = torch.cat([keyframe, warped, (spline - identity).permute(0, 3, 1, 2),
                       keypoints_to_gaussian(kp_source, side, self.variance),
                       keypoints_to_gaussian(kp_driving, side, self.variance)], 1)
        out = self.head(self.hourglass(x))
        return {"flow": out[:, :2].permute(0, 2, 3, 1), "occlusion": torch.sigmoid(out[:, 2:3]),
                "fill": torch.sigmoid(out[:, 3:])}
