"""Free view for the image renderers: a face's depth relief, so a turned head moves each part by its own depth.

The spline through 20 keypoints cannot turn a head: between the nose tip and the eyes it shifts every pixel by
an interpolated amount, so the nose bends and smears over the cheek. `relief_controls` adds points of a mean
face mesh (face_relief.npz, built by scripts/face_relief.py from training clips) to the spline: each sits
where the un-turned spline puts it and moves by the change of view at its own depth.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .keypoint_transform import transform_keypoints
from .thin_plate import thin_plate_points

_RELIEF = Path(__file__).with_name("face_relief.npz")
# Smooths the expression offsets carried from the keypoints to the relief points (no anchors in canonical space).
_OFFSET_REGULARISATION = 1e-2


@lru_cache(maxsize=1)
def _relief() -> tuple[np.ndarray, np.ndarray]:
    """The mean face's keypoints (K, 3) and relief points (M, 3), in the landmarks' mean-face frame."""
    with np.load(_RELIEF) as data:
        return data["keypoints"], data["points"]


def relief_points(canonical: torch.Tensor) -> torch.Tensor:
    """The relief points (B, M, 3) in the frame of the model's canonical keypoints (B, K, 3): the 3D affine map
    that takes the mean face's keypoints onto them (least squares) applied to the mean face's relief points."""
    keypoints, points = (canonical.new_tensor(a) for a in _relief())
    ones = lambda x: torch.cat([x, torch.ones_like(x[..., :1])], -1)  # noqa: E731
    lhs = ones(keypoints).expand(canonical.shape[0], -1, -1)
    affine = torch.linalg.lstsq(lhs, canonical).solution  # (B, 4, 3)
    return ones(points) @ affine


def relief_controls(canonical: torch.Tensor, rotation: torch.Tensor, view: torch.Tensor, translation: torch.Tensor,
                    expression: torch.Tensor, source: torch.Tensor, anchors_per_side: int,
                    regularisation: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Extra spline points (driving (B, M, 2), source (B, M, 2)) that turn the face from `rotation` to `view`
    (B, 3 degrees); `source` (B, K, 2) are the keyframe's keypoints. The points sit where the spline from the
    keypoints at `rotation` to `source` takes them, so with `view` equal to `rotation` they change nothing."""
    relief = relief_points(canonical)
    zeros = torch.zeros_like(relief)
    turned = transform_keypoints(relief, rotation, translation, zeros)[..., :2]
    rigid = transform_keypoints(canonical, rotation, translation, torch.zeros_like(canonical))[..., :2]
    # The keypoints' image-plane expression offsets, carried to the relief points by a spline in the image plane.
    at_rotation = turned + thin_plate_points(rigid, expression[..., :2], turned, 0, _OFFSET_REGULARISATION)
    moved = at_rotation + transform_keypoints(relief, view, translation, zeros)[..., :2] - turned
    driving = rigid + expression[..., :2]  # the keypoints at `rotation`: x = R·x_c + t + δ, in the image plane
    return moved, thin_plate_points(driving, source, at_rotation, anchors_per_side, regularisation)
