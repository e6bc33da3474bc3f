"""Training losses of face-vid2vid (and the FOMM baseline), as small functions of the model outputs.

Every loss returns a scalar tensor; the trainer multiplies it by its `LossWeights` entry. Coordinates
follow `codec.models.blocks`: (x, y[, z]) in [-1, 1].
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from codec.models.head_pose import angle_bins
from codec.train.warp import RandomWarp


@dataclass(frozen=True)
class LossWeights:
    """Loss weights of the face-vid2vid paper; feature matching uses pix2pixHD's usual 10.

    `pixel` (mean L1 on the picture) and `landmark` (keypoint projections to face landmarks) are not
    the paper's: the image renderer turns them on. `temporal` (the frame-to-frame change of two
    consecutive renders against the source's, on consecutive-frame pairs) and `foreground` (the mean
    of the keyframe's foreground mask: move no more than must move) train the still-background renderer.
    """

    perceptual: float = 10.0
    gan: float = 1.0
    feature_matching: float = 10.0
    equivariance: float = 20.0
    jacobian_equivariance: float = 20.0
    keypoint_prior: float = 10.0
    head_pose: float = 20.0
    deformation: float = 5.0
    pixel: float = 0.0
    landmark: float = 0.0
    temporal: float = 0.0
    foreground: float = 0.0


@dataclass(frozen=True)
class KeypointPriorConfig:
    """Keypoints stay at least `min_distance` apart and their mean depth near `depth` (paper values)."""

    min_distance: float = 0.1
    depth: float = 0.33


# Equal weights per VGG16 stage: every stage's mean |Δ| is O(0.1-1) on [0,1] images, and the
# pyramid already stresses fine detail at full resolution and shape at the coarse levels.
PERCEPTUAL_LAYER_WEIGHTS = (1.0, 1.0, 1.0, 1.0, 1.0)
PERCEPTUAL_SCALES = (1.0, 0.5, 0.25, 0.125)
# VGG16 pools four times before relu5_3: a smaller pyramid level has no relu5_3 map, so it is skipped.
PERCEPTUAL_MIN_SIDE = 16


class PerceptualLoss(nn.Module):
    """Σ over pyramid scales and VGG16 stages (relu1_2 … relu5_3) of the mean L1 feature distance.

    Pyramid levels smaller than PERCEPTUAL_MIN_SIDE pixels are skipped.
    """

    def __init__(self, features: nn.Module, scales: Sequence[float] = PERCEPTUAL_SCALES,
                 layer_weights: Sequence[float] = PERCEPTUAL_LAYER_WEIGHTS):
        super().__init__()
        self.features = features.eval().requires_grad_(False)
        self.scales = tuple(scales)
        self.layer_weights = tuple(layer_weights)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """output, target: (B, 3, H, W) in [0, 1]; gradients flow into `output` only."""
        if min(output.shape[-2:]) < PERCEPTUAL_MIN_SIDE:
            raise ValueError(f"perceptual loss needs images of at least {PERCEPTUAL_MIN_SIDE} px, got {tuple(output.shape)}")
        total = output.new_zeros(())
        for scale in self.scales:
            if min(output.shape[-2:]) * scale < PERCEPTUAL_MIN_SIDE:
                continue
            out_s, tgt_s = _resize(output, scale), _resize(target, scale)
            out_f = self.features(out_s)
            with torch.no_grad():
                tgt_f = self.features(tgt_s)
            if len(out_f) != len(self.layer_weights):
                raise ValueError(f"feature extractor gave {len(out_f)} maps, expected {len(self.layer_weights)}")
            for weight, a, b in zip(self.layer_weights, out_f, tgt_f):
                total = total + weight * (a.float() - b.float()).abs().mean()
        return total


def _resize(image: torch.Tensor, scale: float) -> torch.Tensor:
    if scale == 1.0:
        return image
    return F.interpolate(image, scale_factor=scale, mode="bilinear", antialias=True, align_corners=False)


def hinge_discriminator_loss(real_logits: Sequence[torch.Tensor], fake_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """Hinge loss of a multi-scale discriminator, averaged over scales."""
    terms = [F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real_logits, fake_logits, strict=True)]
    return torch.stack(terms).mean()


def hinge_generator_loss(fake_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """The generator's hinge term −D(fake), averaged over scales."""
    return torch.stack([-f.mean() for f in fake_logits]).mean()


def feature_matching_loss(real_features: Sequence[Sequence[torch.Tensor]],
                          fake_features: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """Mean L1 between discriminator features of real and generated frames, averaged over scales."""
    terms = []
    for real_scale, fake_scale in zip(real_features, fake_features, strict=True):
        layer_terms = [(f - r.detach()).abs().mean() for r, f in zip(real_scale, fake_scale, strict=True)]
        terms.append(torch.stack(layer_terms).mean())
    return torch.stack(terms).mean()


def equivariance_loss(keypoints: torch.Tensor, warped_keypoints: torch.Tensor, warp: RandomWarp) -> torch.Tensor:
    """Mean L1 between keypoints of a frame and T(keypoints of its warped copy), in the image plane.

    keypoints, warped_keypoints: (B, K, 2 or 3); 3-D keypoints are projected by dropping depth.
    """
    return (keypoints[..., :2].float() - warp.transform(warped_keypoints[..., :2].float())).abs().mean()


def jacobian_equivariance_loss(jacobians: torch.Tensor, warped_keypoints: torch.Tensor,
                               warped_jacobians: torch.Tensor, warp: RandomWarp) -> torch.Tensor:
    """Mean |I − J⁻¹ · (dT · J_warped)|: the frame's local affine maps must compose with the warp's.

    jacobians, warped_jacobians: (B, K, 2, 2); warped_keypoints: (B, K, 2).
    """
    composed = warp.jacobian(warped_keypoints[..., :2].float()) @ warped_jacobians.float()
    eye = torch.eye(2, dtype=composed.dtype, device=composed.device)
    return (eye - torch.linalg.inv(jacobians.float()) @ composed).abs().mean()


def keypoint_prior_loss(keypoints: torch.Tensor, config: KeypointPriorConfig = KeypointPriorConfig()) -> torch.Tensor:
    """Σ over ordered pairs of the hinge on distances below `min_distance` (as the paper's double sum)
    plus |mean depth − `depth`|; keypoints (B, K, 3)."""
    k = keypoints.shape[1]
    keypoints = keypoints.float()
    # The epsilon keeps sqrt differentiable on the (masked) diagonal; cdist's backward is NaN there.
    dist = torch.sqrt(((keypoints[:, :, None] - keypoints[:, None]) ** 2).sum(-1) + 1e-12)
    off_diagonal = ~torch.eye(k, dtype=torch.bool, device=keypoints.device)
    spread = F.relu(config.min_distance - dist[:, off_diagonal]).sum(-1).mean()
    depth = (keypoints[..., 2].mean(-1) - config.depth).abs().mean()
    return spread + depth


def head_pose_loss(pose_logits: torch.Tensor, rotation: torch.Tensor, labels: torch.Tensor,
                   expectation_weight: float = 1.0) -> torch.Tensor:
    """Cross-entropy on yaw/pitch/roll bins plus L1 (radians) of the predicted angles, skipping NaN labels.

    pose_logits (B, 3, bins); rotation (B, 3) degrees as the model computes them from the logits;
    labels (B, 3) degrees, NaN where the labeller found no face. Zero when every label is NaN.
    """
    valid = ~torch.isnan(labels)
    if not valid.any():
        return pose_logits.sum() * 0.0
    target = angle_bins(torch.nan_to_num(labels))
    ce = F.cross_entropy(pose_logits.float().permute(0, 2, 1), target, reduction="none")
    l1 = (rotation.float() - torch.nan_to_num(labels)).abs() * (math.pi / 180.0)
    per_angle = ce + expectation_weight * l1
    return per_angle[valid].mean()


def deformation_prior_loss(expression: torch.Tensor) -> torch.Tensor:
    """Mean |δ| of the expression deformations (B, K, 3)."""
    return expression.abs().mean()


def landmark_loss(keypoints: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
    """Mean L1 between keypoint k's image projection (B, K, 2+) and landmark k (B, K, 2), skipping NaN labels."""
    valid = ~torch.isnan(landmarks)
    if not valid.any():
        return keypoints.sum() * 0.0
    return (keypoints[..., :2].float() - torch.nan_to_num(landmarks)).abs()[valid].mean()


def temporal_loss(prediction: torch.Tensor, previous_prediction: torch.Tensor, target: torch.Tensor,
                  previous_target: torch.Tensor) -> torch.Tensor:
    """Mean |Δ prediction − Δ target| of two consecutive frames: a render that wobbles where the source
    is still, or stands still where it moves, pays here even when each frame alone looks right."""
    return ((prediction - previous_prediction) - (target - previous_target)).abs().mean()
