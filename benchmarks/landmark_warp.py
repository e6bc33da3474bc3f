"""The image renderer's spline with MediaPipe's landmarks as keypoints: what perfect keypoints give, no learning.

For each clip, frame 0 is warped onto frames 10, 20, ... by `codec.models.thin_plate` through the 20
`codec.data.landmarks` points found on both frames (the warp128 spline: 64² grid, border anchors,
bilinear sampling of the 512² frame), and scored with LPIPS-alex against the true frame, beside
holding frame 0. No refiner, no occlusion handling. Usage:
    .venv/bin/python benchmarks/landmark_warp.py [--data ../shared/data/bench512] [--frames 250] [--stride 10]
"""
from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from codec.data.face_track import FaceLandmarker, native_stderr_silenced
from codec.data.landmarks import normalised_landmarks
from codec.data.prepare import landmarker_path
from codec.decoder import frame_to_tensor
from codec.metrics import lpips_distance
from codec.models.config import FV2VConfig
from codec.models.thin_plate import thin_plate_grid
from codec.video import read_frames

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import DEFAULT_FRAMES  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bench512"


def spline_warp(keyframe: torch.Tensor, source_points: np.ndarray, driving_points: np.ndarray) -> torch.Tensor:
    """The keyframe (1,3,S,S) moved so that its source points land on the driving points."""
    cfg = FV2VConfig.named("warp128").image
    grid = thin_plate_grid(torch.from_numpy(driving_points)[None], torch.from_numpy(source_points)[None], cfg.size,
                           cfg.anchors_per_side, cfg.regularisation)
    grid = F.interpolate(grid.permute(0, 3, 1, 2), size=keyframe.shape[-2:], mode="bilinear",
                         align_corners=True).permute(0, 2, 3, 1)
    return F.grid_sample(keyframe, grid, padding_mode="border", align_corners=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    p.add_argument("--stride", type=int, default=10)
    args = p.parse_args(argv)
    clips = sorted(args.data.glob("*.mp4"))
    if not clips:
        print(f"error: no .mp4 clips in {args.data}", file=sys.stderr)
        return 1
    rows = []
    with native_stderr_silenced(), FaceLandmarker(landmarker_path(None)) as landmarker:
        for clip in clips:
            frames = list(itertools.islice(read_frames(clip, size=512, fps=25), args.frames))
            found = landmarker.detect(frames[0])
            source = normalised_landmarks(found.points, 512, 512)
            keyframe = frame_to_tensor(frames[0], torch.device("cpu"))
            warped, held, truth, missed = [], [], [], 0
            for frame in frames[args.stride::args.stride]:
                hit = landmarker.detect(frame)
                if hit is None:
                    missed += 1
                    continue
                moved = spline_warp(keyframe, source, normalised_landmarks(hit.points, 512, 512))
                warped.append(moved[0].permute(1, 2, 0).mul(255).round().clamp(0, 255).byte().numpy())
                truth.append(frame)
                held.append(frames[0])
            truth = np.stack(truth)
            rows.append((clip.stem, float(lpips_distance(np.stack(held), truth).mean()),
                         float(lpips_distance(np.stack(warped), truth).mean()), missed))
            print(f"{rows[-1][0]:40s} hold {rows[-1][1]:.3f}  spline {rows[-1][2]:.3f}  (no face on {missed})",
                  flush=True)
    hold, spline = np.mean([r[1] for r in rows]), np.mean([r[2] for r in rows])
    print(f"{'mean':40s} hold {hold:.3f}  spline {spline:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
