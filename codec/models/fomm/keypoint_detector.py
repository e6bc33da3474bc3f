"""FOMM keypoint detector: image → K keypoints in [-1, 1]² and their local 2×2 Jacobians."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks import Hourglass2d, conv, soft_argmax
from .config import FOMMConfig


class KeypointDetector(nn.Module):
    """Hourglass → K heatmaps (soft-argmax) and per-keypoint Jacobians pooled under each heatmap."""

    def __init__(self, config: FOMMConfig):
        super().__init__()
        cfg = config.detector
        self.num_keypoints, self.input_size, self.temperature = config.num_keypoints, cfg.input_size, cfg.temperature
        self.hourglass = Hourglass2d(3, cfg.block_expansion, cfg.num_blocks, cfg.max_features)
        self.heatmap = conv(2, self.hourglass.out_channels, config.num_keypoints, cfg.head_kernel)
        self.jacobian = conv(2, self.hourglass.out_channels, 4 * config.num_keypoints, cfg.head_kernel)
        # As in FOMM: every keypoint starts as a pure translation, so early training warps rigidly.
        nn.init.zeros_(self.jacobian.weight)
        with torch.no_grad():
            self.jacobian.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0]).repeat(config.num_keypoints))

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """image (B,3,S,S) → keypoints (B,K,2) ordered (x, y), jacobians (B,K,2,2), heatmap (B,K,s,s)."""
        if image.shape[-1] != self.input_size:
            image = F.interpolate(image, size=(self.input_size,) * 2, mode="bilinear", align_corners=False,
                                  antialias=True)
        feat = self.hourglass(image)
        keypoints, heatmap = soft_argmax(self.heatmap(feat), self.temperature)
        b, k, h, w = heatmap.shape
        maps = self.jacobian(feat).view(b, k, 4, h, w)
        jacobians = (heatmap.unsqueeze(2) * maps).sum(dim=(-2, -1)).view(b, k, 2, 2)
        return {"keypoints": keypoints, "jacobians": jacobians, "heatmap": heatmap}
