"""Shared blocks: grids follow grid_sample's convention, soft-argmax finds peaks, hourglass shapes."""
import pytest
import torch
import torch.nn.functional as F

from codec.models.blocks import (
    Conv3dBatch1,
    Hourglass2d,
    Hourglass3d,
    ResBlock2d,
    ResBlock3d,
    keypoints_to_gaussian,
    make_coordinate_grid,
    soft_argmax,
)


def test_coordinate_grid_is_grid_sample_identity():
    torch.manual_seed(0)
    vol = torch.randn(1, 2, 3, 5, 7)
    grid = make_coordinate_grid((3, 5, 7))
    assert grid.shape == (3, 5, 7, 3)
    assert torch.allclose(grid[0, 0, :, 0], torch.linspace(-1, 1, 7))  # x runs along width
    assert torch.allclose(grid[0, :, 0, 1], torch.linspace(-1, 1, 5))  # y along height
    assert torch.allclose(grid[:, 0, 0, 2], torch.linspace(-1, 1, 3))  # z along depth
    out = F.grid_sample(vol, grid[None], align_corners=True)
    assert torch.allclose(out, vol, atol=1e-5)


@pytest.mark.parametrize("spatial", [(17, 23), (15, 17, 21)])
def test_soft_argmax_recovers_gaussian_centre_between_voxels(spatial):
    kp = torch.tensor([[[0.25, -0.5, 0.33][: len(spatial)], [-0.6, 0.1, -0.3][: len(spatial)]]])
    logits = torch.log(keypoints_to_gaussian(kp, spatial, variance=0.01) + 1e-12)
    found, heat = soft_argmax(logits, temperature=1.0)
    assert heat.shape == (1, 2, *spatial)
    assert torch.allclose(heat.flatten(2).sum(-1), torch.ones(1, 2))
    assert torch.allclose(found, kp, atol=0.01)


def test_soft_argmax_recovers_planted_voxel():
    logits = torch.zeros(2, 1, 5, 9, 11)
    logits[0, 0, 4, 2, 7] = 10.0
    logits[1, 0, 0, 8, 0] = 10.0
    found, _ = soft_argmax(logits, temperature=0.1)
    expected = torch.tensor([[[7 / 5 - 1, 2 / 4 - 1, 1.0]], [[-1.0, 1.0, -1.0]]])
    assert torch.allclose(found, expected, atol=1e-6)


def test_gaussian_peaks_at_keypoint():
    kp = torch.tensor([[[1.0, -1.0]]])
    heat = keypoints_to_gaussian(kp, (5, 5), variance=0.1)
    assert heat[0, 0, 0, 4] == pytest.approx(1.0)  # row y=-1 (top), column x=+1 (right)
    assert heat[0, 0].argmax() == 4
    with pytest.raises(ValueError, match="do not match"):
        keypoints_to_gaussian(kp, (5, 5, 5), 0.1)


def test_hourglass_shapes():
    hg2 = Hourglass2d(3, 4, num_blocks=3, max_features=16)
    assert hg2(torch.rand(2, 3, 16, 16)).shape == (2, hg2.out_channels, 16, 16) and hg2.out_channels == 7
    hg3 = Hourglass3d(5, 4, num_blocks=2, max_features=8)
    assert hg3(torch.rand(2, 5, 3, 8, 8)).shape == (2, 9, 3, 8, 8)  # depth is never pooled


def test_residual_blocks_keep_shape():
    assert ResBlock2d(4)(torch.rand(1, 4, 6, 6)).shape == (1, 4, 6, 6)
    assert ResBlock3d(4)(torch.rand(1, 4, 2, 6, 6)).shape == (1, 4, 2, 6, 6)


def test_batch1_conv3d_matches_reference():
    torch.manual_seed(0)
    conv = Conv3dBatch1(3, 4, 3, padding=1)
    x = torch.randn(1, 3, 4, 6, 6)
    with torch.no_grad():
        fast = conv(x)
    assert torch.allclose(fast, F.conv3d(x, conv.weight, conv.bias, padding=1), atol=1e-5)
    assert conv(x).requires_grad  # training keeps autograd's path
