"""Training pairs from a prepared cache: frames decoded once into memory, pairs drawn within a clip."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from codec.data.augment import NO_AUGMENT, AugmentConfig, augment_pairs
from codec.data.cache import CacheError, CacheIndex, ClipRecord, read_clip_frames, read_landmarks, read_poses
from codec.data.landmarks import LANDMARK_INDICES


@dataclass
class FrameStore:
    """All frames of some clips as one uint8 tensor (N, 3, S, S), their pose and landmark labels and clip bounds."""

    frames: torch.Tensor
    poses: torch.Tensor
    landmarks: torch.Tensor  # (N, K, 2), NaN where unlabelled
    clip_start: torch.Tensor
    clip_length: torch.Tensor
    clips: list[ClipRecord]

    @classmethod
    def from_arrays(cls, clips: list[ClipRecord], frames: Iterable[np.ndarray], poses: list[np.ndarray],
                    landmarks: list[np.ndarray] | None = None) -> FrameStore:
        """Stack per-clip (T, S, S, 3) uint8 frames, (T, 3) poses and (T, K, 2) landmarks (NaN if None).

        `frames` is consumed one clip at a time into one preallocated tensor, so a cache needs its own
        size in memory and one clip more, not three times its size (a list, its concatenation, the copy).
        """
        if not clips:
            raise CacheError("no clips to sample from")
        lengths = torch.tensor([len(p) for p in poses], dtype=torch.long)
        starts = torch.cumsum(lengths, 0) - lengths
        stacked = None
        for clip, start, length, block in zip(clips, starts.tolist(), lengths.tolist(), frames, strict=True):
            if len(block) != length:
                raise CacheError(f"clip {clip.id}: {len(block)} frames but {length} pose labels")
            if stacked is None:
                stacked = torch.empty((int(lengths.sum()), 3, *block.shape[1:3]), dtype=torch.uint8)
            stacked[start:start + length] = torch.from_numpy(block).permute(0, 3, 1, 2)
        labels = torch.from_numpy(np.concatenate(poses).astype(np.float32))
        if landmarks is None:
            points = torch.full((len(stacked), len(LANDMARK_INDICES), 2), float("nan"))
        else:
            points = torch.from_numpy(np.concatenate(landmarks).astype(np.float32))
        return cls(stacked, labels, points, starts, lengths, list(clips))

    @classmethod
    def from_cache(cls, cache_dir: Path, split: str = "train", max_clips: int | None = None) -> FrameStore:
        """Decode every clip of a split once (≈ 196 KB per 256² frame in memory)."""
        index = CacheIndex.load(cache_dir)
        clips = index.select(split)[:max_clips]
        if not clips:
            raise CacheError(f"cache {cache_dir} has no clips in split {split!r}")
        poses = [read_poses(cache_dir, clip) for clip in clips]
        landmarks = [read_landmarks(cache_dir, clip) for clip in clips]
        frames = (read_clip_frames(cache_dir, clip) for clip in clips)
        return cls.from_arrays(clips, frames, poses, landmarks)

    def to(self, device: torch.device | str) -> FrameStore:
        """The same store with frames and labels on `device` (a GPU keeps the whole cache resident)."""
        return FrameStore(self.frames.to(device), self.poses.to(device), self.landmarks.to(device),
                          self.clip_start, self.clip_length, self.clips)

    @property
    def clip_of_frame(self) -> torch.Tensor:
        """Clip index of every frame (N,)."""
        return torch.repeat_interleave(torch.arange(len(self.clips)), self.clip_length)


class PairDataset(Dataset):
    """Item i: frame i as driving and a random other frame of the same clip as source, augmented.

    Indexing suits a DataLoader; `batch` draws a whole batch at once on the store's device, which
    keeps a GPU busy without loader workers.
    """

    def __init__(self, store: FrameStore, augment: AugmentConfig = NO_AUGMENT):
        self.store = store
        self.augment = augment
        self._clip_of_frame = store.clip_of_frame

    def __len__(self) -> int:
        return len(self.store.frames)

    def source_for(self, driving: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A random frame index from the clip of each driving index, different from it when possible."""
        clip = self._clip_of_frame[driving]
        start, length = self.store.clip_start[clip], self.store.clip_length[clip]
        # Draw among the other length-1 frames and skip over the driving frame itself.
        offset = (torch.rand(len(driving), generator=generator) * (length - 1).clamp(min=1)).long()
        offset = torch.minimum(offset, (length - 2).clamp(min=0))
        source = start + offset
        return torch.where((source >= driving) & (length > 1), source + 1, source)

    def _pair(self, driving: torch.Tensor, generator: torch.Generator | None,
              previous: bool = False) -> dict[str, torch.Tensor]:
        source = self.source_for(driving, generator)
        store = self.store
        dev = store.frames.device
        src_i, drv_i = source.to(dev), driving.to(dev)
        # The frame before the driving one gets the same flip and colours: the random draws are replayed.
        replay = generator.get_state() if previous and generator is not None else None
        src, drv, src_pose, drv_pose, src_lm, drv_lm = self._augmented(src_i, drv_i, generator)
        pair = {"source": src, "driving": drv, "source_pose": src_pose, "driving_pose": drv_pose,
                "source_landmarks": src_lm, "driving_landmarks": drv_lm,
                "source_index": source, "driving_index": driving}
        if previous:
            if replay is None:
                raise ValueError("consecutive frames need a generator to share their augmentation")
            generator.set_state(replay)
            _, prev, _, prev_pose, _, prev_lm = self._augmented(src_i, drv_i - 1, generator)
            pair.update(previous=prev, previous_pose=prev_pose, previous_landmarks=prev_lm,
                        previous_index=driving - 1)
        return pair

    def _augmented(self, src_i: torch.Tensor, drv_i: torch.Tensor,
                   generator: torch.Generator | None) -> tuple[torch.Tensor, ...]:
        store = self.store
        return augment_pairs(store.frames[src_i].float() / 255, store.frames[drv_i].float() / 255,
                             store.poses[src_i], store.poses[drv_i], store.landmarks[src_i],
                             store.landmarks[drv_i], self.augment, generator)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        pair = self._pair(torch.tensor([index]), None)
        return {k: v[0] for k, v in pair.items()}

    def batch(self, size: int, generator: torch.Generator | None = None,
              previous: bool = False) -> dict[str, torch.Tensor]:
        """A batch of `size` pairs built on the store's device.

        Clips are drawn uniformly (as FOMM samples videos), so a minute-long clip does not drown
        twenty three-second ones; the driving frame is uniform within its clip. With `previous`, each
        pair also holds the frame just before its driving frame (`previous`, `previous_pose`, ...),
        augmented alike, for losses on the change between consecutive frames.
        """
        store = self.store
        clip = torch.randint(len(store.clips), (size,), generator=generator)
        first = int(previous)  # the driving frame needs a frame before it in its clip
        span = (store.clip_length[clip] - first).clamp(min=1)
        within = first + (torch.rand(size, generator=generator) * span).long()
        return self._pair(store.clip_start[clip] + within, generator, previous)
