"""Checks shared by every motion model: input images and motion dicts (shaped by the bitstream layout)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from bitstream.constants import MotionKind
from bitstream.symbols import layout


class InputError(ValueError):
    """An image or motion dict with the wrong shape, dtype or value range."""


def prepare_image(image: torch.Tensor, size: int) -> torch.Tensor:
    """A float (B,3,S,S) image checked and resized (antialiased bilinear) to size×size."""
    if not isinstance(image, torch.Tensor) or image.dim() != 4 or image.shape[1] != 3:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise InputError(f"expected an image tensor (B,3,S,S), got {shape}")
    if not image.is_floating_point():
        raise InputError(f"expected a float image in [0,1], got dtype {image.dtype}")
    if image.shape[-1] != size or image.shape[-2] != size:
        image = F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return image


def check_motion(motion: dict[str, torch.Tensor], kind: MotionKind, num_keypoints: int, batch: int) -> None:
    """Raise InputError unless `motion` holds every group of the kind's bitstream layout as (B, count, dims)."""
    for group in layout(kind, num_keypoints):
        value = motion.get(group.name) if isinstance(motion, dict) else None
        if not isinstance(value, torch.Tensor):
            raise InputError(f"motion group {group.name!r} is missing or not a tensor")
        expected = (batch, group.count, group.dims)
        if tuple(value.shape) != expected:
            raise InputError(f"motion group {group.name!r} has shape {tuple(value.shape)}, expected {expected}")
