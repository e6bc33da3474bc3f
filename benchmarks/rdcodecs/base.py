"""What every benchmarked codec provides: operating points and one call that codes a whole clip."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterable

import numpy as np


class BenchmarkError(RuntimeError):
    """A codec cannot run as asked (missing module, weights, bad setting)."""


@dataclass(frozen=True)
class CodedClip:
    """The complete stream of one clip at one operating point and what the decoder made of it."""

    stream: bytes
    frames: np.ndarray  # (N, H, W, 3) uint8 RGB, decoded from `stream`
    encode_seconds: float
    decode_seconds: float


def collect_frames(pictures: Iterable[np.ndarray], like: np.ndarray, label: str) -> np.ndarray:
    """Decoded pictures in an array shaped as `like`, filled in place (a 70 s clip at 512² is 1.4 GB a copy)."""
    decoded = np.empty_like(like)
    count = 0
    for picture in pictures:
        if count == len(like):
            raise BenchmarkError(f"{label}: the stream holds more than {len(like)} frames")
        decoded[count] = picture
        count += 1
    if count != len(like):
        raise BenchmarkError(f"{label}: decoded {count} frames of {len(like)}")
    return decoded


class Codec(ABC):
    """One method of the rate-distortion benchmark."""

    name: str
    weights: str = "-"  # which model weights produced the numbers ("-" for classical codecs)
    untrained: bool = False  # True for the randomly initialised development models

    @abstractmethod
    def operating_points(self) -> list[str]:
        """Point labels, lowest quality last or first; each is stable across runs (it keys rd.csv)."""

    @abstractmethod
    def code(self, frames: np.ndarray, fps: float, point: str) -> CodedClip:
        """Encode `frames` (N, H, W, 3) uint8 RGB at `point`, then decode the stream."""

    @abstractmethod
    def settings(self) -> dict[str, str]:
        """Everything besides the point that determines the stream (recorded in run.json)."""
