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
