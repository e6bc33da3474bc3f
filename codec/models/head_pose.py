"""H + Δ: head pose (yaw/pitch/roll bins), translation and expression from one ResNet-style encoder."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bitstream.constants import POSE_BIN_DEGREES, POSE_BINS, POSE_RANGE_DEGREES

from .config import FV2VConfig
from .keypoint_transform import at_least_float32


def bin_centres(dtype=torch.float32, device=None) -> torch.Tensor:
    """Centre angle in degrees of each of the POSE_BINS bins covering [-range, range)."""
    idx = torch.arange(POSE_BINS, dtype=dtype, device=device)
    return (idx + 0.5) * POSE_BIN_DEGREES - POSE_RANGE_DEGREES


def angles_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Softmax expectation over bin centres: (..., POSE_BINS) logits → (...) degrees (Hopenet style)."""
    with torch.autocast(logits.device.type, enabled=False):  # bf16 would round angles by up to 0.4°
        logits = at_least_float32(logits)
        return F.softmax(logits, dim=-1) @ bin_centres(logits.dtype, logits.device)


def angle_bins(degrees: torch.Tensor) -> torch.Tensor:
    """Bin index (int64) of each angle, clamped to the first/last bin; the classification target."""
    idx = torch.floor((degrees + POSE_RANGE_DEGREES) / POSE_BIN_DEGREES).long()
    return idx.clamp(0, POSE_BINS - 1)


class BasicBlock(nn.Module):
    """ResNet basic block (two 3×3 convs) with an optional strided 1×1 projection shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class HeadPoseExpression(nn.Module):
    """Shared encoder with heads: pose logits (B,3,POSE_BINS), translation (B,3), expression (B,K,3)."""

    def __init__(self, config: FV2VConfig):
        super().__init__()
        cfg = config.pose
        self.input_size, self.num_keypoints = cfg.input_size, config.num_keypoints
        self.stem = nn.Sequential(
            nn.Conv2d(3, cfg.stem_channels, 7, 2, 3, bias=False),
            nn.BatchNorm2d(cfg.stem_channels),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        )
        layers, in_ch = [], cfg.stem_channels
        for i, (width, count) in enumerate(zip(cfg.widths, cfg.blocks)):
            for j in range(count):
                layers.append(BasicBlock(in_ch, width, 2 if j == 0 and i > 0 else 1))
                in_ch = width
        self.body = nn.Sequential(*layers)
        self.pose = nn.Linear(in_ch, 3 * POSE_BINS)
        self.translation = nn.Linear(in_ch, 3)
        self.expression = nn.Linear(in_ch, 3 * config.num_keypoints)
        # Start from the identity motion (t = δ = 0) so early training does not scatter the keypoints.
        for head in (self.translation, self.expression):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """image (B,3,S,S) → pose_logits, rotation (B,3) degrees (yaw, pitch, roll), translation, expression."""
        if image.shape[-1] != self.input_size:
            image = F.interpolate(image, size=(self.input_size,) * 2, mode="bilinear", align_corners=False,
                                  antialias=True)
        feat = self.body(self.stem(image)).mean(dim=(2, 3))
        logits = self.pose(feat).view(-1, 3, POSE_BINS)
        return {
            "pose_logits": logits,
            "rotation": angles_from_logits(logits),
            "translation": self.translation(feat),
            "expression": self.expression(feat).view(-1, self.num_keypoints, 3),
        }
