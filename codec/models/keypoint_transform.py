"""Head rotation from yaw/pitch/roll degrees and the keypoint transform x = R·x_c + t + δ.

Axes are those of the feature volume and of `grid_sample`: x to the image right, y down the image
rows, z along the volume depth (into the picture). yaw turns about y, pitch about x, roll about z,
each by the right-hand rule in these axes, and R = R_x(pitch) · R_y(yaw) · R_z(roll) (roll applied
first); a positive yaw turns a nose pointing at the viewer (−z) towards image left (−x).
Training, the encoder and the decoder all go through `transform_keypoints`.
"""
from __future__ import annotations

import torch


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """x in float32, or float64 if it already is."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def rotation_matrix(angles: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) from angles (..., 3) = (yaw, pitch, roll) in degrees."""
    yaw, pitch, roll = torch.deg2rad(angles).unbind(-1)
    one, zero = torch.ones_like(yaw), torch.zeros_like(yaw)

    def mat(rows):
        return torch.stack([torch.stack(r, -1) for r in rows], -2)

    cy, sy, cp, sp, cr, sr = yaw.cos(), yaw.sin(), pitch.cos(), pitch.sin(), roll.cos(), roll.sin()
    r_pitch = mat([[one, zero, zero], [zero, cp, -sp], [zero, sp, cp]])
    r_yaw = mat([[cy, zero, sy], [zero, one, zero], [-sy, zero, cy]])
    r_roll = mat([[cr, -sr, zero], [sr, cr, zero], [zero, zero, one]])
    return r_pitch @ r_yaw @ r_roll


def transform_keypoints(
    canonical: torch.Tensor, angles: torch.Tensor, translation: torch.Tensor, expression: torch.Tensor
) -> torch.Tensor:
    """x = R(angles)·x_c + t + δ for canonical (B,K,3), angles (B,3) deg, translation (B,3), expression (B,K,3)."""
    # Keypoints are motion symbols: keep them float32 even under bf16 autocast in training.
    with torch.autocast(canonical.device.type, enabled=False):
        canonical, angles, translation, expression = map(
            at_least_float32, (canonical, angles, translation, expression))
        rot = rotation_matrix(angles)
        return canonical @ rot.transpose(-1, -2) + translation.unsqueeze(-2) + expression
