"""Building blocks shared by the fv2v and FOMM networks: conv blocks, hourglasses, grids, heatmaps.

Coordinate convention (used by every network and by `grid_sample(..., align_corners=True)`):
a grid's last axis is ordered (x, y[, z]) = (width, height[, depth]), each in [-1, 1] with -1 and
+1 at the centres of the first and last samples.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}


def _pool(dims: int, scale: int) -> tuple[int, ...]:
    # 3D volumes keep their depth: the paper pools and up-samples only height and width.
    return (scale,) * 2 if dims == 2 else (1, scale, scale)


def _check_dims(dims: int) -> None:
    if dims not in _CONV:
        raise ValueError(f"dims must be 2 or 3, got {dims}")


class Conv3dBatch1(nn.Conv3d):
    """Conv3d that keeps narrow batch-1 inputs on oneDNN.

    PyTorch routes a 3x3x3 conv3d with batch 1 and B·C·D·H <= 20480 to `slow_conv3d`, 10-30x slower
    than oneDNN on this CPU; calling the oneDNN kernel directly gives the same result.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and x.shape[0] == 1
            and not torch.is_grad_enabled()
            and torch.backends.mkldnn.is_available()
            and self.padding_mode == "zeros"
        ):
            return torch.mkldnn_convolution(
                x.contiguous(), self.weight, self.bias, self.padding, self.stride, self.dilation, self.groups
            )
        return super().forward(x)


def conv(dims: int, in_ch: int, out_ch: int, kernel_size: int = 3, bias: bool = True) -> nn.Module:
    """A 'same'-padded convolution in 2 or 3 dimensions."""
    _check_dims(dims)
    cls = Conv3dBatch1 if dims == 3 else nn.Conv2d
    return cls(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=bias)


class SameBlock(nn.Module):
    """Conv → BatchNorm → ReLU at constant resolution."""

    def __init__(self, dims: int, in_ch: int, out_ch: int, kernel_size: int = 3):
        super().__init__()
        self.conv = conv(dims, in_ch, out_ch, kernel_size)
        self.norm = _NORM[dims](out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class ResBlock(nn.Module):
    """Pre-activation residual block (BN → ReLU → conv, twice) keeping channels and resolution."""

    def __init__(self, dims: int, channels: int, kernel_size: int = 3):
        super().__init__()
        _check_dims(dims)
        self.norm1 = _NORM[dims](channels)
        self.conv1 = conv(dims, channels, channels, kernel_size)
        self.norm2 = _NORM[dims](channels)
        self.conv2 = conv(dims, channels, channels, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return x + out


class DownBlock(nn.Module):
    """Conv → BatchNorm → ReLU → 2x average pooling (height and width only for 3D)."""

    def __init__(self, dims: int, in_ch: int, out_ch: int, kernel_size: int = 3):
        super().__init__()
        self.block = SameBlock(dims, in_ch, out_ch, kernel_size)
        self.pool = (nn.AvgPool2d if dims == 2 else nn.AvgPool3d)(_pool(dims, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.block(x))


class UpBlock(nn.Module):
    """2x nearest up-sampling (height and width only for 3D) → conv → BatchNorm → ReLU."""

    def __init__(self, dims: int, in_ch: int, out_ch: int, kernel_size: int = 3):
        super().__init__()
        self.dims = dims
        self.block = SameBlock(dims, in_ch, out_ch, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(F.interpolate(x, scale_factor=_pool(self.dims, 2), mode="nearest"))


class ResBlock2d(ResBlock):
    """2D residual block."""

    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__(2, channels, kernel_size)


class ResBlock3d(ResBlock):
    """3D residual block."""

    def __init__(self, channels: int, kernel_size: int = 3):
        super().__init__(3, channels, kernel_size)


class SameBlock2d(SameBlock):
    """2D conv → BN → ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3):
        super().__init__(2, in_ch, out_ch, kernel_size)


class DownBlock2d(DownBlock):
    """2D conv → BN → ReLU → 2x pooling."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3):
        super().__init__(2, in_ch, out_ch, kernel_size)


class UpBlock2d(UpBlock):
    """2x up-sampling → 2D conv → BN → ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3):
        super().__init__(2, in_ch, out_ch, kernel_size)


class Hourglass(nn.Module):
    """U-Net style encoder/decoder; the output concatenates the input with the last decoder features.

    Channels double per level from `block_expansion` up to `max_features`; `out_channels` is
    `block_expansion + in_channels`.
    """

    def __init__(self, dims: int, in_channels: int, block_expansion: int, num_blocks: int, max_features: int):
        super().__init__()
        _check_dims(dims)
        widths = [min(max_features, block_expansion * 2 ** (i + 1)) for i in range(num_blocks)]
        enc_in = [in_channels] + widths[:-1]
        self.down = nn.ModuleList(DownBlock(dims, a, b) for a, b in zip(enc_in, widths))
        # Decoder level i consumes the deeper features concatenated with the encoder skip at that level.
        self.up = nn.ModuleList()
        for i in reversed(range(num_blocks)):
            in_ch = widths[i] if i == num_blocks - 1 else 2 * widths[i]
            out_ch = block_expansion if i == 0 else widths[i - 1]
            self.up.append(UpBlock(dims, in_ch, out_ch))
        self.out_channels = block_expansion + in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [x]
        for block in self.down:
            skips.append(block(skips[-1]))
        out = skips.pop()
        for block in self.up:
            out = torch.cat([block(out), skips.pop()], dim=1)
        return out


class Hourglass2d(Hourglass):
    """2D hourglass."""

    def __init__(self, in_channels: int, block_expansion: int, num_blocks: int = 5, max_features: int = 1024):
        super().__init__(2, in_channels, block_expansion, num_blocks, max_features)


class Hourglass3d(Hourglass):
    """3D hourglass pooling height and width only."""

    def __init__(self, in_channels: int, block_expansion: int, num_blocks: int = 5, max_features: int = 1024):
        super().__init__(3, in_channels, block_expansion, num_blocks, max_features)


def make_coordinate_grid(spatial_size: tuple[int, ...], dtype=torch.float32, device=None) -> torch.Tensor:
    """Grid of shape (*spatial_size, n) with last axis (x, y[, z]) in [-1, 1] (align_corners=True)."""
    if len(spatial_size) not in (2, 3):
        raise ValueError(f"spatial_size must have 2 or 3 entries, got {spatial_size}")
    axes = [torch.linspace(-1.0, 1.0, n, dtype=dtype, device=device) if n > 1 else
            torch.zeros(1, dtype=dtype, device=device) for n in spatial_size]
    mesh = torch.meshgrid(*axes, indexing="ij")
    # meshgrid returns (depth, height, width) order; grid_sample wants x (width) first.
    return torch.stack(mesh[::-1], dim=-1)


def keypoints_to_gaussian(keypoints: torch.Tensor, spatial_size: tuple[int, ...], variance: float) -> torch.Tensor:
    """Unnormalised Gaussians exp(-|p - kp|² / 2σ²) of shape (B, K, *spatial_size) at each keypoint."""
    dims = keypoints.shape[-1]
    if dims != len(spatial_size):
        raise ValueError(f"{dims}-D keypoints do not match a {len(spatial_size)}-D grid")
    grid = make_coordinate_grid(spatial_size, keypoints.dtype, keypoints.device)
    shape = keypoints.shape[:2] + (1,) * dims + (dims,)
    diff = grid - keypoints.reshape(shape)
    return torch.exp(-0.5 * (diff**2).sum(-1) / variance)


def soft_argmax(logits: torch.Tensor, temperature: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax over each (B, K, *spatial) map and its expected coordinate.

    Returns (keypoints (B, K, n) ordered (x, y[, z]) in [-1, 1], heatmap (B, K, *spatial) summing to 1).
    """
    b, k, *spatial = logits.shape
    heat = F.softmax(logits.reshape(b, k, -1) / temperature, dim=-1).reshape(logits.shape)
    grid = make_coordinate_grid(tuple(spatial), logits.dtype, logits.device)
    keypoints = (heat.unsqueeze(-1) * grid).flatten(2, -2).sum(2)
    return keypoints, heat
