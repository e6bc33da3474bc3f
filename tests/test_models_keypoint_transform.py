"""Rotation convention and the keypoint transform x = R·x_c + t + δ."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from codec.models.blocks import keypoints_to_gaussian, make_coordinate_grid, soft_argmax
from codec.models.keypoint_transform import rotation_matrix, transform_keypoints

angle = st.floats(-180, 180, allow_nan=False)


@settings(max_examples=50, deadline=None)
@given(angle, angle, angle)
def test_rotation_is_orthonormal(yaw, pitch, roll):
    rot = rotation_matrix(torch.tensor([yaw, pitch, roll], dtype=torch.float64))
    assert torch.allclose(rot @ rot.T, torch.eye(3, dtype=torch.float64), atol=1e-12)
    assert torch.linalg.det(rot).item() == pytest.approx(1.0, abs=1e-12)


def _rot(yaw=0.0, pitch=0.0, roll=0.0):
    return rotation_matrix(torch.tensor([yaw, pitch, roll], dtype=torch.float64))


def test_known_angles():
    x, y, z = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(_rot(yaw=90) @ x, -z, atol=1e-12)  # yaw turns about y
    assert torch.allclose(_rot(yaw=90) @ z, x, atol=1e-12)
    assert torch.allclose(_rot(pitch=90) @ y, z, atol=1e-12)  # pitch about x
    assert torch.allclose(_rot(roll=90) @ x, y, atol=1e-12)  # roll about z
    assert torch.allclose(_rot(30, 20, 10), _rot(pitch=20) @ _rot(yaw=30) @ _rot(roll=10), atol=1e-12)
    c, s = math.cos(math.radians(40)), math.sin(math.radians(40))
    assert torch.allclose(_rot(roll=40)[:2, :2], torch.tensor([[c, -s], [s, c]], dtype=torch.float64))


def test_transform_round_trip():
    torch.manual_seed(0)
    canonical = torch.rand(4, 20, 3, dtype=torch.float64) * 2 - 1
    angles = torch.rand(4, 3, dtype=torch.float64) * 180 - 90
    t, delta = torch.randn(4, 3, dtype=torch.float64) * 0.1, torch.randn(4, 20, 3, dtype=torch.float64) * 0.05
    x = transform_keypoints(canonical, angles, t, delta)
    back = (x - t[:, None] - delta) @ rotation_matrix(angles)  # R⁻¹ = Rᵀ, applied to row vectors
    assert torch.allclose(back, canonical, atol=1e-12)
    assert not torch.allclose(x, canonical, atol=1e-2)


def test_warping_a_volume_moves_its_keypoints_like_the_transform():
    """Warp Gaussians at x_c by the pose with grid_sample; soft-argmax finds them at R·x_c + t."""
    spatial = (24, 32, 32)
    canonical = torch.tensor([[[0.3, -0.2, 0.1], [-0.25, 0.3, -0.15], [0.0, 0.0, 0.35]]])
    angles, t = torch.tensor([[25.0, -15.0, 10.0]]), torch.tensor([[0.05, -0.08, 0.04]])
    expected = transform_keypoints(canonical, angles, t, torch.zeros_like(canonical))
    source = keypoints_to_gaussian(canonical, spatial, variance=0.004)
    # Backward warp: the driving voxel p reads the source at R⁻¹ (p − t).
    grid = (make_coordinate_grid(spatial) - t[0]) @ rotation_matrix(angles[0])
    warped = F.grid_sample(source, grid[None], align_corners=True)
    found, _ = soft_argmax(torch.log(warped + 1e-12), temperature=1.0)
    assert torch.allclose(found, expected, atol=0.04)
    assert not torch.allclose(found, canonical, atol=0.04)
