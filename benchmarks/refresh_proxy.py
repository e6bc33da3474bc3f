"""Which cheap per-frame signal tracks LPIPS for the encoder's refresh decision: measured on held-out cache clips.

For every val-split clip of a prepared cache (never bench512), frame 0 is the keyframe and frames
k·stride are rendered from their estimated motion; each is scored with LPIPS-alex (the truth, ~100 ms)
and with luma PSNR after area down-sizing to 32², 64² and 128² (well under a millisecond each).
Prints the rank correlation of each proxy with LPIPS and, per proxy, the dB value at which frames
cross LPIPS 0.2 and 0.25 (a median over frames in a band around them). Usage:
    .venv/bin/python benchmarks/refresh_proxy.py --cache CACHE --model WEIGHTS [--stride 5] [--max-clips 16]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from codec.data.cache import CacheIndex, read_clip_frames
from codec.decoder import frame_to_tensor, tensor_to_frame
from codec.encoder import luma_psnr
from codec.metrics import lpips_distance
from codec.motion_model import load_model

PROXY_SIZES = (32, 64, 128)


def _ranks(values: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(values)).astype(np.float64)


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation (ties broken by order, fine for continuous scores)."""
    return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


def measure(cache: Path, model, stride: int, max_clips: int | None) -> dict[str, np.ndarray]:
    """LPIPS and every proxy of each rendered frame of the cache's val clips."""
    scores: dict[str, list[float]] = {"lpips": [], **{f"psnr{s}": [] for s in PROXY_SIZES}}
    device = torch.device("cpu")
    for clip in CacheIndex.load(cache).select("val")[:max_clips]:
        frames = read_clip_frames(cache, clip)
        with torch.inference_mode():
            state = model.analyze_keyframe(frame_to_tensor(frames[0], device))
            rendered, truth = [], frames[stride::stride]
            for frame in truth:
                image = model.render(state, model.estimate_motion(frame_to_tensor(frame, device)))
                rendered.append(tensor_to_frame(image, frame.shape[1], frame.shape[0]))
        scores["lpips"] += lpips_distance(np.stack(rendered), truth).tolist()
        for size in PROXY_SIZES:
            scores[f"psnr{size}"] += [luma_psnr(r, t, size) for r, t in zip(rendered, truth)]
        print(f"{clip.id}: {len(truth)} frames", file=sys.stderr, flush=True)
    return {k: np.asarray(v) for k, v in scores.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", type=Path, required=True)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--stride", type=int, default=5)
    p.add_argument("--max-clips", type=int)
    args = p.parse_args(argv)
    scores = measure(args.cache, load_model(args.model), args.stride, args.max_clips)
    lpips = scores["lpips"]
    print(f"{len(lpips)} frames; LPIPS mean {lpips.mean():.3f}")
    print("proxy     spearman(-LPIPS)   dB at LPIPS≈0.20   dB at LPIPS≈0.25")
    for size in PROXY_SIZES:
        proxy = scores[f"psnr{size}"]
        at = [np.median(proxy[np.abs(lpips - t) < 0.02]) if (np.abs(lpips - t) < 0.02).any() else float("nan")
              for t in (0.20, 0.25)]
        print(f"psnr{size:<5d} {spearman(proxy, -lpips):16.3f} {at[0]:18.1f} {at[1]:18.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
