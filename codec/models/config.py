"""Frozen, serialisable configurations of the face-vid2vid networks and the named presets.

`asdict(config)` gives plain dicts (JSON and `torch.load(weights_only=True)` safe);
`FV2VConfig.from_dict` rebuilds an equal config; `FV2VConfig.named("small")` returns a preset.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import ClassVar

from bitstream.constants import NUM_KEYPOINTS_FV2V


class ConfigError(ValueError):
    """A configuration that cannot build a consistent model (bad size, unknown name or field)."""


class PresetConfig:
    """Dict round trip and named presets of a frozen model config whose sections are dataclass fields."""

    label: ClassVar[str]  # the model kind, for messages
    presets: ClassVar[dict]  # name -> config, set once the presets are defined

    def to_dict(self) -> dict:
        """Plain nested dict (tuples kept), the inverse of `from_dict`."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        """Rebuild a config from `to_dict()`/`asdict()` output (lists accepted where tuples are stored)."""
        sections = {f.name: f.default_factory for f in dataclasses.fields(cls)
                    if f.default_factory is not dataclasses.MISSING}
        try:
            top = {k: v for k, v in data.items() if k not in sections}
            parts = {k: _section(sections[k], v) for k, v in data.items() if k in sections}
            return cls(**top, **parts)
        except TypeError as exc:
            raise ConfigError(f"not a valid {cls.label} config: {exc}") from None

    @classmethod
    def named(cls, name: str):
        """One of the class's presets."""
        if name not in cls.presets:
            raise ConfigError(f"unknown {cls.label} config {name!r}; known: {', '.join(cls.presets)}")
        return cls.presets[name]


def _section(section_cls, values: dict):
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return section_cls(**values)


@dataclass(frozen=True)
class AppearanceConfig:
    """F: 2D down-sampling → 1×1 conv → (channels × depth) volume → 3D residual blocks."""

    block_expansion: int = 64
    down_blocks: int = 2
    max_features: int = 512
    volume_channels: int = 32
    volume_depth: int = 16
    res_blocks: int = 6


@dataclass(frozen=True)
class KeypointConfig:
    """L: 2D encoder at `input_size` → reshape to 3D → 3D decoder → K heatmaps → soft-argmax."""

    input_size: int = 64
    block_expansion: int = 32
    num_blocks: int = 5
    max_features: int = 1024
    reshape_channels: int = 1024
    depth: int = 16
    head_kernel: int = 7
    temperature: float = 0.1


@dataclass(frozen=True)
class PoseConfig:
    """H+Δ: ResNet-style encoder at `input_size`; stages of basic residual blocks."""

    input_size: int = 256
    stem_channels: int = 64
    widths: tuple[int, ...] = (64, 128, 256, 512)
    blocks: tuple[int, ...] = (3, 4, 6, 3)


@dataclass(frozen=True)
class MotionConfig:
    """M: sparse keypoint flows + heatmap differences → 3D hourglass → masks and occlusion.

    `downsample` runs M on the volume pooled by that factor in height/width (the flow is up-sampled).
    """

    compress: int = 4
    block_expansion: int = 32
    num_blocks: int = 5
    max_features: int = 1024
    mask_kernel: int = 7
    occlusion_kernel: int = 7
    kp_variance: float = 0.01
    downsample: int = 1


@dataclass(frozen=True)
class GeneratorConfig:
    """G: warped volume → 2D (C·D channels) → conv → occlusion → residual blocks → up-sampling."""

    channels: int = 256
    res_blocks: int = 6
    min_channels: int = 64


@dataclass(frozen=True)
class ImageRendererConfig:
    """The image-space renderer: the keyframe itself, warped at its own resolution.

    A thin-plate spline through the projected keypoints (plus `anchors_per_side` fixed border points)
    gives the flow; a 2D hourglass at `size`² refines it and predicts what the keyframe does not show
    (an occlusion mask and the colours to fill in). `motion_gate` is the keypoint displacement (in
    [-1, 1] units) below which the refinement fades out, so a still frame shows the keyframe unchanged.
    `image_trains_keypoints` lets the picture losses move the keypoints too; off, only the landmark
    and pose losses do (early on, a spline through colliding keypoints throws the gradients about).
    `background` "spline" moves every pixel with the keypoints' spline (warp128); "still" gives the
    background its own motion, the identity: a foreground mask predicted once per keyframe (a disc of
    `mask_prior_radius` keypoint spreads plus a learned `mask_*` hourglass) blends the two, so a head
    move no longer drags the wall and shoulders along. `mask_residual` "shrink" lets the hourglass only
    carve background out of the disc; "free" lets it grow the mask too, and trained on face crops it
    grew to 80 % of the frame in 1,300 steps, the spline's dragging back.
    `correction_radius` > 0 confines the refiner's flow correction to a disc of that many keypoint
    spreads around the driving keypoints (the face): outside it the foreground moves with the spline
    alone, so hair and shoulder outlines cannot ripple frame to frame; 0 lets it act on all the foreground.
    """

    size: int = 64
    anchors_per_side: int = 5
    regularisation: float = 1e-3
    block_expansion: int = 32
    num_blocks: int = 4
    max_features: int = 256
    kp_variance: float = 0.01
    motion_gate: float = 0.01
    image_trains_keypoints: bool = False
    background: str = "spline"
    mask_block_expansion: int = 16
    mask_num_blocks: int = 3
    mask_max_features: int = 64
    mask_prior_radius: float = 2.5
    mask_prior_gain: float = 4.0
    mask_residual: str = "shrink"
    correction_radius: float = 0.0


RENDERERS = ("feature", "image")
BACKGROUNDS = ("spline", "still")
MASK_RESIDUALS = ("shrink", "free")
KEYPOINT_SOURCES = ("canonical", "landmarks")


@dataclass(frozen=True)
class LandmarkDetectorConfig:
    """The 2D heatmap detector of `keypoint_source="landmarks"`: an hourglass at `input_size`²."""

    input_size: int = 128
    block_expansion: int = 16
    num_blocks: int = 5
    max_features: int = 128
    temperature: float = 0.1


@dataclass(frozen=True)
class DiscriminatorConfig:
    """D: one spectral-norm patch discriminator per image scale."""

    scales: tuple[float, ...] = (1.0, 0.5)
    block_expansion: int = 64
    num_blocks: int = 4
    max_features: int = 512


@dataclass(frozen=True)
class FV2VConfig(PresetConfig):
    """All face-vid2vid sizes; `output_size` must be the volume side times a power of two.

    `renderer` "feature" is the paper's G over the warped 3D volume; "image" warps the keyframe's own
    pixels (`image`), renders at the keyframe's size and ignores `output_size`, F, M and G.
    `keypoint_source` "canonical" is the paper's L (x_c per source image) with H+Δ regressing δ;
    "landmarks" shares one learned canonical face x_c among all identities and takes each frame's
    projected keypoints from a heatmap detector (`landmarks`) trained on face landmarks: δ is what
    the detected points add to R·x_c + t, and only its depth is regressed.
    """

    label: ClassVar[str] = "fv2v"

    name: str
    num_keypoints: int = NUM_KEYPOINTS_FV2V
    analysis_size: int = 256
    output_size: int = 256
    renderer: str = "feature"
    keypoint_source: str = "canonical"
    appearance: AppearanceConfig = field(default_factory=AppearanceConfig)
    keypoints: KeypointConfig = field(default_factory=KeypointConfig)
    pose: PoseConfig = field(default_factory=PoseConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    image: ImageRendererConfig = field(default_factory=ImageRendererConfig)
    landmarks: LandmarkDetectorConfig = field(default_factory=LandmarkDetectorConfig)

    def __post_init__(self):
        if self.num_keypoints < 1:
            raise ConfigError(f"num_keypoints must be >= 1, got {self.num_keypoints}")
        if self.renderer not in RENDERERS:
            raise ConfigError(f"unknown renderer {self.renderer!r}; known: {', '.join(RENDERERS)}")
        if self.keypoint_source not in KEYPOINT_SOURCES:
            raise ConfigError(f"unknown keypoint_source {self.keypoint_source!r}; known: {', '.join(KEYPOINT_SOURCES)}")
        if self.keypoint_source == "landmarks" and self.num_keypoints != NUM_KEYPOINTS_FV2V:
            raise ConfigError(f"landmark keypoints are the {NUM_KEYPOINTS_FV2V} landmarks of codec.data.landmarks, "
                              f"not {self.num_keypoints}")
        if self.landmarks.input_size % 2**self.landmarks.num_blocks:
            raise ConfigError(f"landmarks.input_size {self.landmarks.input_size} is not divisible by "
                              f"2**{self.landmarks.num_blocks}")
        if self.image.mask_residual not in MASK_RESIDUALS:
            raise ConfigError(f"unknown image.mask_residual {self.image.mask_residual!r}; known: "
                              f"{', '.join(MASK_RESIDUALS)}")
        if self.image.background not in BACKGROUNDS:
            raise ConfigError(f"unknown image.background {self.image.background!r}; known: {', '.join(BACKGROUNDS)}")
        if self.image.size % 2**self.image.num_blocks or self.image.size % 2**self.image.mask_num_blocks:
            raise ConfigError(f"image.size {self.image.size} is not divisible by 2**{self.image.num_blocks} "
                              f"or 2**{self.image.mask_num_blocks}")
        side = self.volume_size
        if side * 2**self.appearance.down_blocks != self.analysis_size or side < 1:
            raise ConfigError(
                f"analysis_size {self.analysis_size} is not divisible by 2**{self.appearance.down_blocks}"
            )
        ups = math.log2(self.output_size / side)
        if ups < 0 or ups != int(ups):
            raise ConfigError(f"output_size {self.output_size} is not volume side {side} times a power of two")
        if side % self.motion.downsample:
            raise ConfigError(f"volume side {side} is not divisible by motion.downsample {self.motion.downsample}")
        if self.keypoints.input_size % 2**self.keypoints.num_blocks:
            raise ConfigError(
                f"keypoints.input_size {self.keypoints.input_size} is not divisible by 2**{self.keypoints.num_blocks}"
            )
        if len(self.pose.widths) != len(self.pose.blocks):
            raise ConfigError("pose.widths and pose.blocks must have the same length")

    @property
    def volume_size(self) -> int:
        """Height and width of F's feature volume."""
        return self.analysis_size // 2**self.appearance.down_blocks

    @property
    def up_blocks(self) -> int:
        """Number of 2x up-sampling stages in G."""
        return int(round(math.log2(self.output_size / self.volume_size)))


# Tiny, for unit tests of every module: 64² analysis, 16x16 volume, a few thousand parameters per net.
_TEST = FV2VConfig(
    name="test",
    analysis_size=64,
    output_size=64,
    appearance=AppearanceConfig(block_expansion=8, down_blocks=2, max_features=16, volume_channels=4,
                                volume_depth=4, res_blocks=1),
    keypoints=KeypointConfig(input_size=32, block_expansion=8, num_blocks=3, max_features=32,
                             reshape_channels=16, depth=4, head_kernel=3),
    pose=PoseConfig(input_size=32, stem_channels=8, widths=(8, 16), blocks=(1, 1)),
    motion=MotionConfig(compress=2, block_expansion=8, num_blocks=2, max_features=16, mask_kernel=3,
                        occlusion_kernel=3),
    generator=GeneratorConfig(channels=16, res_blocks=1, min_channels=8),
    discriminator=DiscriminatorConfig(scales=(1.0, 0.5), block_expansion=8, num_blocks=2, max_features=16),
)

# Trainable and decodable on the 2-core CPU (benchmarks/model_speed.py measures it).
_SMALL = FV2VConfig(
    name="small",
    # Depth 8 (paper: 16) halves M's 3D convs; C·D = 256 keeps G's 2D input as wide as the paper's half.
    appearance=AppearanceConfig(block_expansion=32, down_blocks=2, max_features=128, volume_channels=32,
                                volume_depth=8, res_blocks=2),
    keypoints=KeypointConfig(input_size=64, block_expansion=16, num_blocks=4, max_features=256,
                             reshape_channels=256, depth=8, head_kernel=3),
    pose=PoseConfig(input_size=128, stem_channels=32, widths=(32, 64, 128, 256), blocks=(2, 2, 2, 2)),
    motion=MotionConfig(compress=4, block_expansion=16, num_blocks=3, max_features=128, mask_kernel=3,
                        occlusion_kernel=3, downsample=2),
    generator=GeneratorConfig(channels=96, res_blocks=2, min_channels=32),
    discriminator=DiscriminatorConfig(scales=(1.0, 0.5), block_expansion=32, num_blocks=4, max_features=256),
)

# Trainable on the 2-core CPU while no GPU is lent (~2 M parameters, ~3.6 s per batch-4 step with one
# thread): 128² analysis and output, a 16x8x32x32 volume. FOMM's `cpu128` matches its parameter count.
_CPU128 = FV2VConfig(
    name="cpu128",
    analysis_size=128,
    output_size=128,
    appearance=AppearanceConfig(block_expansion=32, down_blocks=2, max_features=128, volume_channels=16,
                                volume_depth=8, res_blocks=1),
    keypoints=KeypointConfig(input_size=64, block_expansion=16, num_blocks=4, max_features=128,
                             reshape_channels=128, depth=8, head_kernel=3),
    pose=PoseConfig(input_size=64, stem_channels=16, widths=(16, 32, 64, 128), blocks=(1, 1, 1, 1)),
    motion=MotionConfig(compress=4, block_expansion=16, num_blocks=3, max_features=64, mask_kernel=3,
                        occlusion_kernel=3),
    generator=GeneratorConfig(channels=64, res_blocks=2, min_channels=32),
    discriminator=DiscriminatorConfig(scales=(1.0,), block_expansion=16, num_blocks=3, max_features=64),
)

# The image-space renderer trained on the 2-core CPU: 128² analysis, keypoints tied to face landmarks,
# the keyframe warped at its own resolution (512² in bench512 streams).
_WARP128 = FV2VConfig(
    name="warp128",
    analysis_size=128,
    output_size=128,
    renderer="image",
    keypoint_source="landmarks",
    pose=PoseConfig(input_size=64, stem_channels=16, widths=(16, 32, 64, 128), blocks=(1, 1, 1, 1)),
    image=ImageRendererConfig(size=64, block_expansion=16, num_blocks=4, max_features=128),
    landmarks=LandmarkDetectorConfig(input_size=128, block_expansion=16, num_blocks=5, max_features=128),
)

_TEST_IMAGE = dataclasses.replace(_TEST, name="test-image", renderer="image", keypoint_source="landmarks",
                                  image=ImageRendererConfig(size=16, block_expansion=8, num_blocks=2, max_features=16,
                                                            mask_block_expansion=4, mask_num_blocks=2,
                                                            mask_max_features=8),
                                  landmarks=LandmarkDetectorConfig(input_size=32, block_expansion=8, num_blocks=2,
                                                                   max_features=16))

# warp128 with a still background blended in through a per-keyframe foreground mask; its refiner,
# detector and H+Δ have warp128's shapes, so it starts from warp128's weights (fvc train --init-from).
_WARP128BG = dataclasses.replace(_WARP128, name="warp128bg",
                                 image=dataclasses.replace(_WARP128.image, background="still"))
# warp128bg with the refiner's correction confined to the face: on 8 held-out training clips at step 29273, with no
# retraining, 2 spreads cut temporal error 4.67 -> 4.42 (outside the face 3.78 -> 3.34) for LPIPS +0.009; 1.5 cost more.
_WARP128FACE = dataclasses.replace(_WARP128BG, name="warp128face",
                                   image=dataclasses.replace(_WARP128BG.image, correction_radius=2.0))

PRESETS: dict[str, FV2VConfig] = {
    "test": _TEST,
    "test-image": _TEST_IMAGE,
    "test-image-bg": dataclasses.replace(_TEST_IMAGE, name="test-image-bg",
                                         image=dataclasses.replace(_TEST_IMAGE.image, background="still")),
    "small": _SMALL,
    "cpu128": _CPU128,
    "warp128": _WARP128,
    "warp128bg": _WARP128BG,
    "warp128face": _WARP128FACE,
    "small512": dataclasses.replace(_SMALL, name="small512", output_size=512),
    # Paper channel counts (Wang et al. 2021), 512² output from a 256² analysis.
    "base": FV2VConfig(name="base", output_size=512),
}
FV2VConfig.presets = PRESETS
