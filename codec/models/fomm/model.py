"""First Order Motion Model (Siarohin et al., NeurIPS 2019) behind the MotionModel protocol."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bitstream.constants import MotionKind

from ..image_warp import fade_in, warp_full_resolution
from ..model_inputs import check_motion, prepare_image
from .config import FOMMConfig
from .dense_motion import DenseMotion, right_divide
from .generator import Generator
from .keypoint_detector import KeypointDetector


@dataclass
class KeyframeState:
    """What a keyframe costs once: generator features (feature renderer) or the picture itself (image renderer),
    the small source for dense motion, its keypoints."""

    features: torch.Tensor | None  # (B, C, f, f) generator encoder features
    source: torch.Tensor  # (B, 3, s, s) source image at the dense-motion size
    keypoints: torch.Tensor  # (B, K, 2)
    jacobians: torch.Tensor  # (B, K, 2, 2)
    motion: dict[str, torch.Tensor]  # the source's own motion groups
    image: torch.Tensor | None = None  # (B, 3, S, S) the keyframe at its own size (image renderer)


class FOMM(nn.Module):
    """FOMM: keypoints with local affine Jacobians drive an occlusion-aware warp of source features."""

    kind = MotionKind.FOMM
    config_class = FOMMConfig

    def __init__(self, config: FOMMConfig):
        super().__init__()
        self.config = config
        self.num_keypoints = config.num_keypoints
        self.analysis_size = config.analysis_size
        self.image_space = config.renderer == "image"
        # 0: frames come out at the keyframe's own size.
        self.output_size = 0 if self.image_space else config.output_size
        self.detector = KeypointDetector(config)
        self.dense_motion = DenseMotion(config)
        self.generator = None if self.image_space else Generator(config)

    def _prepare(self, image: torch.Tensor) -> torch.Tensor:
        return prepare_image(image, self.analysis_size)

    def _dense_input(self, image: torch.Tensor) -> torch.Tensor:
        size = self.config.dense_motion.input_size
        if image.shape[-1] == size:
            return image
        return F.interpolate(image, size=(size, size), mode="bilinear", align_corners=False, antialias=True)

    def keypoints(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training hook: keypoints (B,K,2) in [-1,1]² and jacobians (B,K,2,2)."""
        out = self.detector(self._prepare(image))
        return {"keypoints": out["keypoints"], "jacobians": out["jacobians"]}

    def _animate(self, state: KeyframeState, kp_driving) -> dict[str, torch.Tensor]:
        kp_source = _source_keypoints(state)
        field = self.dense_motion(state.source, kp_source["keypoints"], kp_source["jacobians"],
                                  kp_driving["keypoints"], kp_driving["jacobians"])
        if not self.image_space:
            return {"prediction": self.generator(state.features, field["flow"], field["occlusion"]), **field}
        # A frame whose keypoints and Jacobians did not move shows the keyframe unchanged: the flow is then the
        # identity, and the fill fades out.
        moved = torch.maximum((kp_driving["keypoints"] - kp_source["keypoints"]).abs().amax(dim=(1, 2)),
                              (kp_driving["jacobians"] - kp_source["jacobians"]).abs().amax(dim=(1, 2, 3)))
        gate = fade_in(moved, self.config.motion_gate)
        prediction, occlusion = warp_full_resolution(state.image, field["flow"], gate * field["occlusion"],
                                                     field["fill"])
        return {**field, "prediction": prediction, "occlusion": occlusion}

    def training_forward(self, source: torch.Tensor, driving: torch.Tensor) -> dict:
        """Reconstruct `driving` from `source`: prediction, occlusion, source/driving keypoint dicts."""
        state = self.analyze_keyframe(source)
        kp_d = self.keypoints(driving)
        out = self._animate(state, kp_d)
        return {"prediction": out["prediction"], "occlusion": out["occlusion"], "source": _source_keypoints(state),
                "driving": kp_d}

    def analyze_keyframe(self, image: torch.Tensor) -> KeyframeState:
        """Run the detector (and the generator's encoder) on a keyframe once; `render` reuses them."""
        small = self._prepare(image)
        kp = self.keypoints(small)
        features = None if self.image_space else self.generator.encode(small)
        return KeyframeState(features, self._dense_input(small), kp["keypoints"], kp["jacobians"],
                             _motion_groups(kp), image if self.image_space else None)

    def landmark_points(self, image: torch.Tensor) -> None:
        """None: FOMM's keypoints are learned, not face landmarks the encoder could compare."""
        return None

    def motion_landmarks(self, motion: dict[str, torch.Tensor]) -> None:
        """None, as `landmark_points`."""
        return None

    def estimate_motion(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Detector only: keypoints (B,K,2) and row-major jacobians (B,K,4)."""
        return _motion_groups(self.keypoints(image))

    def render(self, state: KeyframeState, motion: dict[str, torch.Tensor]) -> torch.Tensor:
        """Animate the keyframe with a (possibly decoded) motion dict → (B,3,out,out) in [0,1]."""
        return self.animate(state, motion)["prediction"]

    def animate(self, state: KeyframeState, motion: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`render` with the dense motion's outputs: prediction, flow (B,s,s,2), occlusion, mask."""
        check_motion(motion, self.kind, self.num_keypoints, state.keypoints.shape[0])
        driving = {"keypoints": motion["keypoints"], "jacobians": motion["jacobians"].unflatten(-1, (2, 2))}
        return self._animate(state, driving)


def _source_keypoints(state: KeyframeState) -> dict[str, torch.Tensor]:
    return {"keypoints": state.keypoints, "jacobians": state.jacobians}


def _motion_groups(kp: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {"keypoints": kp["keypoints"], "jacobians": kp["jacobians"].flatten(-2)}


def relative_motion(source: dict[str, torch.Tensor], driving: dict[str, torch.Tensor],
                    first: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """FOMM's relative animation: kp = kp_s + (kp_d − kp_first), J = (J_d · J_first⁻¹) · J_s.

    Groups as `estimate_motion` returns them (jacobians flattened to (B,K,4)); driving == first
    returns the source motion exactly.
    """
    square = {name: group["jacobians"].unflatten(-1, (2, 2))
              for name, group in (("source", source), ("driving", driving), ("first", first))}
    change = right_divide(square["driving"], square["first"])
    return {"keypoints": source["keypoints"] + (driving["keypoints"] - first["keypoints"]),
            "jacobians": (change @ square["source"]).flatten(-2)}
