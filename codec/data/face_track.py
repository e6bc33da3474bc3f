"""Face boxes and head-pose labels from MediaPipe's face landmarker (optional dependency).

Pose labels use the axes of `codec.models.keypoint_transform`: x right, y down the rows, z into the
picture, R = R_x(pitch) · R_y(yaw) · R_z(roll). A positive yaw turns the face towards image left.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

# Side of the square crop over the largest side of the landmark box (mid-forehead to chin): 1.9 frames
# the face like the face-centred 256² training clips and the bench512 clips (face ≈ 0.5-0.6 of the side).
CROP_SCALE = 1.9

# Points of MediaPipe's face mesh: 468 on the face, 10 on the irises.
MESH_POINTS = 478
FACE_MESH_POINTS = 468

# MediaPipe's camera space is OpenGL's (y up, z towards the viewer); ours has y down, z into the picture.
_GL_TO_IMAGE = np.diag([1.0, -1.0, -1.0])


class FaceTrackError(RuntimeError):
    """The face landmarker could not be set up (missing model bundle or mediapipe)."""


@dataclass(frozen=True)
class SquareBox:
    """A square crop in source pixels: top-left corner and side."""

    x: int
    y: int
    side: int

    def as_list(self) -> list[int]:
        """[x, y, side], the form stored in the cache index."""
        return [self.x, self.y, self.side]


@dataclass(frozen=True)
class FaceObservation:
    """One detected face: landmark bounding box (x0, y0, x1, y1) in pixels, pose in degrees, the face-mesh points
    (478, 2) as fractions of the picture's width and height, and their depth (478,) as a fraction of its width
    (into the picture positive; MediaPipe's relative depth, 0 near the face's centre)."""

    box: tuple[float, float, float, float]
    pose: np.ndarray
    points: np.ndarray
    depth: np.ndarray


def mediapipe_available() -> bool:
    """True when `mediapipe` can be imported."""
    return importlib.util.find_spec("mediapipe") is not None


def pose_from_rotation(rotation: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) degrees of a rotation in our image axes, the inverse of `rotation_matrix`."""
    u, _, vt = np.linalg.svd(rotation)
    r = u @ vt  # drop any scale MediaPipe leaves in the matrix
    yaw = np.arcsin(np.clip(r[0, 2], -1.0, 1.0))
    pitch = np.arctan2(-r[1, 2], r[2, 2])
    roll = np.arctan2(-r[0, 1], r[0, 0])
    return np.degrees([yaw, pitch, roll]).astype(np.float32)


def pose_from_facial_transform(matrix: np.ndarray) -> np.ndarray:
    """(yaw, pitch, roll) degrees from MediaPipe's 4x4 facial transformation matrix."""
    return pose_from_rotation(_GL_TO_IMAGE @ np.asarray(matrix, dtype=np.float64)[:3, :3] @ _GL_TO_IMAGE)


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null meanwhile: MediaPipe's C++ logs ignore every log-level setting."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


class FaceLandmarker:
    """MediaPipe's face landmarker in image mode, one face; use as a context manager."""

    def __init__(self, model_path: Path):
        if not mediapipe_available():
            raise FaceTrackError("mediapipe is not installed (pip install 'fvc[prepare]')")
        if not Path(model_path).is_file():
            raise FaceTrackError(f"face landmarker model not found: {model_path}")
        from mediapipe.tasks.python import BaseOptions, vision

        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(model_path)),
            running_mode=vision.RunningMode.IMAGE,
            num_faces=1,
            output_facial_transformation_matrixes=True,
        )
        self._landmarker = vision.FaceLandmarker.create_from_options(options)

    def __enter__(self) -> FaceLandmarker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the landmarker (MediaPipe complains at interpreter exit otherwise)."""
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def detect(self, frame: np.ndarray) -> FaceObservation | None:
        """The face in an RGB uint8 frame (H, W, 3), or None when there is none."""
        import mediapipe as mp

        h, w = frame.shape[:2]
        image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(frame))
        result = self._landmarker.detect(image)
        if not result.face_landmarks or not result.facial_transformation_matrixes:
            return None
        mesh = np.array([(p.x, p.y, p.z) for p in result.face_landmarks[0]], dtype=np.float64)
        points = mesh[:, :2]
        pts = points * (w, h)
        box = (*pts.min(0), *pts.max(0))
        return FaceObservation(tuple(float(v) for v in box),
                               pose_from_facial_transform(np.array(result.facial_transformation_matrixes[0])), points,
                               mesh[:, 2])


def mesh_points(landmarker: FaceLandmarker, frames: Iterable[np.ndarray]) -> np.ndarray:
    """Face-mesh points (N, 478, 2) in pixels of each RGB frame, NaN where the landmarker finds no face."""
    rows = []
    for frame in frames:
        hit = landmarker.detect(frame)
        height, width = frame.shape[:2]
        rows.append(np.full((MESH_POINTS, 2), np.nan) if hit is None else hit.points * (width, height))
    return np.array(rows, np.float64).reshape(-1, MESH_POINTS, 2)


def tiles(width: int, height: int) -> list[SquareBox]:
    """Half-overlapping squares of half the short side covering the frame.

    MediaPipe's short-range detector misses faces under ~15 % of the picture (a 190 px face in a
    1920x1080 wide shot); inside a tile that face is a third of the picture.
    """
    side = max(1, min(width, height) // 2)
    step = max(1, side // 2)
    xs = sorted({*range(0, width - side + 1, step), width - side})
    ys = sorted({*range(0, height - side + 1, step), height - side})
    return [SquareBox(x, y, side) for y in ys for x in xs]


def find_face(landmarker: FaceLandmarker, frame: np.ndarray) -> FaceObservation | None:
    """The face in a whole frame, else the largest face found in any of its `tiles`."""
    found = landmarker.detect(frame)
    if found is not None:
        return found
    best = None
    for tile in tiles(frame.shape[1], frame.shape[0]):
        crop = np.ascontiguousarray(frame[tile.y:tile.y + tile.side, tile.x:tile.x + tile.side])
        hit = landmarker.detect(crop)
        if hit is None:
            continue
        x0, y0, x1, y1 = hit.box
        box = (x0 + tile.x, y0 + tile.y, x1 + tile.x, y1 + tile.y)
        # A face cut by a tile border gives a smaller box than the tile that holds all of it.
        if best is None or (x1 - x0) * (y1 - y0) > (best.box[2] - best.box[0]) * (best.box[3] - best.box[1]):
            points = (hit.points * tile.side + (tile.x, tile.y)) / (frame.shape[1], frame.shape[0])
            best = FaceObservation(box, hit.pose, points, hit.depth * tile.side / frame.shape[1])
    return best


def stable_square_box(boxes: Iterable[tuple[float, float, float, float]], width: int, height: int,
                      scale: float = CROP_SCALE) -> SquareBox | None:
    """One square crop for a whole clip: median face centre, side from the 90th-percentile face size.

    The side is capped at the frame's short side and the box shifted inside the frame, so face-centred
    clips keep (nearly) their whole picture. None when no box was given.
    """
    arr = np.asarray(list(boxes), dtype=np.float64).reshape(-1, 4)
    if len(arr) == 0:
        return None
    cx = np.median((arr[:, 0] + arr[:, 2]) / 2)
    cy = np.median((arr[:, 1] + arr[:, 3]) / 2)
    size = np.percentile(np.maximum(arr[:, 2] - arr[:, 0], arr[:, 3] - arr[:, 1]), 90)
    side = int(round(min(size * scale, width, height)))
    x = int(round(np.clip(cx - side / 2, 0, width - side)))
    y = int(round(np.clip(cy - side / 2, 0, height - side)))
    return SquareBox(x, y, side)


def centre_box(width: int, height: int) -> SquareBox:
    """The largest centred square of a frame (the fallback crop without a face landmarker)."""
    side = min(width, height)
    return SquareBox((width - side) // 2, (height - side) // 2, side)
