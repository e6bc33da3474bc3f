"""The training cache: one H.264 file and one pose-label file per clip, and `index.json` listing them.

Layout of a cache folder:
    index.json               CacheIndex: version, frame side, fps, crf and one ClipRecord per clip
    clips/<id>.mp4           the clip's face crops at `size`² and `fps` (codec.video.VideoWriter at `crf`)
    clips/<id>.pose.npy      float32 (frames, 3): yaw, pitch, roll degrees (NaN where no face was found)
    clips/<id>.landmarks.npy float32 (frames, K, 2): the `codec.data.landmarks` subset, (x, y) in [-1, 1]
                             (NaN where no face was found)
    clips/<id>.json          the ClipRecord, written last: a clip is complete once this file exists
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import importlib.util

import numpy as np

from codec.data.landmarks import LANDMARK_INDICES
from codec.errors import InputError

# Version 2 added the per-frame landmarks.
CACHE_VERSION = 2
# crf 20 keeps the cache at ~39-41 dB PSNR to the crops (the sources carry their own coding noise) and all
# train clips at 256² inside the 60 MB that one device call can carry (docs/training.md).
DEFAULT_CRF = 20
INDEX_NAME = "index.json"
CLIPS_DIR = "clips"


class CacheError(InputError):
    """A cache folder that is missing, incomplete or of another version."""


@dataclass(frozen=True)
class ClipRecord:
    """One cached clip: where it came from, how it was cropped, and which split it belongs to."""

    id: str
    source: str
    identity: str
    set: str
    split: str
    frames: int
    fps: float
    size: int
    source_size: tuple[int, int]
    box: tuple[int, int, int]
    crop: str

    @property
    def video(self) -> str:
        """The clip's video, relative to the cache folder."""
        return f"{CLIPS_DIR}/{self.id}.mp4"

    @property
    def poses(self) -> str:
        """The clip's pose labels, relative to the cache folder."""
        return f"{CLIPS_DIR}/{self.id}.pose.npy"

    @property
    def landmarks(self) -> str:
        """The clip's landmark labels, relative to the cache folder."""
        return f"{CLIPS_DIR}/{self.id}.landmarks.npy"

    @property
    def record(self) -> str:
        """The clip's completion record, relative to the cache folder."""
        return f"{CLIPS_DIR}/{self.id}.json"

    @classmethod
    def from_dict(cls, data: dict) -> ClipRecord:
        """Inverse of `dataclasses.asdict` (JSON lists back to tuples)."""
        values = dict(data)
        values["source_size"] = tuple(values["source_size"])
        values["box"] = tuple(values["box"])
        return cls(**values)


@dataclass
class CacheIndex:
    """Everything `index.json` holds."""

    size: int
    fps: float
    crf: int
    clips: list[ClipRecord] = field(default_factory=list)
    version: int = CACHE_VERSION

    def select(self, split: str) -> list[ClipRecord]:
        """Clips of one split ('train' or 'val'), or all clips for 'all'."""
        if split == "all":
            return list(self.clips)
        if split not in ("train", "val"):
            raise CacheError(f"unknown split {split!r}: use train, val or all")
        return [c for c in self.clips if c.split == split]

    def save(self, cache_dir: Path) -> None:
        """Write index.json atomically."""
        data = {"version": self.version, "size": self.size, "fps": self.fps, "crf": self.crf,
                "clips": [asdict(c) for c in self.clips]}
        write_json_atomic(Path(cache_dir) / INDEX_NAME, data)

    @classmethod
    def load(cls, cache_dir: Path) -> CacheIndex:
        """Read a cache's index.json, checking its version."""
        path = Path(cache_dir) / INDEX_NAME
        if not path.is_file():
            raise CacheError(f"not a prepared cache (no {INDEX_NAME}): {cache_dir}")
        try:
            data = json.loads(path.read_text())
            version = data["version"]
            if version != CACHE_VERSION:
                raise CacheError(f"cache version {version} is not {CACHE_VERSION}: re-run prepare: {cache_dir}")
            return cls(size=data["size"], fps=data["fps"], crf=data["crf"],
                       clips=[ClipRecord.from_dict(c) for c in data["clips"]])
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, CacheError):
                raise
            raise CacheError(f"damaged {INDEX_NAME} ({exc.__class__.__name__}: {exc}): {path}") from None


def write_json_atomic(path: Path, data) -> None:
    """Write JSON through a temporary file so a crash never leaves a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def write_labels(path: Path, labels: np.ndarray) -> None:
    """Save per-frame float32 labels (poses or landmarks) atomically."""
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, np.asarray(labels, dtype=np.float32))
    os.replace(tmp, path)


def _read_labels(cache_dir: Path, name: str, shape: tuple[int, ...]) -> np.ndarray:
    labels = np.load(Path(cache_dir) / name)
    if labels.shape != shape:
        raise CacheError(f"{name} has shape {labels.shape}, expected {shape}")
    return labels


def read_poses(cache_dir: Path, clip: ClipRecord) -> np.ndarray:
    """The clip's (frames, 3) pose labels, checked against its frame count."""
    return _read_labels(cache_dir, clip.poses, (clip.frames, 3))


def read_landmarks(cache_dir: Path, clip: ClipRecord) -> np.ndarray:
    """The clip's (frames, K, 2) landmark labels, checked against its frame count."""
    return _read_labels(cache_dir, clip.landmarks, (clip.frames, len(LANDMARK_INDICES), 2))


def read_clip_frames(cache_dir: Path, clip: ClipRecord) -> np.ndarray:
    """The clip's frames (frames, size, size, 3) uint8, checked against its record.

    Decodes with codec.video (PyAV); where PyAV is missing, as on the lent GPU machines, with
    OpenCV, whose colour conversion differs from PyAV's by ~44 dB PSNR.
    """
    path = Path(cache_dir) / clip.video
    if not path.is_file():
        raise CacheError(f"cached clip missing: {path}")
    if importlib.util.find_spec("av") is not None:
        from codec.video import VideoError, read_frames

        try:
            frames = [*read_frames(path, size=clip.size)]
        except VideoError as exc:
            raise CacheError(f"cached clip unusable: {exc}") from None
    else:
        frames = _read_with_opencv(path)
    if not frames:
        raise CacheError(f"cached clip unusable: no frames decoded from {path}")
    frames = np.stack(frames)
    if frames.shape != (clip.frames, clip.size, clip.size, 3):
        raise CacheError(f"{clip.video} holds {frames.shape}, expected ({clip.frames}, {clip.size}, {clip.size}, 3)")
    return frames


def _read_with_opencv(path: Path) -> list[np.ndarray]:
    try:
        import cv2
    except ImportError:
        raise CacheError("reading the cache needs PyAV (pip install av) or OpenCV") from None
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    finally:
        capture.release()
    return frames
