"""How much LPIPS the encoder can win by choosing motion symbols alone (the ceiling of the slow preset's search).

Each clip's first frame is the keyframe (H.264 at --qp, as decoded); every --stride-th frame after it is
coded on its own from H's estimate ("fast"), from the slow preset's search, and from longer searches,
one of them on LPIPS itself: 30 Adam steps with no rate term, then quantised and kept only if the
decoder's rendering of the quantised symbols is better. Networks and bitstream are fixed, so the best
row is about as low as any symbol choice of these weights goes. Frames are searched independently (no
warm start), so "slow" here is close to, not equal to, the preset in a stream. Usage:
    .venv/bin/python benchmarks/search_ceiling.py [--data DIR] [--clips A B] [--stride 25] [--out results/X]
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from bitstream import KeyframePacket, default_header, quantize
from codec import video
from codec.model_loading import load_model_spec
from codec.coding_defaults import PRESETS, SearchConfig
from codec.decoder import Decoder, frame_to_tensor
from codec.errors import InputError
from codec.h264 import encode_intra
from codec.metrics import lpips_distance
from codec.motion_search import MotionSearch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import DEFAULT_FRAMES, portable_args, portable_label  # noqa: E402
from rd_curve import DEFAULT_DATA, device_description, find_clips  # noqa: E402
from rdcodecs import BenchmarkError  # noqa: E402

LONG = SearchConfig(steps=30, lr=0.5, rate_weight=0.0, warm_start=False, anchor_weight=0.0)
SEARCHES = {
    "slow": replace(PRESETS["slow"].search, warm_start=False),
    "l1-30": LONG,
    "lpips-30": replace(LONG, loss="lpips"),
}


def clip_scores(path: Path, model, ident: bytes, qp: int, frames: int, stride: int, size: int) -> dict[str, float]:
    """Mean LPIPS of the scored frames of one clip for fast and for each search."""
    clip = list(itertools.islice(video.read_frames(path, size=size), frames))
    header = default_header(model.kind, size, size, Fraction(25), ident, num_keypoints=model.num_keypoints)
    decoder = Decoder(model, header)
    with torch.inference_mode():  # as in the encoder: the keyframe's analysis carries no autograd graph
        decoder.push(KeyframePacket(0, encode_intra(clip[0], qp), 0))
        state = decoder.state
    searches = {name: MotionSearch(model, header, cfg) for name, cfg in SEARCHES.items()}
    for search in searches.values():
        search.reset(state)

    def shown(ints):
        with torch.inference_mode():
            return decoder.render(ints)

    truth = clip[stride::stride]
    out: dict[str, list[np.ndarray]] = {"fast": [], **{name: [] for name in searches}}
    for frame in truth:
        image = frame_to_tensor(frame, torch.device("cpu"))
        with torch.inference_mode():
            raw = model.estimate_motion(image)
        estimate = {k: v.clone() for k, v in raw.items()}  # out of inference mode, for autograd
        ints = quantize({k: v.numpy() for k, v in estimate.items()}, header)
        out["fast"].append(shown(ints))
        # With no previous frame in the stream the rate term counts offsets from zero.
        zero = {k: np.zeros_like(v) for k, v in ints.items()}
        for name, search in searches.items():
            result = search.refine(estimate, image, zero, lambda i: frame_to_tensor(shown(i), image.device))
            out[name].append(shown(result.ints))
    return {name: float(lpips_distance(np.stack(frames_), np.stack(truth)).mean()) for name, frames_ in out.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help=f"folder of clips (default {DEFAULT_DATA}; evaluation data is only evaluated, never tuned on)")
    p.add_argument("--clips", nargs="+", help="N (the first N clips by name) or clip names (stems); default all")
    p.add_argument("--qp", type=int, default=24, help="keyframe QP (default 24, the RD sweep's refresh-off point)")
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    p.add_argument("--stride", type=int, default=25)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--out", type=Path, help="folder for ceiling.csv and ceiling.json")
    args = p.parse_args(argv)
    try:
        clips = find_clips(args.data, args.clips)
        loaded = load_model_spec(None, "cpu")  # the shipped fv2v weights
    except (BenchmarkError, InputError) as exc:
        print(f"search_ceiling: error: {exc}", file=sys.stderr)
        return 1
    model, ident = loaded.model, loaded.model_id
    rows = []
    start = time.time()
    for clip in clips:
        scores = clip_scores(clip, model, ident, args.qp, args.frames, args.stride, args.size)
        rows.append({"clip": clip.stem, **{k: round(v, 4) for k, v in scores.items()}})
        print(" ".join(f"{k} {v}" for k, v in rows[-1].items()), flush=True)
    methods = ["fast", *SEARCHES]
    means = {m: float(np.mean([r[m] for r in rows])) for m in methods}
    print("mean LPIPS  " + "  ".join(f"{m} {means[m]:.4f} ({means[m] / means['fast'] - 1:+.1%})" for m in methods))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        with open(args.out / "ceiling.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["clip", *methods])
            writer.writeheader()
            writer.writerows(rows)
        info = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "weights": portable_label(loaded.label), "model_id": ident.hex(), "device": device_description("cpu"),
                "args": portable_args(vars(args)),
                "searches": {k: asdict(v) for k, v in SEARCHES.items()}, "mean_lpips": means,
                "seconds": round(time.time() - start)}
        (args.out / "ceiling.json").write_text(json.dumps(info, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
