"""Compare exported weights on a prepared cache's held-out val split (never bench512): reconstruction quality.

Each model reconstructs the same fixed driving frames from a source frame of the same clip (the trainer's
pairs, --pairs of them from fixed seeds) and is scored with pixel L1, LPIPS-alex at the model's output size
and, where the cache has landmark labels, the driving keypoints' distance to them in cache pixels. The
trainer's own val.csv uses 8 pairs; this is the larger check for choosing an export to measure on bench512.
Usage:
    .venv/bin/python benchmarks/heldout_val.py --cache CACHE WEIGHTS.pt [WEIGHTS.pt ...] [--pairs 128]
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from codec.data.cache import CacheError
from codec.data.sampler import FrameStore, PairDataset
from codec.errors import InputError
from codec.metrics import lpips_distance
from codec.motion_model import load_model
from codec.train.losses import landmark_loss

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_folder import run_stamp  # noqa: E402

BATCH = 8


def _uint8(images: torch.Tensor) -> np.ndarray:
    return (images.clamp(0, 1).permute(0, 2, 3, 1) * 255).round().byte().numpy()


@torch.no_grad()
def score(model, batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Mean L1, LPIPS and landmark distance (NaN without labels) of `model` over the batches."""
    l1, lpips, landmark = [], [], []
    for batch in batches:
        out = model.training_forward(batch["source"], batch["driving"])
        prediction = out["prediction"].float().clamp(0, 1)
        target = batch["driving"]
        if target.shape[-1] != prediction.shape[-1]:
            target = F.interpolate(target, size=prediction.shape[-2:], mode="area")
        l1.append(float((prediction - target).abs().mean()))
        lpips.extend(lpips_distance(_uint8(prediction), _uint8(target)).tolist())
        labels = batch["driving_landmarks"]
        if "driving" in out and not torch.isnan(labels).all():
            px = (batch["driving"].shape[-1] - 1) / 2
            landmark.append(float(landmark_loss(out["driving"]["keypoints"], labels)) * px)
    return {"l1": float(np.mean(l1)), "lpips": float(np.mean(lpips)),
            "landmark_px": float(np.mean(landmark)) if landmark else math.nan}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights", nargs="+", type=Path, help="exported .pt files (fvc train writes them)")
    p.add_argument("--cache", type=Path, required=True, help="folder written by `fvc prepare`")
    p.add_argument("--split", default="val", help="cache split to score on (default %(default)s)")
    p.add_argument("--pairs", type=int, default=128, help=f"pairs, in batches of {BATCH} (default %(default)s)")
    args = p.parse_args(argv)
    try:
        missing = [str(w) for w in args.weights if not w.is_file()]
        if missing:
            raise InputError(f"no weights at {', '.join(missing)}")
        data = PairDataset(FrameStore.from_cache(args.cache, args.split))
    except (CacheError, InputError) as exc:
        print(f"heldout_val: error: {exc}", file=sys.stderr)
        return 1
    batches = [data.batch(BATCH, torch.Generator().manual_seed(seed)) for seed in range(-(-args.pairs // BATCH))]
    stamp = run_stamp()
    print(f"{stamp['date']}, commit {stamp['commit']}: {args.split} split of "
          f"{args.cache}, {len(data.store.clips)} clips, {len(batches) * BATCH} pairs")
    print("| weights | L1 | LPIPS | landmark px |\n|---|---|---|---|")
    for path in args.weights:
        result = score(load_model(path, torch.device("cpu")).eval(), batches)
        print(f"| {path.name} | {result['l1']:.4f} | {result['lpips']:.4f} | {result['landmark_px']:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
