"""Random affine + thin-plate-spline warps for the equivariance losses.

A warp T maps coordinates of the warped image to coordinates of the original image (both in the
(x, y) ∈ [-1, 1] convention of `codec.models.blocks`), so `warp_image` samples the original at T(p).
A detector D is equivariant when T(D(warped)) = D(original).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from codec.models.blocks import make_coordinate_grid


@dataclass(frozen=True)
class WarpConfig:
    """Strength of the random warps (FOMM's defaults: mild affine, gentle 5x5 thin-plate spline)."""

    sigma_affine: float = 0.05
    sigma_tps: float = 0.005
    tps_points: int = 5


class RandomWarp:
    """One random warp per batch item, differentiable in the coordinates it is applied to."""

    def __init__(self, batch: int, config: WarpConfig = WarpConfig(), *, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        noise = torch.randn(batch, 2, 3, generator=generator, dtype=dtype) * config.sigma_affine
        self.theta = (noise + torch.eye(2, 3, dtype=dtype)).to(device)
        n = config.tps_points
        self.control = make_coordinate_grid((n, n), dtype).reshape(1, n * n, 2).to(device)
        if config.sigma_tps > 0 and n > 0:
            weights = torch.randn(batch, n * n, generator=generator, dtype=dtype) * config.sigma_tps
            self.tps_weights = weights.to(device)
        else:
            self.tps_weights = None

    def transform(self, points: torch.Tensor) -> torch.Tensor:
        """T(points) for points (B, N, 2) ordered (x, y)."""
        out = points @ self.theta[:, :, :2].transpose(1, 2) + self.theta[:, None, :, 2]
        if self.tps_weights is not None:
            r2 = ((points[:, :, None, :] - self.control[:, None, :, :]) ** 2).sum(-1)
            # The TPS kernel r² log r written in r² so it stays smooth (and zero) at a control point.
            basis = 0.5 * r2 * torch.log(r2 + 1e-12)
            out = out + (basis * self.tps_weights[:, None, :]).sum(-1, keepdim=True)
        return out

    def jacobian(self, points: torch.Tensor) -> torch.Tensor:
        """dT/dp at points (B, N, 2) → (B, N, 2, 2); keeps the graph so losses can back-propagate."""
        if not points.requires_grad:
            points = points.detach().requires_grad_(True)
        moved = self.transform(points)
        rows = [torch.autograd.grad(moved[..., i].sum(), points, create_graph=True)[0] for i in range(2)]
        return torch.stack(rows, dim=-2)

    def warp_image(self, image: torch.Tensor) -> torch.Tensor:
        """The image (B, C, H, W) resampled so that pixel p of the result shows the original at T(p)."""
        b, _, h, w = image.shape
        grid = make_coordinate_grid((h, w), image.dtype, image.device).reshape(1, h * w, 2).expand(b, -1, -1)
        sample_at = self.transform(grid).reshape(b, h, w, 2)
        return F.grid_sample(image, sample_at, mode="bilinear", padding_mode="reflection", align_corners=True)
