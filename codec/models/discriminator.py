"""D: multi-scale spectral-norm patch discriminator (training only; never shipped with the codec)."""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from .config import FV2VConfig


class DiscriminatorOutput(NamedTuple):
    """One scale's intermediate features (for feature matching) and its patch logits (B,1,h,w)."""

    features: list[torch.Tensor]
    logits: torch.Tensor


class PatchDiscriminator(nn.Module):
    """Strided 4×4 spectral-norm convs with instance norm and LeakyReLU, then a 1×1 logit conv."""

    def __init__(self, block_expansion: int, num_blocks: int, max_features: int):
        super().__init__()
        self.blocks = nn.ModuleList()
        in_ch = 3
        for i in range(num_blocks):
            out_ch = min(max_features, block_expansion * 2**i)
            self.blocks.append(nn.Sequential(
                spectral_norm(nn.Conv2d(in_ch, out_ch, 4, padding=1)),
                nn.InstanceNorm2d(out_ch, affine=True) if i > 0 else nn.Identity(),
                nn.LeakyReLU(0.2),
                nn.AvgPool2d(2) if i < num_blocks - 1 else nn.Identity(),
            ))
            in_ch = out_ch
        self.logits = spectral_norm(nn.Conv2d(in_ch, 1, 1))

    def forward(self, image: torch.Tensor) -> DiscriminatorOutput:
        features, x = [], image
        for block in self.blocks:
            x = block(x)
            features.append(x)
        return DiscriminatorOutput(features, self.logits(x))


class MultiScaleDiscriminator(nn.Module):
    """One PatchDiscriminator per scale in `config.discriminator.scales`, applied to the resized image."""

    def __init__(self, config: FV2VConfig):
        super().__init__()
        cfg = config.discriminator
        self.scales = tuple(cfg.scales)
        self.nets = nn.ModuleList(
            PatchDiscriminator(cfg.block_expansion, cfg.num_blocks, cfg.max_features) for _ in self.scales
        )

    def forward(self, image: torch.Tensor) -> list[DiscriminatorOutput]:
        """image (B,3,S,S) in [0,1] → one DiscriminatorOutput per scale, in `scales` order."""
        outputs = []
        for scale, net in zip(self.scales, self.nets):
            x = image if scale == 1 else F.interpolate(image, scale_factor=scale, mode="bilinear",
                                                       align_corners=False, antialias=True)
            outputs.append(net(x))
        return outputs
