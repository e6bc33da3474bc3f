"""The landmark detector of `keypoint_source="landmarks"`: image → K 2D keypoints by heatmap soft-argmax."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Hourglass2d, soft_argmax
from .config import FV2VConfig


class LandmarkDetector(nn.Module):
    """A 2D hourglass at `landmarks.input_size`² → one heatmap per keypoint → expected (x, y) in [-1, 1]."""

    def __init__(self, config: FV2VConfig):
        super().__init__()
        cfg = config.landmarks
        self.input_size, self.temperature = cfg.input_size, cfg.temperature
        self.hourglass = Hourglass2d(3, cfg.block_expansion, cfg.num_blocks, cfg.max_features)
        self.head = nn.Conv2d(self.hourglass.out_channels, config.num_keypoints, 3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image (B,3,S,S) in [0,1] → keypoints (B,K,2) ordered (x, y)."""
        if image.shape[-1] != self.input_size:
            image = F.interpolate(image, size=(self.input_size,) * 2, mode="bilinear", align_corners=False,
                                  antialias=True)
        # Soft-argmax keeps float32: bf16 expectations would be off by a sizeable fraction of a pixel.
        with torch.autocast(image.device.type, enabled=False):
            logits = self.head(self.hourglass(image.float()))
            return soft_argmax(logits, self.temperature)[0]
