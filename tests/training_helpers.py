"""Tiny stand-ins shared by the trainer tests: a VGG-shaped feature stack and a clip store of moving blobs."""
import numpy as np
import torch
from torch import nn

from codec.data.cache import ClipRecord
from codec.data.sampler import FrameStore

SIZE = 64


class TinyFeatures(nn.Module):
    """Five small conv stages (two pooled) in place of VGG16, so a step takes well under a second."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.stages = nn.ModuleList(nn.Conv2d(3 if i == 0 else 8, 8, 3, padding=1) for i in range(5))

    def forward(self, x):
        maps = []
        for i, stage in enumerate(self.stages):
            x = torch.relu(stage(x if i % 2 == 0 or i == 0 else nn.functional.avg_pool2d(x, 2)))
            maps.append(x)
        return maps


def blob_store(clips: int = 2, frames: int = 4) -> FrameStore:
    """Clips of a soft blob moving over a coloured background, SIZE², with constant pose labels and
    landmarks on a ring that moves with the blob."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    ring = np.stack([np.cos(np.arange(20) * 0.31), np.sin(np.arange(20) * 0.31)], -1) * 0.2
    arrays, records, landmarks = [], [], []
    for c in range(clips):
        seq, points = [], []
        for t in range(frames):
            cx, cy = 32 + 8 * np.sin(t + c), 30 + 6 * np.cos(t)
            points.append(ring + np.array([cx, cy]) / (SIZE - 1) * 2 - 1)
            blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (10 + 3 * c) ** 2))
            seq.append(np.stack([blob * 255, np.full((SIZE, SIZE), 80 + 60 * c), (xx * 4) % 256], -1))
        arrays.append(np.stack(seq).astype(np.uint8))
        landmarks.append(np.stack(points).astype(np.float32))
        records.append(ClipRecord(f"c{c}", f"c{c}.mp4", f"p{c}", "train", "train", frames, 25.0, SIZE, (SIZE, SIZE),
                                  (0, 0, SIZE), "centre"))
    poses = [np.tile(np.float32([[5.0, -3.0, 1.0]]), (frames, 1)) for _ in range(clips)]
    return FrameStore.from_arrays(records, arrays, poses, landmarks)


def prepare_blob_cache(folder, label_poses: bool = False):
    """Two 4-frame clips of a moving blob, prepared (centre crops) into `folder`/cache; with `label_poses`, the
    constant pose labels face detection would have written (the clips hold no face). Returns the cache folder."""
    from codec.data.cache import CacheIndex, write_labels
    from codec.data.prepare import main as prepare_main
    from codec.video import VideoWriter

    clips, cache = folder / "clips", folder / "cache"
    clips.mkdir()
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for name in ("ann", "bob"):
        with VideoWriter(clips / f"{name}.mp4", fps=25) as writer:
            for t in range(4):
                blob = np.exp(-((xx - 30 - 3 * t) ** 2 + (yy - 32) ** 2) / 200.0) * 255
                writer.write(np.stack([blob, blob * 0.5, np.full_like(blob, 90)], -1).astype(np.uint8))
    assert prepare_main([str(clips), str(cache), "--size", str(SIZE), "--centre-crop"]) == 0
    if label_poses:
        for clip in CacheIndex.load(cache).clips:
            write_labels(cache / clip.poses, np.tile(np.float32([[5.0, -3.0, 1.0]]), (clip.frames, 1)))
    return cache
