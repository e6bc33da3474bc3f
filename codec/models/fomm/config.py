"""Frozen, serialisable configurations of the FOMM networks and the named presets.

Same conventions as `codec.models.config.FV2VConfig`: `to_dict()` gives plain dicts,
`FOMMConfig.from_dict` rebuilds an equal config and `FOMMConfig.named("small")` returns a preset.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import ClassVar

from bitstream.constants import NUM_KEYPOINTS_FOMM

from ..config import RENDERERS, ConfigError, PresetConfig


@dataclass(frozen=True)
class DetectorConfig:
    """Keypoint detector: 2D hourglass at `input_size` → K heatmaps (soft-argmax) and 2×2 Jacobian maps."""

    input_size: int = 64
    block_expansion: int = 32
    num_blocks: int = 5
    max_features: int = 1024
    head_kernel: int = 7
    temperature: float = 0.1


@dataclass(frozen=True)
class DenseMotionConfig:
    """Dense motion: K+1 deformed sources + heatmap differences at `input_size` → hourglass → masks, occlusion."""

    input_size: int = 64
    block_expansion: int = 64
    num_blocks: int = 5
    max_features: int = 1024
    mask_kernel: int = 7
    occlusion_kernel: int = 7
    kp_variance: float = 0.01


@dataclass(frozen=True)
class GeneratorConfig:
    """Generator: stem → down blocks → warp and occlude → residual bottleneck → up blocks → RGB."""

    block_expansion: int = 64
    max_features: int = 512
    down_blocks: int = 2
    res_blocks: int = 6
    stem_kernel: int = 7


@dataclass(frozen=True)
class FOMMConfig(PresetConfig):
    """All FOMM sizes; `output_size` must be `analysis_size` times a power of two.

    `renderer` "feature" is the paper's generator over warped encoder features; "image" (fv2v's image renderer
    family, for a comparison on equal terms) applies the dense motion's flow to the keyframe's own pixels at
    its own size, fills at `dense_motion.input_size`² where the occlusion says the keyframe shows nothing, and
    ignores `output_size` and the generator. `motion_gate` is the keypoint and Jacobian change below which the
    fill fades out, so unmoved keypoints show the keyframe unchanged.
    """

    label: ClassVar[str] = "fomm"

    name: str
    num_keypoints: int = NUM_KEYPOINTS_FOMM
    analysis_size: int = 256
    output_size: int = 256
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    dense_motion: DenseMotionConfig = field(default_factory=DenseMotionConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    renderer: str = "feature"
    motion_gate: float = 0.01

    def __post_init__(self):
        if self.num_keypoints < 1:
            raise ConfigError(f"num_keypoints must be >= 1, got {self.num_keypoints}")
        if self.renderer not in RENDERERS:
            raise ConfigError(f"unknown renderer {self.renderer!r}; known: {', '.join(RENDERERS)}")
        if self.analysis_size % 2**self.generator.down_blocks or self.analysis_size < 2**self.generator.down_blocks:
            raise ConfigError(
                f"analysis_size {self.analysis_size} is not divisible by 2**{self.generator.down_blocks}")
        ups = math.log2(self.output_size / self.analysis_size) if self.output_size > 0 else -1
        if ups < 0 or ups != int(ups):
            raise ConfigError(f"output_size {self.output_size} is not analysis_size {self.analysis_size} "
                              f"times a power of two")
        if self.generator.block_expansion < 2**self.extra_up_blocks:
            raise ConfigError(f"generator.block_expansion {self.generator.block_expansion} cannot halve "
                              f"{self.extra_up_blocks} times for the output size")
        for section in ("detector", "dense_motion"):
            cfg = getattr(self, section)
            if cfg.input_size % 2**cfg.num_blocks or cfg.input_size > self.analysis_size:
                raise ConfigError(f"{section}.input_size {cfg.input_size} must divide by 2**{cfg.num_blocks} "
                                  f"and be at most analysis_size {self.analysis_size}")

    @property
    def feature_size(self) -> int:
        """Height and width of the generator's encoder features (where the flow warps)."""
        return self.analysis_size // 2**self.generator.down_blocks

    @property
    def extra_up_blocks(self) -> int:
        """Up-sampling stages beyond the encoder's resolution (1 for a 512² output from 256²)."""
        return int(round(math.log2(self.output_size / self.analysis_size)))


# Tiny, for unit tests: 64² analysis, 32² keypoint and motion maps, about 40k parameters per net.
_TEST = FOMMConfig(
    name="test",
    analysis_size=64,
    output_size=64,
    detector=DetectorConfig(input_size=32, block_expansion=8, num_blocks=3, max_features=32, head_kernel=3),
    dense_motion=DenseMotionConfig(input_size=32, block_expansion=8, num_blocks=3, max_features=32,
                                   mask_kernel=3, occlusion_kernel=3),
    generator=GeneratorConfig(block_expansion=8, max_features=32, down_blocks=2, res_blocks=1, stem_kernel=3),
)

# About fv2v `small`'s 6.6 M parameters (6.7 M): the paper's layout with hourglasses capped at 192
# channels and half-width generator, so a baseline comparison is not a comparison of model sizes.
_SMALL = FOMMConfig(
    name="small",
    detector=DetectorConfig(max_features=192),
    dense_motion=DenseMotionConfig(block_expansion=32, max_features=192),
    generator=GeneratorConfig(block_expansion=32, res_blocks=4),
)

# fv2v `cpu128`'s size (2.0 M parameters): 128² in and out, 64² keypoint and motion maps.
_CPU128 = FOMMConfig(
    name="cpu128",
    analysis_size=128,
    output_size=128,
    detector=DetectorConfig(input_size=64, block_expansion=16, num_blocks=4, max_features=128, head_kernel=3),
    dense_motion=DenseMotionConfig(input_size=64, block_expansion=16, num_blocks=4, max_features=128,
                                   mask_kernel=3, occlusion_kernel=3),
    generator=GeneratorConfig(block_expansion=32, max_features=128, down_blocks=2, res_blocks=2),
)

# fv2v warp128's renderer family and size (1.93 M parameters against its 1.97 M), for the paper's claim on equal
# terms: 128² analysis, keypoints and dense motion at 64², the keyframe warped at its own size; no generator.
_WARP128 = dataclasses.replace(
    _CPU128, name="warp128", renderer="image",
    dense_motion=DenseMotionConfig(input_size=64, block_expansion=24, num_blocks=4, max_features=192, mask_kernel=3,
                                   occlusion_kernel=3))

PRESETS: dict[str, FOMMConfig] = {
    "test": _TEST,
    "test-image": dataclasses.replace(_TEST, name="test-image", renderer="image"),
    "small": _SMALL,
    "cpu128": _CPU128,
    "warp128": _WARP128,
    "small512": dataclasses.replace(_SMALL, name="small512", output_size=512),
    # Channel counts of the FOMM vox-256 model (Siarohin et al. 2019), 256² in and out.
    "base": FOMMConfig(name="base"),
}
FOMMConfig.presets = PRESETS
