"""Thin-plate-spline warps through keypoints: where each pixel of a driving frame comes from in the keyframe.

Coordinates follow `codec.models.blocks`: (x, y) ∈ [-1, 1], −1/+1 at the centres of the first/last
pixel (grid_sample with align_corners=True). A ring of fixed anchors on the image border keeps the
background still and the linear system well posed however the keypoints fall.
"""
from __future__ import annotations

import torch

from .blocks import make_coordinate_grid
from .keypoint_transform import at_least_float32


def border_anchors(per_side: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """The 4·(per_side − 1) points of a per_side × per_side grid that lie on the border: (A, 2)."""
    grid = make_coordinate_grid((per_side, per_side), dtype, device).reshape(-1, 2)
    return grid[(grid.abs() == 1).any(-1)]


def _kernel(r2: torch.Tensor) -> torch.Tensor:
    # U = r² log r², written in r² so it is smooth and zero at a control point.
    return r2 * torch.log(r2 + 1e-9)


def thin_plate_grid(driving: torch.Tensor, source: torch.Tensor, size: int, anchors_per_side: int = 5,
                    regularisation: float = 1e-3) -> torch.Tensor:
    """Sampling grid (B, size, size, 2): the spline through driving→source points (B, N, 2), plus anchors.

    Equal point sets give the identity grid (up to float rounding). Computed in float32 even under
    autocast: the system is ill-conditioned in bf16.
    """
    grid = make_coordinate_grid((size, size), torch.promote_types(driving.dtype, torch.float32), driving.device)
    points = grid.reshape(1, -1, 2).expand(driving.shape[0], -1, -1)
    return thin_plate_points(driving, source, points, anchors_per_side, regularisation).reshape(-1, size, size, 2)


def thin_plate_points(driving: torch.Tensor, source: torch.Tensor, query: torch.Tensor, anchors_per_side: int = 5,
                      regularisation: float = 1e-3) -> torch.Tensor:
    """Where the spline of `thin_plate_grid` takes the points `query` (B, Q, 2): (B, Q, 2); no anchors when
    `anchors_per_side` is 0."""
    with torch.autocast(driving.device.type, enabled=False):
        driving, source, query = at_least_float32(driving), at_least_float32(source), at_least_float32(query)
        b = driving.shape[0]
        ctrl, value = driving, source
        if anchors_per_side:
            anchors = border_anchors(anchors_per_side, driving.dtype, driving.device).expand(b, -1, -1)
            ctrl, value = torch.cat([driving, anchors], 1), torch.cat([source, anchors], 1)
        n = ctrl.shape[1]
        kernel = _kernel(((ctrl[:, :, None] - ctrl[:, None]) ** 2).sum(-1))
        kernel = kernel + regularisation * torch.eye(n, dtype=ctrl.dtype, device=ctrl.device)
        affine = torch.cat([torch.ones_like(ctrl[..., :1]), ctrl], -1)  # (B, N, 3)
        system = torch.cat([torch.cat([kernel, affine], 2),
                            torch.cat([affine.transpose(1, 2), affine.new_zeros(b, 3, 3)], 2)], 1)
        rhs = torch.cat([value, value.new_zeros(b, 3, 2)], 1)
        coef = torch.linalg.solve(system, rhs)  # (B, N + 3, 2): kernel weights, then affine part
        basis = _kernel(((query[:, :, None] - ctrl[:, None]) ** 2).sum(-1))
        points = torch.cat([torch.ones_like(query[..., :1]), query], -1)
        return basis @ coef[:, :n] + points @ coef[:, n:]
