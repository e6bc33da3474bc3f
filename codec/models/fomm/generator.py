"""FOMM occlusion-aware generator: source features warped by the dense flow → output image."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d
from .config import FOMMConfig


class Generator(nn.Module):
    """`encode`: stem → down blocks (once per keyframe); `forward`: warp, occlude, bottleneck, up blocks, RGB."""

    def __init__(self, config: FOMMConfig):
        super().__init__()
        cfg = config.generator
        widths = [min(cfg.max_features, cfg.block_expansion * 2**i) for i in range(cfg.down_blocks + 1)]
        self.stem = SameBlock2d(3, widths[0], cfg.stem_kernel)
        self.down = nn.Sequential(*(DownBlock2d(a, b) for a, b in zip(widths[:-1], widths[1:])))
        self.res = nn.Sequential(*(ResBlock2d(widths[-1]) for _ in range(cfg.res_blocks)))
        # Stages beyond the analysis resolution halve the channels: they run on the largest maps.
        ups = widths[::-1] + [cfg.block_expansion // 2 ** (i + 1) for i in range(config.extra_up_blocks)]
        self.up = nn.Sequential(*(UpBlock2d(a, b) for a, b in zip(ups[:-1], ups[1:])))
        self.out = nn.Conv2d(ups[-1], 3, cfg.stem_kernel, padding=cfg.stem_kernel // 2)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """image (B,3,S,S) at analysis size → features (B,C,f,f), f = S / 2**down_blocks."""
        return self.down(self.stem(image))

    def forward(self, features: torch.Tensor, flow: torch.Tensor, occlusion: torch.Tensor) -> torch.Tensor:
        """features (B,C,f,f), flow (B,s,s,2), occlusion (B,1,s,s) → image (B,3,out,out) in [0,1]."""
        size = features.shape[-2:]
        if flow.shape[1:3] != size:
            # Coordinates are linear in the align_corners grid, so bilinear resizing keeps smooth flows exact.
            flow = F.interpolate(flow.permute(0, 3, 1, 2), size=tuple(size), mode="bilinear",
                                 align_corners=True).permute(0, 2, 3, 1)
            occlusion = F.interpolate(occlusion, size=tuple(size), mode="bilinear", align_corners=True)
        warped = F.grid_sample(features, flow, align_corners=True)
        return torch.sigmoid(self.out(self.up(self.res(warped * occlusion))))
