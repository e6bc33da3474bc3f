"""The MediaPipe face-mesh landmarks `fvc prepare` keeps per frame, and how a mirror image reorders them.

One landmark per fv2v keypoint: training ties keypoint k's image projection to landmark k, so the
keypoints mean the same face parts in every video from the first steps on.
"""
from __future__ import annotations

import numpy as np
import torch

from bitstream.constants import NUM_KEYPOINTS_FV2V

# (MediaPipe face-mesh index, name, (x, y, z) on a frontal mean face), weighted to the mouth and eyes:
# what moves when people talk. "left"/"right" are the subject's own sides (MediaPipe's numbering).
# x, y: the mean of the first 41 prepared training clips' landmarks, made symmetric and rounded; z (into
# the picture, as the volume's axes) is a rough face relief: it only seeds the learned canonical face.
LANDMARKS: tuple[tuple[int, str, tuple[float, float, float]], ...] = (
    (61, "mouth corner right", (-0.17, 0.29, -0.03)), (291, "mouth corner left", (0.17, 0.29, -0.03)),
    (0, "upper lip top", (0.0, 0.23, -0.12)), (17, "lower lip bottom", (0.0, 0.40, -0.1)),
    (13, "upper lip inner", (0.0, 0.27, -0.09)), (14, "lower lip inner", (0.0, 0.34, -0.09)),
    (33, "eye right outer", (-0.30, -0.17, 0.05)), (133, "eye right inner", (-0.12, -0.17, -0.02)),
    (159, "eye right top", (-0.22, -0.20, -0.01)), (145, "eye right bottom", (-0.21, -0.15, 0.0)),
    (263, "eye left outer", (0.30, -0.17, 0.05)), (362, "eye left inner", (0.12, -0.17, -0.02)),
    (386, "eye left top", (0.22, -0.20, -0.01)), (374, "eye left bottom", (0.21, -0.15, 0.0)),
    (1, "nose tip", (0.0, 0.07, -0.2)), (105, "brow right", (-0.29, -0.34, -0.03)),
    (334, "brow left", (0.29, -0.34, -0.03)),
    (152, "chin", (0.0, 0.62, -0.05)), (234, "cheek right", (-0.48, -0.04, 0.2)),
    (454, "cheek left", (0.48, -0.04, 0.2)),
)
LANDMARK_INDICES: tuple[int, ...] = tuple(i for i, _, _ in LANDMARKS)
MEAN_FACE: tuple[tuple[float, float, float], ...] = tuple(xyz for _, _, xyz in LANDMARKS)
_MIRROR_PAIRS = ((61, 291), (33, 263), (133, 362), (159, 386), (145, 374), (105, 334), (234, 454))


def _mirror_permutation() -> tuple[int, ...]:
    partner = {a: b for pair in _MIRROR_PAIRS for a, b in (pair, pair[::-1])}
    return tuple(LANDMARK_INDICES.index(partner.get(i, i)) for i in LANDMARK_INDICES)


# Row k of a mirrored frame's landmarks is row MIRROR[k] of the original's, with x negated.
MIRROR: tuple[int, ...] = _mirror_permutation()

if len(LANDMARKS) != NUM_KEYPOINTS_FV2V:
    raise AssertionError("one landmark per fv2v keypoint")


def normalised_landmarks(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """The subset of MediaPipe's (478, 2) points (x, y in [0, 1] of the picture) in the models'
    (x, y) ∈ [-1, 1] pixel-centre convention (−1 = centre of the first pixel): float32 (K, 2)."""
    subset = np.asarray(points, dtype=np.float64)[list(LANDMARK_INDICES)]
    size = np.array([width, height], dtype=np.float64)
    return (2 * (subset * size - 0.5) / (size - 1) - 1).astype(np.float32)


def mirror_landmarks(landmarks: torch.Tensor) -> torch.Tensor:
    """Landmarks (..., K, 2) of the horizontally flipped frames (NaN stays NaN)."""
    flipped = landmarks[..., list(MIRROR), :]
    return flipped * flipped.new_tensor([-1.0, 1.0])


def similarity(points: np.ndarray, onto: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Scale, rotation (2, 2) and shift of the 2D similarity that best maps `points` (N, 2) onto `onto` in least
    squares (a rotation, never a mirror image): x ↦ scale · rotation @ x + shift."""
    a_mean, b_mean = points.mean(axis=0), onto.mean(axis=0)
    a, b = points - a_mean, onto - b_mean
    u, s, vt = np.linalg.svd(b.T @ a)
    flip = np.sign(np.linalg.det(u @ vt))
    rotation = u @ np.diag([1.0, flip]) @ vt
    scale = float((s[0] + flip * s[1]) / (a ** 2).sum())
    return scale, rotation, b_mean - scale * rotation @ a_mean
