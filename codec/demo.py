"""`fvc demo`: the built-in default input (a moving astronaut portrait) encoded, decoded and scored."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np

# Face centre and crop side in skimage.data.astronaut() (512x512, public domain, NASA): a
# face-centred crop like the talking-head training clips, with the hair and chin inside.
_FACE_CENTRE_XY = (224.0, 128.0)
_FACE_CROP = 250.0


@dataclass(frozen=True)
class DemoClipConfig:
    """The synthetic clip: seconds of head motion at `fps`, frames `size` pixels square."""

    seconds: float = 4.0
    fps: int = 25
    size: int = 512

    @property
    def frame_count(self) -> int:
        return max(1, round(self.seconds * self.fps))


@dataclass(frozen=True)
class HeadPose:
    """In-plane pose of the face crop: roll in degrees, shift in source pixels, zoom factor."""

    roll: float
    dx: float
    dy: float
    zoom: float


def head_motion_path(t: float) -> HeadPose:
    """A smooth, non-periodic-looking head motion: sums of slow sines with unrelated frequencies."""
    def wave(amplitude: float, *freqs_phases: tuple[float, float]) -> float:
        return amplitude * sum(math.sin(2 * math.pi * f * t + p) for f, p in freqs_phases) / len(freqs_phases)

    return HeadPose(roll=wave(6.0, (0.23, 0.0), (0.61, 1.3)),
                    dx=wave(12.0, (0.31, 0.4), (0.83, 2.1)),
                    dy=wave(7.0, (0.19, 1.7), (0.57, 0.2)),
                    zoom=1.0 + wave(0.06, (0.13, 0.9), (0.47, 2.8)))


def _source_matrix(pose: HeadPose, size: int) -> np.ndarray:
    """3x3 map from output pixel (x, y, 1) to astronaut pixel coordinates."""
    scale = _FACE_CROP / size / pose.zoom
    c, s = math.cos(math.radians(pose.roll)), math.sin(math.radians(pose.roll))
    half = (size - 1) / 2
    centre = (_FACE_CENTRE_XY[0] + pose.dx, _FACE_CENTRE_XY[1] + pose.dy)
    linear = scale * np.array([[c, -s], [s, c]])
    offset = np.array(centre) - linear @ np.array([half, half])
    return np.array([[*linear[0], offset[0]], [*linear[1], offset[1]], [0.0, 0.0, 1.0]])


def astronaut_frames(config: DemoClipConfig) -> Iterator[np.ndarray]:
    """The clip's frames, (size, size, 3) uint8, generated on the fly."""
    from skimage import data, transform

    image = data.astronaut().astype(np.float32) / 255.0
    for i in range(config.frame_count):
        matrix = _source_matrix(head_motion_path(i / config.fps), config.size)
        frame = transform.warp(image, transform.AffineTransform(matrix=matrix),
                               output_shape=(config.size, config.size), order=1, mode="edge")
        yield np.clip(np.rint(frame * 255.0), 0, 255).astype(np.uint8)
