"""FaceVid2Vid: the shipped generator-side networks (F, L, H+Δ, M, G) behind the MotionModel protocol."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bitstream.constants import MotionKind

from .appearance import AppearanceExtractor
from .canonical_keypoints import CanonicalKeypointDetector
from .config import FV2VConfig
from .generator import Generator
from .head_pose import HeadPoseExpression
from .keypoint_transform import rotation_matrix, transform_keypoints
from .model_inputs import check_motion, prepare_image
from .motion_field import MotionFieldEstimator


@dataclass
class KeyframeState:
    """What a keyframe costs once: F's volume, canonical and source keypoints, source pose and motion."""

    volume: torch.Tensor  # (B, C, D, H, W)
    canonical: torch.Tensor  # (B, K, 3)
    keypoints: torch.Tensor  # (B, K, 3) source keypoints
    rotation: torch.Tensor  # (B, 3, 3) source rotation matrix
    motion: dict[str, torch.Tensor]  # the source's own motion groups


class FaceVid2Vid(nn.Module):
    """face-vid2vid (Wang, Mallya, Liu, CVPR 2021): keypoints x = R·x_c + t + δ drive a warped 3D volume."""

    kind = MotionKind.FV2V
    config_class = FV2VConfig

    def __init__(self, config: FV2VConfig):
        super().__init__()
        self.config = config
        self.num_keypoints = config.num_keypoints
        self.analysis_size = config.analysis_size
        self.output_size = config.output_size
        self.appearance = AppearanceExtractor(config)
        self.canonical = CanonicalKeypointDetector(config)
        self.head_pose = HeadPoseExpression(config)
        self.motion_field = MotionFieldEstimator(config)
        self.generator = Generator(config)

    def _prepare(self, image: torch.Tensor) -> torch.Tensor:
        return prepare_image(image, self.analysis_size)

    def keypoints(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training hook: canonical, pose_logits (B,3,66), rotation (B,3) deg, translation, expression, keypoints."""
        image = self._prepare(image)
        out = {"canonical": self.canonical(image)["canonical"], **self.head_pose(image)}
        out["keypoints"] = transform_keypoints(out["canonical"], out["rotation"], out["translation"],
                                               out["expression"])
        return out

    def _animate(self, volume, canonical, kp_source, rot_source, motion) -> dict[str, torch.Tensor]:
        angles = motion["rotation"][:, 0]
        kp_driving = transform_keypoints(canonical, angles, motion["translation"][:, 0], motion["expression"])
        field = self.motion_field(volume, kp_source, kp_driving, rot_source, rotation_matrix(angles))
        return {"prediction": self.generator(volume, field["flow"], field["occlusion"]),
                "occlusion": field["occlusion"], "keypoints": kp_driving}

    def training_forward(self, source: torch.Tensor, driving: torch.Tensor) -> dict:
        """Reconstruct `driving` from `source`: prediction, occlusion, source/driving keypoint dicts.

        As in the paper the identity comes from the source: driving keypoints use the source's x_c,
        so `driving["canonical"]` is the source's (call `keypoints(driving)` for L on the driving frame).
        """
        source = self._prepare(source)
        kp_s = self.keypoints(source)
        kp_d = self.head_pose(self._prepare(driving))
        kp_d["canonical"] = kp_s["canonical"]
        motion = _motion_groups(kp_d)
        out = self._animate(self.appearance(source), kp_s["canonical"], kp_s["keypoints"],
                            rotation_matrix(kp_s["rotation"]), motion)
        kp_d["keypoints"] = out["keypoints"]
        return {"prediction": out["prediction"], "occlusion": out["occlusion"], "source": kp_s, "driving": kp_d}

    def analyze_keyframe(self, image: torch.Tensor) -> KeyframeState:
        """Run F, L and H+Δ on a keyframe once; `render` reuses the result for every later frame."""
        image = self._prepare(image)
        kp = self.keypoints(image)
        return KeyframeState(self.appearance(image), kp["canonical"], kp["keypoints"],
                             rotation_matrix(kp["rotation"]), _motion_groups(kp))

    def estimate_motion(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """H+Δ only: rotation (B,1,3) degrees, translation (B,1,3), expression (B,K,3)."""
        return _motion_groups(self.head_pose(self._prepare(image)))

    def render(self, state: KeyframeState, motion: dict[str, torch.Tensor]) -> torch.Tensor:
        """Animate the keyframe with a (possibly decoded or edited) motion dict → (B,3,out,out) in [0,1]."""
        check_motion(motion, self.kind, self.num_keypoints, state.canonical.shape[0])
        return self._animate(state.volume, state.canonical, state.keypoints, state.rotation, motion)["prediction"]


def _motion_groups(pose: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {
        "rotation": pose["rotation"].unsqueeze(1),
        "translation": pose["translation"].unsqueeze(1),
        "expression": pose["expression"],
    }
