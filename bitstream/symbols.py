"""Motion symbol layout per motion kind, the per-group coding parameters and the quantiser."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Mapping, NamedTuple

import numpy as np

from .constants import MAX_RADIUS, NUM_KEYPOINTS_FOMM, NUM_KEYPOINTS_FV2V, QUANT_MAX, MotionKind
from .errors import SymbolError
from .freqtable import DECAY_ONE

if TYPE_CHECKING:
    from .header import StreamHeader


class SymbolGroup(NamedTuple):
    """One motion group: `count` rows of `dims` values; maskable rows may be skipped per packet."""

    name: str
    count: int
    dims: int
    maskable: bool


def default_num_keypoints(kind: MotionKind) -> int:
    """K used when a caller does not choose one."""
    return NUM_KEYPOINTS_FV2V if MotionKind(kind) == MotionKind.FV2V else NUM_KEYPOINTS_FOMM


def layout(kind: MotionKind, num_keypoints: int | None = None) -> tuple[SymbolGroup, ...]:
    """Groups of a motion kind in coding order (docs/design.md, spec §5)."""
    kind = MotionKind(kind)
    k = default_num_keypoints(kind) if num_keypoints is None else int(num_keypoints)
    if not 1 <= k <= 255:
        raise SymbolError(f"number of keypoints {k} outside 1..255")
    if kind == MotionKind.FV2V:
        return (
            SymbolGroup("rotation", 1, 3, False),
            SymbolGroup("translation", 1, 3, False),
            SymbolGroup("expression", k, 3, True),
        )
    return (SymbolGroup("keypoints", k, 2, False), SymbolGroup("jacobians", k, 4, False))


@dataclass(frozen=True)
class GroupParams:
    """Header parameters of one group: dequantisation step and integer entropy-model parameters.

    `decay` is the 16-bit fixed-point ratio between the weights of |r| and |r|+1, `escape_freq`
    the ESCAPE frequency in units of 2**-24, `mask_freq` the probability of a sent row in units
    of 2**-16 (0 for groups that are not maskable).
    """

    step: float
    radius: int
    decay: int
    escape_freq: int
    mask_freq: int = 0

    def __post_init__(self):
        # The header stores float32: keep exactly that value, so parsed and built headers compare equal.
        object.__setattr__(self, "step", float(np.float32(self.step)))
        for name in ("radius", "decay", "escape_freq", "mask_freq"):
            object.__setattr__(self, name, int(getattr(self, name)))

    def check(self, group: SymbolGroup) -> None:
        """Raise SymbolError if a field is outside the range spec §4 allows for `group`."""
        if not (math.isfinite(self.step) and self.step > 0):
            raise SymbolError(f"{group.name}: step {self.step} must be a finite float32 > 0")
        if not 1 <= self.radius <= MAX_RADIUS:
            raise SymbolError(f"{group.name}: radius {self.radius} outside 1..{MAX_RADIUS}")
        if not 0 <= self.decay <= 65535:
            raise SymbolError(f"{group.name}: decay {self.decay} outside 0..65535")
        if not 1 <= self.escape_freq <= 65535:
            raise SymbolError(f"{group.name}: escape_freq {self.escape_freq} outside 1..65535")
        if group.maskable and not 1 <= self.mask_freq <= 65535:
            raise SymbolError(f"{group.name}: mask_freq {self.mask_freq} outside 1..65535")
        if not group.maskable and self.mask_freq != 0:
            raise SymbolError(f"{group.name}: mask_freq must be 0 for a group that is not maskable")


# Chosen with benchmarks/bitstream_rate.py on the synthetic traces of bitstream/synthetic.py
# (25 fps); see spec/bitstream.md §9 for the measured rates.
DEFAULT_PARAMS: dict[MotionKind, dict[str, GroupParams]] = {
    MotionKind.FV2V: {
        "rotation": GroupParams(step=0.5, radius=64, decay=27500, escape_freq=64),
        "translation": GroupParams(step=0.005, radius=64, decay=11500, escape_freq=64),
        "expression": GroupParams(step=0.01, radius=64, decay=27000, escape_freq=64, mask_freq=62800),
    },
    MotionKind.FOMM: {
        "keypoints": GroupParams(step=0.005, radius=64, decay=36500, escape_freq=64),
        "jacobians": GroupParams(step=0.01, radius=64, decay=31500, escape_freq=64),
    },
}


def default_params(kind: MotionKind) -> tuple[GroupParams, ...]:
    """Default parameters of every group of `kind`, in layout order."""
    kind = MotionKind(kind)
    return tuple(DEFAULT_PARAMS[kind][g.name] for g in layout(kind))


def scaled_params(kind: MotionKind, scale: float) -> tuple[GroupParams, ...]:
    """Default parameters with every step times `scale` and every decay D / 2^16 raised to `scale`: the residual
    model keeps its shape in motion units, so a residual costs about log2(1 / scale) bits more per symbol."""
    if not (math.isfinite(scale) and scale > 0):
        raise SymbolError(f"step scale {scale} must be a finite number > 0")
    return tuple(replace(p, step=p.step * scale, decay=min(round(DECAY_ONE * (p.decay / DECAY_ONE) ** scale),
                                                           DECAY_ONE - 1))
                 for p in default_params(kind))


def check_ints(ints: Mapping[str, np.ndarray], groups: tuple[SymbolGroup, ...]) -> dict[str, np.ndarray]:
    """Validate quantised symbols against the layout; return them as int64 copies."""
    names = [g.name for g in groups]
    if sorted(ints) != sorted(names):
        raise SymbolError(f"motion groups {sorted(ints)} do not match the layout {names}")
    out = {}
    for g in groups:
        a = np.asarray(ints[g.name])
        if a.shape != (g.count, g.dims):
            raise SymbolError(f"{g.name}: shape {a.shape} is not ({g.count}, {g.dims})")
        if a.dtype.kind not in "iu":
            raise SymbolError(f"{g.name}: dtype {a.dtype} is not an integer type")
        a = a.astype(np.int64)
        if a.size and int(np.abs(a).max()) > QUANT_MAX:
            raise SymbolError(f"{g.name}: |value| exceeds {QUANT_MAX}")
        out[g.name] = a
    return out


def quantize(motion: Mapping[str, np.ndarray], header: StreamHeader) -> dict[str, np.ndarray]:
    """Round each group to multiples of its step (ties to even), clipped to ±QUANT_MAX; int32."""
    groups = header.groups
    names = [g.name for g in groups]
    if sorted(motion) != sorted(names):
        raise SymbolError(f"motion groups {sorted(motion)} do not match the layout {names}")
    out = {}
    for g, p in zip(groups, header.params):
        x = np.asarray(motion[g.name], dtype=np.float64)
        if x.shape == (1, g.count, g.dims):
            x = x[0]
        if x.shape != (g.count, g.dims):
            raise SymbolError(f"{g.name}: shape {x.shape} is not ({g.count}, {g.dims})")
        if not np.isfinite(x).all():
            raise SymbolError(f"{g.name}: motion contains NaN or infinity")
        q = np.rint(x / p.step)
        out[g.name] = np.clip(q, -QUANT_MAX, QUANT_MAX).astype(np.int32)
    return out


def dequantize(ints: Mapping[str, np.ndarray], header: StreamHeader) -> dict[str, np.ndarray]:
    """Float32 motion from quantised symbols: value × float32 step."""
    checked = check_ints(ints, header.groups)
    return {
        g.name: (checked[g.name].astype(np.float64) * p.step).astype(np.float32)
        for g, p in zip(header.groups, header.params)
    }
