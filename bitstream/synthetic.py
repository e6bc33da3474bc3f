"""Synthetic motion traces with talking-head statistics, for rate measurements and tests.

fv2v: slow head rotation (yaw ±20°, pitch and roll smaller, in degrees), translation ~±0.05,
expression deltas AR(1) with std 0.02-0.05 and frame-to-frame correlation 0.90-0.98.
fomm: keypoints in [-1, 1] moving ~0.01 per frame, Jacobians near identity. 25 fps.
"""
from __future__ import annotations

import numpy as np

from .constants import MotionKind
from .symbols import default_num_keypoints

FPS = 25


def _ar1(rng: np.random.Generator, frames: int, std: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """Stationary AR(1) series, one column per entry of `std`/`rho` (same shape)."""
    out = np.empty((frames,) + std.shape)
    out[0] = rng.normal(0.0, std)
    innovation = std * np.sqrt(1.0 - rho**2)
    for t in range(1, frames):
        out[t] = rho * out[t - 1] + rng.normal(0.0, innovation)
    return out


def _sway(rng: np.random.Generator, frames: int, amplitude: float, periods_s: tuple[float, ...]) -> np.ndarray:
    """Sum of slow sinusoids with random phases: a head turning and nodding."""
    t = np.arange(frames) / FPS
    weights = rng.uniform(0.5, 1.0, len(periods_s))
    weights *= amplitude / weights.sum()
    return sum(w * np.sin(2 * np.pi * t / p + rng.uniform(0, 2 * np.pi)) for w, p in zip(weights, periods_s))


def fv2v_trace(frames: int, num_keypoints: int | None = None, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Per-frame fv2v motion dicts (float32): rotation (1,3) degrees, translation (1,3), expression (K,3)."""
    rng = np.random.default_rng(seed)
    k = num_keypoints or default_num_keypoints(MotionKind.FV2V)
    # Pose estimators jitter by a few tenths of a degree from frame to frame.
    rotation = np.stack([_sway(rng, frames, 20.0, (7.0, 2.9)), _sway(rng, frames, 8.0, (5.3, 1.7)),
                         _sway(rng, frames, 5.0, (6.1, 2.3))], axis=1) + rng.normal(0, 0.3, (frames, 3))
    translation = np.stack([_sway(rng, frames, 0.05, (6.7, 3.1)) for _ in range(3)], axis=1)
    translation += rng.normal(0, 0.001, (frames, 3))
    expression = _ar1(rng, frames, rng.uniform(0.02, 0.05, (k, 3)), rng.uniform(0.90, 0.98, (k, 3)))
    return [{"rotation": rotation[t][None].astype(np.float32),
             "translation": translation[t][None].astype(np.float32),
             "expression": expression[t].astype(np.float32)} for t in range(frames)]


def fomm_trace(frames: int, num_keypoints: int | None = None, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Per-frame FOMM motion dicts (float32): keypoints (K,2) in [-1,1], jacobians (K,4) near identity."""
    rng = np.random.default_rng(seed)
    k = num_keypoints or default_num_keypoints(MotionKind.FOMM)
    head = np.stack([_sway(rng, frames, 0.08, (5.0, 2.1)), _sway(rng, frames, 0.05, (4.3, 1.9))], axis=1)
    local = _ar1(rng, frames, np.full((k, 2), 0.03), np.full((k, 2), 0.95))
    keypoints = np.clip(rng.uniform(-0.6, 0.6, (k, 2)) + head[:, None, :] + local, -1, 1)
    jacobians = np.array([1.0, 0.0, 0.0, 1.0]) + _ar1(rng, frames, np.full((k, 4), 0.05), np.full((k, 4), 0.95))
    return [{"keypoints": keypoints[t].astype(np.float32), "jacobians": jacobians[t].astype(np.float32)}
            for t in range(frames)]


def trace(kind: MotionKind, frames: int, num_keypoints: int | None = None, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """A synthetic trace of `kind`."""
    make = fv2v_trace if MotionKind(kind) == MotionKind.FV2V else fomm_trace
    return make(frames, num_keypoints, seed)
