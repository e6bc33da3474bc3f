"""G: the generator, source volume warped by the dense flow → output image."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import ResBlock2d, SameBlock2d, UpBlock2d
from .config import FV2VConfig


class Generator(nn.Module):
    """Warp the volume, fold depth into channels, apply occlusion, residual blocks, up-sample to output size."""

    def __init__(self, config: FV2VConfig):
        super().__init__()
        cfg = config.generator
        flat = config.appearance.volume_channels * config.appearance.volume_depth
        self.entry = SameBlock2d(flat, cfg.channels, 3)
        self.mix = nn.Conv2d(cfg.channels, cfg.channels, 1)
        self.res = nn.Sequential(*(ResBlock2d(cfg.channels) for _ in range(cfg.res_blocks)))
        widths = [max(cfg.min_channels, cfg.channels // 2 ** (i + 1)) for i in range(config.up_blocks)]
        self.up = nn.Sequential(*(UpBlock2d(a, b) for a, b in zip([cfg.channels] + widths[:-1], widths)))
        self.out = nn.Conv2d(widths[-1] if widths else cfg.channels, 3, 7, padding=3)

    def forward(self, volume: torch.Tensor, flow: torch.Tensor, occlusion: torch.Tensor) -> torch.Tensor:
        """volume (B,C,D,H,W), flow (B,D,H,W,3), occlusion (B,1,H,W) → image (B,3,out,out) in [0,1]."""
        warped = F.grid_sample(volume, flow, align_corners=True)
        b, c, d, h, w = warped.shape
        x = self.mix(self.entry(warped.reshape(b, c * d, h, w))) * occlusion
        return torch.sigmoid(self.out(self.up(self.res(x))))
