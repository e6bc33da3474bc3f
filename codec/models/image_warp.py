"""The image renderers' last step: a flow found at the network's size applied to the keyframe at its own size."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def fade_in(moved: torch.Tensor, full: float) -> torch.Tensor:
    """(B,1,1,1): 0 for a frame whose motion `moved` (B,) is 0, rising linearly to 1 at `full`; the refinement fades
    out with it, so unmoved motion shows the keyframe unchanged."""
    return (moved / full).clamp(max=1.0).view(-1, 1, 1, 1)


def warp_full_resolution(keyframe: torch.Tensor, flow: torch.Tensor, occlusion: torch.Tensor,
                         fill: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """keyframe (B,3,H,W); flow (B,s,s,2) driving→keyframe coordinates in [-1,1]; occlusion (B,1,s,s) in [0,1];
    fill (B,3,s,s) → the prediction (B,3,H,W) and the occlusion at (H, W)."""
    side = keyframe.shape[-2:]
    # Sampling coordinates are linear in the align_corners grid: bilinear up-sampling keeps them exact.
    flow = F.interpolate(flow.permute(0, 3, 1, 2), size=side, mode="bilinear",
                         align_corners=True).permute(0, 2, 3, 1)
    warped = F.grid_sample(keyframe, flow, padding_mode="border", align_corners=True)
    occlusion = F.interpolate(occlusion, size=side, mode="bilinear", align_corners=False)
    fill = F.interpolate(fill, size=side, mode="bilinear", align_corners=False)
    return torch.lerp(warped, fill, occlusion), occlusion
