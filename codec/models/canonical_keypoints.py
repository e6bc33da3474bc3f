"""L: the canonical keypoint detector, image → K canonical 3D keypoints x_c in [-1, 1]³."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import DownBlock2d, UpBlock, conv, soft_argmax
from .config import FV2VConfig


class CanonicalKeypointDetector(nn.Module):
    """2D encoder → 1×1 conv reshaped to a 3D volume → 3D decoder → K heatmaps → soft-argmax."""

    def __init__(self, config: FV2VConfig):
        super().__init__()
        cfg = config.keypoints
        self.input_size, self.depth, self.temperature = cfg.input_size, cfg.depth, cfg.temperature
        self.reshape_channels = cfg.reshape_channels
        widths = [min(cfg.max_features, cfg.block_expansion * 2 ** (i + 1)) for i in range(cfg.num_blocks)]
        self.encoder = nn.Sequential(*(DownBlock2d(a, b) for a, b in zip([3] + widths[:-1], widths)))
        self.to_volume = nn.Conv2d(widths[-1], cfg.reshape_channels * cfg.depth, 1)
        ups = [max(cfg.block_expansion, cfg.reshape_channels // 2 ** (i + 1)) for i in range(cfg.num_blocks)]
        self.decoder = nn.Sequential(
            *(UpBlock(3, a, b) for a, b in zip([cfg.reshape_channels] + ups[:-1], ups))
        )
        self.head = conv(3, ups[-1], config.num_keypoints, cfg.head_kernel)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """image (B,3,S,S) → {'canonical': (B,K,3) ordered (x, y, z), 'heatmap': (B,K,D,s,s)}."""
        if image.shape[-1] != self.input_size:
            image = F.interpolate(image, size=(self.input_size,) * 2, mode="bilinear", align_corners=False,
                                  antialias=True)
        flat = self.to_volume(self.encoder(image))
        b, _, h, w = flat.shape
        logits = self.head(self.decoder(flat.view(b, self.reshape_channels, self.depth, h, w)))
        canonical, heatmap = soft_argmax(logits, self.temperature)
        return {"canonical": canonical, "heatmap": heatmap}
