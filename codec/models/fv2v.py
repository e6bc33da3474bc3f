"""FaceVid2Vid: the shipped generator-side networks (F, L, H+Δ, M, G) behind the MotionModel protocol."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bitstream.constants import MotionKind
from codec.data.landmarks import MEAN_FACE

from .appearance import AppearanceExtractor
from .blocks import make_coordinate_grid
from .canonical_keypoints import CanonicalKeypointDetector
from .config import FV2VConfig
from .face_relief import relief_controls
from .foreground_mask import ForegroundMask, head_prior_logit
from .generator import Generator
from .head_pose import HeadPoseExpression
from .image_refiner import ImageRefiner
from .image_warp import fade_in, warp_full_resolution
from .landmark_detector import LandmarkDetector
from .keypoint_transform import rotation_matrix, transform_keypoints
from .model_inputs import InputError, check_motion, prepare_image
from .motion_field import MotionFieldEstimator
from .thin_plate import thin_plate_grid


@dataclass
class KeyframeState:
    """What a keyframe costs once: F's volume (feature renderer) or the picture itself (image renderer),
    canonical and source keypoints, source pose and motion."""

    volume: torch.Tensor | None  # (B, C, D, H, W)
    canonical: torch.Tensor  # (B, K, 3)
    keypoints: torch.Tensor  # (B, K, 3) source keypoints
    rotation: torch.Tensor  # (B, 3, 3) source rotation matrix
    motion: dict[str, torch.Tensor]  # the source's own motion groups
    image: torch.Tensor | None = None  # (B, 3, S, S) the keyframe at its own size
    foreground: torch.Tensor | None = None  # (B, 1, s, s) what moves with the head (still background only)


class FaceVid2Vid(nn.Module):
    """face-vid2vid (Wang, Mallya, Liu, CVPR 2021): keypoints x = R·x_c + t + δ drive a warped 3D volume."""

    kind = MotionKind.FV2V
    config_class = FV2VConfig

    def __init__(self, config: FV2VConfig):
        super().__init__()
        self.config = config
        self.num_keypoints = config.num_keypoints
        self.analysis_size = config.analysis_size
        self.image_space = config.renderer == "image"
        # 0: frames come out at the keyframe's own size.
        self.output_size = 0 if self.image_space else config.output_size
        self.head_pose = HeadPoseExpression(config)
        self.from_landmarks = config.keypoint_source == "landmarks"
        if self.from_landmarks:
            self.landmarks = LandmarkDetector(config)
            # The shared canonical face x_c, seeded with the landmarks' mean face (keypoint k = landmark k).
            self.template = nn.Parameter(torch.tensor(MEAN_FACE))
        else:
            self.canonical = CanonicalKeypointDetector(config)
        if self.image_space:
            self.refiner = ImageRefiner(config)
            if config.image.background == "still":
                self.foreground = ForegroundMask(config)
        else:
            self.appearance = AppearanceExtractor(config)
            self.motion_field = MotionFieldEstimator(config)
            self.generator = Generator(config)

    def _prepare(self, image: torch.Tensor) -> torch.Tensor:
        return prepare_image(image, self.analysis_size)

    def _canonical(self, image: torch.Tensor) -> torch.Tensor:
        if self.from_landmarks:
            return self.template.expand(image.shape[0], -1, -1)
        return self.canonical(image)["canonical"]

    def pose(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """A frame's motion: pose_logits (B,3,66), rotation (B,3) degrees, translation (B,3), expression (B,K,3).

        With landmark keypoints, δ's image-plane part is what takes R·x_c + t onto the detected points.
        """
        image = self._prepare(image)
        out = self.head_pose(image)
        if self.from_landmarks:
            base = transform_keypoints(self._canonical(image), out["rotation"], out["translation"],
                                       torch.zeros_like(out["expression"]))
            planar = self.landmarks(image) - base[..., :2]
            out["expression"] = torch.cat([planar, out["expression"][..., 2:].float()], -1)
        return out

    def keypoints(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training hook: canonical, pose_logits (B,3,66), rotation (B,3) deg, translation, expression, keypoints."""
        image = self._prepare(image)
        out = {"canonical": self._canonical(image), **self.pose(image)}
        out["keypoints"] = transform_keypoints(out["canonical"], out["rotation"], out["translation"],
                                               out["expression"])
        return out

    def _animate(self, state: KeyframeState, motion, keypoint_grad: bool = True,
                 view: torch.Tensor | None = None, relief: bool = True) -> dict[str, torch.Tensor]:
        angles = motion["rotation"][:, 0]
        shown = angles if view is None else view[:, 0]
        translation = motion["translation"][:, 0]
        kp_driving = transform_keypoints(state.canonical, shown, translation, motion["expression"])
        if self.image_space:
            src, drv = state.keypoints, kp_driving
            if not keypoint_grad:
                src, drv = src.detach(), drv.detach()
            turn = None
            if view is not None and relief:
                cfg = self.config.image
                turn = relief_controls(state.canonical, angles, shown, translation, motion["expression"],
                                       src[..., :2], cfg.anchors_per_side, cfg.regularisation)
            return {**self._warp_keyframe(state.image, src, drv, state.foreground, turn), "keypoints": kp_driving}
        field = self.motion_field(state.volume, state.keypoints, kp_driving, state.rotation, rotation_matrix(shown))
        return {"prediction": self.generator(state.volume, field["flow"], field["occlusion"]),
                "occlusion": field["occlusion"], "keypoints": kp_driving}

    def _warp_keyframe(self, keyframe: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor,
                       foreground: torch.Tensor | None = None,
                       relief: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The image renderer: spline warp through the projected keypoints, refined at `image.size`²,
        applied to the keyframe at its own size and filled where the keyframe shows nothing.

        With a keyframe `foreground` mask (still background), the spline moves only what the mask,
        carried along the spline, covers in the driving frame; elsewhere pixels stay where they are,
        and the fill may paint only where either frame shows foreground (what the head uncovers).
        `relief` (free view): extra spline points (driving, source) that turn the face by its depth."""
        cfg = self.config.image
        src, drv = kp_source[..., :2], kp_driving[..., :2]
        ctrl, value = (drv, src) if relief is None else (torch.cat([drv, relief[0]], 1), torch.cat([src, relief[1]], 1))
        spline = thin_plate_grid(ctrl, value, cfg.size, cfg.anchors_per_side, cfg.regularisation)
        small = prepare_image(keyframe, cfg.size)
        moves = allowed = None
        if foreground is not None:
            identity = make_coordinate_grid((cfg.size, cfg.size), spline.dtype, spline.device)
            moves = F.grid_sample(foreground, spline, padding_mode="border", align_corners=True)
            spline = identity + moves.permute(0, 2, 3, 1) * (spline - identity)
            allowed = torch.maximum(moves, foreground)
        warped_small = F.grid_sample(small, spline, padding_mode="border", align_corners=True)
        out = self.refiner(small, warped_small, spline, src, drv)
        # A frame whose keypoints did not move shows the keyframe unchanged (the hold floor).
        gate = fade_in((drv - src).abs().amax(dim=(1, 2)), cfg.motion_gate)
        occlusion = gate * out["occlusion"]
        correction = out["flow"]
        if moves is not None:
            correction = correction * moves.permute(0, 2, 3, 1)
            occlusion = occlusion * allowed
        if cfg.correction_radius > 0:
            face = torch.sigmoid(head_prior_logit(drv, cfg.size, cfg.correction_radius, cfg.mask_prior_gain))
            correction = correction * face.permute(0, 2, 3, 1)
        prediction, occlusion = warp_full_resolution(keyframe, spline + gate * correction, occlusion, out["fill"])
        result = {"prediction": prediction, "occlusion": occlusion}
        if moves is not None:
            result["foreground"] = F.interpolate(moves, size=keyframe.shape[-2:], mode="bilinear", align_corners=False)
        return result

    def training_forward(self, source: torch.Tensor, driving: torch.Tensor) -> dict:
        """Reconstruct `driving` from `source`: prediction, occlusion, source/driving keypoint dicts.

        As in the paper the identity comes from the source: driving keypoints use the source's x_c,
        so `driving["canonical"]` is the source's (call `keypoints(driving)` for L on the driving frame).
        """
        state, kp_s = self._analyze(source)
        kp_d = self.pose(driving)
        kp_d["canonical"] = kp_s["canonical"]
        # Unless asked, the picture losses train the refiner, not the keypoints (docs/training.md).
        out = self._animate(state, _motion_groups(kp_d), keypoint_grad=self.config.image.image_trains_keypoints)
        kp_d["keypoints"] = out["keypoints"]
        return {"prediction": out["prediction"], "occlusion": out["occlusion"], "source": kp_s, "driving": kp_d,
                **({"foreground": state.foreground} if state.foreground is not None else {})}

    def _analyze(self, image: torch.Tensor) -> tuple[KeyframeState, dict[str, torch.Tensor]]:
        small = self._prepare(image)
        kp = self.keypoints(small)
        volume = None if self.image_space else self.appearance(small)
        foreground = None
        if self.image_space and self.config.image.background == "still":
            points = kp["keypoints"][..., :2]
            # Like the warp, the mask must not let the picture losses move the keypoints (docs/training.md).
            if not self.config.image.image_trains_keypoints:
                points = points.detach()
            foreground = self.foreground(prepare_image(image, self.config.image.size), points)
        state = KeyframeState(volume, kp["canonical"], kp["keypoints"], rotation_matrix(kp["rotation"]),
                              _motion_groups(kp), image if self.image_space else None, foreground)
        return state, kp

    def analyze_keyframe(self, image: torch.Tensor) -> KeyframeState:
        """Run F (feature renderer), L (or the landmark detector) and H+Δ on a keyframe once; `render`
        reuses the result for every later frame."""
        return self._analyze(image)[0]

    def landmark_points(self, image: torch.Tensor) -> torch.Tensor | None:
        """The landmark detector's K points (B,K,2) in [-1, 1] of the frame; None when keypoints are not landmarks."""
        return self.landmarks(self._prepare(image)) if self.from_landmarks else None

    def motion_landmarks(self, motion: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """The landmark points (B,K,2) of the frame `estimate_motion` gave `motion` for (R·x_c + t + δ in the image
        plane, which `pose` makes the detected points), without running the detector again; None as above."""
        if not self.from_landmarks:
            return None
        canonical = self.template.expand(motion["expression"].shape[0], -1, -1)
        return transform_keypoints(canonical, motion["rotation"][:, 0], motion["translation"][:, 0],
                                   motion["expression"])[..., :2]

    def estimate_motion(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """H+Δ (and the landmark detector) only: rotation (B,1,3) degrees, translation (B,1,3), expression (B,K,3)."""
        return _motion_groups(self.pose(image))

    def render(self, state: KeyframeState, motion: dict[str, torch.Tensor],
               view: torch.Tensor | None = None, relief: bool = True) -> torch.Tensor:
        """Animate the keyframe with a (possibly decoded or edited) motion dict → (B,3,out,out) in [0,1]; `view`
        (B,1,3 degrees, free view) shows the head at that rotation instead of the motion's, turned by the face's
        relief (image renderers; `relief` False: through the keypoints alone, as before it)."""
        check_motion(motion, self.kind, self.num_keypoints, state.canonical.shape[0])
        if view is not None and tuple(view.shape) != tuple(motion["rotation"].shape):
            raise InputError(f"view rotation has shape {tuple(view.shape)}, expected {tuple(motion['rotation'].shape)}")
        return self._animate(state, motion, view=view, relief=relief)["prediction"]


def _motion_groups(pose: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {
        "rotation": pose["rotation"].unsqueeze(1),
        "translation": pose["translation"].unsqueeze(1),
        "expression": pose["expression"],
    }
