"""FOMM dense motion: keypoints and Jacobians + source image → dense 2D flow, an occlusion map (and, for the image
renderer, the colours to fill in where the source shows nothing)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks import Hourglass2d, conv, make_coordinate_grid
from ..keypoint_transform import at_least_float32
from ..motion_field import heatmap_differences
from .config import FOMMConfig

# Decoded streams may carry singular Jacobians; a floor on |det| keeps the flow finite.
_MIN_DET = 1e-6
# The image renderer's starting occlusion logit: untrained, it shows the warp, not its fill (as fv2v's refiner).
_IMAGE_OCCLUSION_BIAS = -4.0


def right_divide(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a · b⁻¹ for (..., 2, 2) matrices through b's adjugate, so a == b gives the identity exactly."""
    a00, a01, a10, a11 = a.flatten(-2).unbind(-1)
    b00, b01, b10, b11 = b.flatten(-2).unbind(-1)
    det = b00 * b11 - b01 * b10
    det = torch.where(det.abs() < _MIN_DET, torch.where(det < 0, -_MIN_DET, _MIN_DET), det)
    # Products written in the order of `det` keep the diagonal equal to it bit for bit when a == b.
    rows = ((a00 * b11 - a01 * b10, a01 * b00 - a00 * b01), (a10 * b11 - a11 * b10, a11 * b00 - a10 * b01))
    return torch.stack([torch.stack(row, -1) for row in rows], -2) / det[..., None, None]


def sparse_motions(kp_source: torch.Tensor, jac_source: torch.Tensor, kp_driving: torch.Tensor,
                   jac_driving: torch.Tensor, spatial_size: tuple[int, int]) -> torch.Tensor:
    """K+1 driving→source coordinate maps (B, K+1, H, W, 2); index 0 is the identity background.

    First order around keypoint k: T_k(z) = kp_s,k + J_s,k J_d,k⁻¹ (z − kp_d,k); float32 with autocast
    off, since bf16 coordinates and inverses are too coarse.
    """
    with torch.autocast(kp_source.device.type, enabled=False):
        kp_source, jac_source, kp_driving, jac_driving = map(
            at_least_float32, (kp_source, jac_source, kp_driving, jac_driving))
        grid = make_coordinate_grid(spatial_size, kp_source.dtype, kp_source.device)
        b, k, _ = kp_source.shape
        jacobian = right_divide(jac_source, jac_driving)
        rel = grid.view(1, 1, -1, 2) - kp_driving.unsqueeze(2)
        per_kp = (rel @ jacobian.transpose(-1, -2) + kp_source.unsqueeze(2)).view(b, k, *spatial_size, 2)
        return torch.cat([grid.expand(b, 1, *spatial_size, 2), per_kp], dim=1)


class DenseMotion(nn.Module):
    """Source deformed by each sparse motion + heatmap differences → hourglass → K+1 soft masks, occlusion (and
    RGB fill with the image renderer)."""

    def __init__(self, config: FOMMConfig):
        super().__init__()
        cfg = config.dense_motion
        self.num_keypoints, self.input_size, self.variance = config.num_keypoints, cfg.input_size, cfg.kp_variance
        parts = config.num_keypoints + 1
        self.hourglass = Hourglass2d(parts * 4, cfg.block_expansion, cfg.num_blocks, cfg.max_features)
        self.mask = conv(2, self.hourglass.out_channels, parts, cfg.mask_kernel)
        self.occlusion = conv(2, self.hourglass.out_channels, 1, cfg.occlusion_kernel)
        self.fill = None
        if config.renderer == "image":
            self.fill = conv(2, self.hourglass.out_channels, 3, cfg.occlusion_kernel)
            nn.init.constant_(self.occlusion.bias, _IMAGE_OCCLUSION_BIAS)

    def forward(self, source: torch.Tensor, kp_source: torch.Tensor, jac_source: torch.Tensor,
                kp_driving: torch.Tensor, jac_driving: torch.Tensor) -> dict[str, torch.Tensor]:
        """source (B,3,s,s) at `input_size`, keypoints (B,K,2), Jacobians (B,K,2,2)
        → flow (B,s,s,2), occlusion (B,1,s,s), mask (B,K+1,s,s) [, fill (B,3,s,s) in (0,1)]."""
        b, c, h, w = source.shape
        parts = self.num_keypoints + 1
        sparse = sparse_motions(kp_source, jac_source, kp_driving, jac_driving, (h, w))
        heat = heatmap_differences(kp_source, kp_driving, (h, w), self.variance)
        expanded = source.unsqueeze(1).expand(b, parts, c, h, w).reshape(b * parts, c, h, w)
        deformed = F.grid_sample(expanded, sparse.view(b * parts, h, w, 2), align_corners=True)
        x = torch.cat([heat.unsqueeze(2), deformed.view(b, parts, c, h, w)], dim=2)
        feat = self.hourglass(x.view(b, -1, h, w))
        mask = F.softmax(self.mask(feat), dim=1)
        flow = (mask.unsqueeze(-1) * sparse).sum(dim=1)
        out = {"flow": flow, "occlusion": torch.sigmoid(self.occlusion(feat)), "mask": mask}
        if self.fill is not None:
            out["fill"] = torch.sigmoid(self.fill(feat))
        return out
