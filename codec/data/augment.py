"""Pair augmentation: one horizontal flip and one mild colour jitter shared by source and driving.

Both frames of a pair get the same change, so the generator never has to invent an appearance the
source does not show. Flipping mirrors the head pose (yaw and roll change sign, pitch does not) and
the landmarks (x changes sign and left/right points swap rows).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from codec.data.landmarks import mirror_landmarks

# Rec. 601 luma weights, for the grey level that contrast and saturation pivot around.
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class AugmentConfig:
    """Flip probability and the ± range of the brightness, contrast and saturation factors."""

    flip_probability: float = 0.5
    brightness: float = 0.1
    contrast: float = 0.1
    saturation: float = 0.1


NO_AUGMENT = AugmentConfig(flip_probability=0.0, brightness=0.0, contrast=0.0, saturation=0.0)


def flip_poses(poses: torch.Tensor) -> torch.Tensor:
    """Labels (..., 3) = (yaw, pitch, roll) degrees of the mirrored frames (NaN stays NaN)."""
    return poses * poses.new_tensor([-1.0, 1.0, -1.0])


def _factors(n: int, spread: float, generator: torch.Generator | None, device) -> torch.Tensor:
    return (1 + (torch.rand(n, generator=generator) * 2 - 1) * spread).to(device).view(n, 1, 1, 1)


def _grey(images: torch.Tensor) -> torch.Tensor:
    weights = images.new_tensor(_LUMA).view(1, 3, 1, 1)
    return (images * weights).sum(1, keepdim=True)


def augment_pairs(source: torch.Tensor, driving: torch.Tensor, source_pose: torch.Tensor,
                  driving_pose: torch.Tensor, source_landmarks: torch.Tensor, driving_landmarks: torch.Tensor,
                  config: AugmentConfig, generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
    """Augmented (source, driving, source_pose, driving_pose, source_landmarks, driving_landmarks);
    images (B, 3, H, W) float in [0, 1], landmarks (B, K, 2).

    Random draws come from `generator` on the CPU, so a seed reproduces a batch on any device.
    """
    n, device = source.shape[0], source.device
    flip = (torch.rand(n, generator=generator) < config.flip_probability).to(device)
    images = torch.stack([source, driving])
    images = torch.where(flip.view(1, n, 1, 1, 1), images.flip(-1), images)
    poses = torch.stack([source_pose, driving_pose])
    poses = torch.where(flip.view(1, n, 1), flip_poses(poses), poses)
    points = torch.stack([source_landmarks, driving_landmarks])
    points = torch.where(flip.view(1, n, 1, 1), mirror_landmarks(points), points)
    bright = _factors(n, config.brightness, generator, device)
    contrast = _factors(n, config.contrast, generator, device)
    saturation = _factors(n, config.saturation, generator, device)
    out = []
    for img in images:
        img = img * bright
        mean = _grey(img).mean(dim=(2, 3), keepdim=True)
        img = (img - mean) * contrast + mean
        grey = _grey(img)
        out.append(((img - grey) * saturation + grey).clamp(0, 1))
    return out[0], out[1], poses[0], poses[1], points[0], points[1]
