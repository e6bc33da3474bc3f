"""F: the appearance feature extractor, image → 3D feature volume (C × D × H × W)."""
from __future__ import annotations

import torch
from torch import nn

from .blocks import DownBlock2d, ResBlock3d, SameBlock2d
from .config import FV2VConfig


class AppearanceExtractor(nn.Module):
    """2D down-sampling convs → 1×1 conv → reshape to a volume → 3D residual blocks."""

    def __init__(self, config: FV2VConfig):
        super().__init__()
        cfg = config.appearance
        self.channels, self.depth = cfg.volume_channels, cfg.volume_depth
        self.stem = SameBlock2d(3, cfg.block_expansion, kernel_size=7)
        widths = [min(cfg.max_features, cfg.block_expansion * 2 ** (i + 1)) for i in range(cfg.down_blocks)]
        ins = [cfg.block_expansion] + widths[:-1]
        self.down = nn.Sequential(*(DownBlock2d(a, b) for a, b in zip(ins, widths)))
        self.to_volume = nn.Conv2d(widths[-1] if widths else cfg.block_expansion, self.channels * self.depth, 1)
        self.res = nn.Sequential(*(ResBlock3d(self.channels) for _ in range(cfg.res_blocks)))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image (B,3,S,S) at analysis size → volume (B, C, D, S/2^n, S/2^n)."""
        flat = self.to_volume(self.down(self.stem(image)))
        b, _, h, w = flat.shape
        return self.res(flat.view(b, self.channels, self.depth, h, w))
