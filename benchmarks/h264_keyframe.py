"""Size and quality of fvc's H.264 keyframes (codec.h264) against QP, on first frames of real clips.

Prints, per QP, the access-unit size, PSNR, SSIM, LPIPS-alex and encode/decode time (median of
--repeats), averaged over the clips, and the machine it ran on. Usage:
    .venv/bin/python benchmarks/h264_keyframe.py [--data ../shared/data/bench512] [--clips 1] [--size 512]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from rd_curve import device_description  # noqa: E402

from codec import metrics  # noqa: E402
from codec.h264 import decode_intra, encode_intra  # noqa: E402
from codec.video import read_frames  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bench512"
DEFAULT_QPS = (10, 15, 20, 25, 30, 35, 40, 45)


def median_ms(function, repeats: int):
    """(last result, median wall time in ms) of `repeats` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append((time.perf_counter() - start) * 1e3)
    return result, float(np.median(times))


def measure(frame: np.ndarray, qp: int, repeats: int) -> dict[str, float]:
    data, encode_ms = median_ms(lambda: encode_intra(frame, qp), repeats)
    decoded, decode_ms = median_ms(lambda: decode_intra(data), repeats)
    return {"bytes": len(data), "psnr": float(metrics.psnr(frame, decoded)[0]),
            "ssim": float(metrics.ssim(frame, decoded)[0]), "lpips": float(metrics.lpips_distance(frame, decoded)[0]),
            "encode_ms": encode_ms, "decode_ms": decode_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of clips")
    parser.add_argument("--clips", type=int, default=1, help="use the first N clips (sorted by name)")
    parser.add_argument("--size", type=int, default=512, help="square frame side after centre crop")
    parser.add_argument("--qps", type=int, nargs="+", default=list(DEFAULT_QPS))
    parser.add_argument("--repeats", type=int, default=5, help="timing repeats per measurement")
    args = parser.parse_args()

    clips = sorted(p for p in args.data.iterdir() if p.suffix.lower() in {".mp4", ".mov", ".mkv", ".avi"})[: args.clips]
    if not clips:
        parser.error(f"no clips in {args.data}")
    frames = [next(read_frames(clip, size=args.size)) for clip in clips]
    print(f"device: {device_description('cpu')}")
    print(f"first frame of {len(clips)} clip(s) from {args.data} at {args.size}²: {', '.join(c.name for c in clips)}")
    print("| qp | bytes | bits/pixel | PSNR dB | SSIM | LPIPS | encode ms | decode ms |")
    print("|---|---|---|---|---|---|---|---|")
    for qp in args.qps:
        rows = [measure(frame, qp, args.repeats) for frame in frames]
        mean = {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}
        print(f"| {qp} | {mean['bytes']:.0f} | {8 * mean['bytes'] / args.size**2:.3f} | {mean['psnr']:.2f} | "
              f"{mean['ssim']:.4f} | {mean['lpips']:.4f} | {mean['encode_ms']:.1f} | {mean['decode_ms']:.1f} |")


if __name__ == "__main__":
    main()
