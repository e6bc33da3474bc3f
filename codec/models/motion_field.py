"""M: the motion field estimator, keypoints + source volume → dense 3D flow and a 2D occlusion map."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Hourglass3d, SameBlock, conv, keypoints_to_gaussian, make_coordinate_grid
from .config import FV2VConfig
from .keypoint_transform import at_least_float32


def sparse_motions(
    kp_source: torch.Tensor, kp_driving: torch.Tensor, rot_source: torch.Tensor, rot_driving: torch.Tensor,
    spatial_size: tuple[int, int, int],
) -> torch.Tensor:
    """K+1 driving→source coordinate maps (B, K+1, D, H, W, 3); index 0 is the identity background.

    Around keypoint k, first order: T_k(z) = x_s,k + R_s R_d⁻¹ (z − x_d,k). Computed in float32
    (autocast off): bf16 coordinates would be off by a sizeable fraction of a voxel.
    """
    with torch.autocast(kp_source.device.type, enabled=False):
        return _sparse_motions(*map(at_least_float32, (kp_source, kp_driving, rot_source, rot_driving)),
                               spatial_size)


def _sparse_motions(kp_source, kp_driving, rot_source, rot_driving, spatial_size):
    grid = make_coordinate_grid(spatial_size, kp_source.dtype, kp_source.device)
    jacobian = rot_source @ rot_driving.transpose(-1, -2)
    b, k, _ = kp_source.shape
    rel = grid.view(1, 1, -1, 3) - kp_driving.unsqueeze(2)
    per_kp = rel @ jacobian.transpose(-1, -2).unsqueeze(1) + kp_source.unsqueeze(2)
    per_kp = per_kp.view(b, k, *spatial_size, 3)
    background = grid.expand(b, 1, *spatial_size, 3)
    return torch.cat([background, per_kp], dim=1)


def heatmap_differences(
    kp_source: torch.Tensor, kp_driving: torch.Tensor, spatial_size: tuple[int, int, int], variance: float
) -> torch.Tensor:
    """Gaussian(driving) − Gaussian(source) per keypoint, zero for the background: (B, K+1, D, H, W)."""
    diff = keypoints_to_gaussian(kp_driving, spatial_size, variance) - keypoints_to_gaussian(
        kp_source, spatial_size, variance
    )
    return torch.cat([torch.zeros_like(diff[:, :1]), diff], dim=1)


class MotionFieldEstimator(nn.Module):
    """Sparse flows warp a compressed source volume; a 3D hourglass predicts K+1 soft masks and occlusion."""

    def __init__(self, config: FV2VConfig):
        super().__init__()
        cfg = config.motion
        self.num_keypoints, self.variance, self.downsample = config.num_keypoints, cfg.kp_variance, cfg.downsample
        depth = config.appearance.volume_depth
        self.compress = SameBlock(3, config.appearance.volume_channels, cfg.compress, kernel_size=1)
        parts = config.num_keypoints + 1
        self.hourglass = Hourglass3d(parts * (cfg.compress + 1), cfg.block_expansion, cfg.num_blocks,
                                     cfg.max_features)
        self.mask = conv(3, self.hourglass.out_channels, parts, cfg.mask_kernel)
        self.occlusion = nn.Conv2d(self.hourglass.out_channels * depth, 1, cfg.occlusion_kernel,
                                   padding=cfg.occlusion_kernel // 2)

    def forward(
        self, volume: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor,
        rot_source: torch.Tensor, rot_driving: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """volume (B,C,D,H,W), keypoints (B,K,3), rotations (B,3,3) → flow (B,D,H,W,3), occlusion (B,1,H,W), mask."""
        full = volume.shape[2:]
        if self.downsample > 1:
            volume = F.avg_pool3d(volume, (1, self.downsample, self.downsample))
        b, _, d, h, w = volume.shape
        parts = self.num_keypoints + 1
        sparse = sparse_motions(kp_source, kp_driving, rot_source, rot_driving, (d, h, w))
        heat = heatmap_differences(kp_source, kp_driving, (d, h, w), self.variance)
        src = self.compress(volume)
        c = src.shape[1]
        src = src.unsqueeze(1).expand(b, parts, c, d, h, w).reshape(b * parts, c, d, h, w)
        warped = F.grid_sample(src, sparse.reshape(b * parts, d, h, w, 3), align_corners=True)
        x = torch.cat([heat.unsqueeze(2), warped.view(b, parts, c, d, h, w)], dim=2).view(b, -1, d, h, w)
        feat = self.hourglass(x)
        mask = F.softmax(self.mask(feat), dim=1)
        flow = (mask.unsqueeze(-1) * sparse).sum(dim=1)
        occlusion = torch.sigmoid(self.occlusion(feat.reshape(b, -1, h, w)))
        if self.downsample > 1:
            # Coordinates are linear in the align_corners grid, so trilinear up-sampling keeps smooth flows exact.
            flow = F.interpolate(flow.permute(0, 4, 1, 2, 3), size=tuple(full), mode="trilinear",
                                 align_corners=True).permute(0, 2, 3, 4, 1)
            occlusion = F.interpolate(occlusion, size=tuple(full[1:]), mode="bilinear", align_corners=True)
        return {"flow": flow, "occlusion": occlusion, "mask": mask}
