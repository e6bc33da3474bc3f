"""`fvc encode` → `fvc info` → `fvc decode` on every clip of a folder, as a user runs them, with checks.

Each command runs as its own process (`python -m codec`, the `fvc` entry point), so the benchmark
imports nothing from the CLI and sees exactly what a user sees. Per clip it checks that the decoded
video has the input's frame count and fps and that `fvc info`'s bpp is (file bytes × 8)/(W·H·frames),
and reports bpp, kbps, keyframes (and why), motion bytes per frame, PSNR/SSIM/LPIPS of the decoded mp4
against the frames the encoder read, and encode/decode fps (wall time of the whole command: process
start, imports and model loading included). Writes `roundtrip.csv` and `README.md`.

    python benchmarks/roundtrip.py --model untrained-small --run-name roundtrip-untrained
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import portable_argv  # noqa: E402
from rd_curve import DEFAULT_DATA, RESULTS, Metrics, device_description, find_clips  # noqa: E402
from rdcodecs import BenchmarkError  # noqa: E402

from codec.video import probe, read_frames  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class RoundTripConfig:
    """Which clips, model and settings; `encode_args` go to `fvc encode` unchanged."""

    data: Path
    out: Path
    model: str
    size: int = 512
    frames: int | None = None
    metric_stride: int = 10
    clips: tuple[str, ...] = ()
    encode_args: tuple[str, ...] = ()


def run_fvc(argv: list[str]) -> tuple[float, str]:
    """Run one `fvc` command as a user does, in a process of its own; (wall seconds, stdout); BenchmarkError
    with the last line of its stderr if it fails."""
    # `python -m codec` is the `fvc` console script without needing it installed; this checkout's codec first.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "codec", *argv], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise BenchmarkError(f"fvc {' '.join(argv)} exited {done.returncode}: "
                             f"{done.stderr.strip().splitlines()[-1:]}")
    return seconds, done.stdout


def measured_frames(frames: Iterator[np.ndarray], limit: int | None, stride: int) -> tuple[int, np.ndarray]:
    """(frame count, every `stride`-th frame): whole 512² clips would hold 1.4 GB a copy for 1/stride of it."""
    kept, count = [], 0
    for count, frame in enumerate(itertools.islice(frames, limit), start=1):
        if (count - 1) % stride == 0:
            kept.append(frame)
    return count, np.stack(kept)


def measure_clip(clip: Path, config: RoundTripConfig, work: Path, metrics: Metrics) -> dict:
    """Encode, inspect and decode one clip; the row of roundtrip.csv (raises BenchmarkError on a failed check)."""
    stream, decoded_path = work / f"{clip.stem}.fvc", work / f"{clip.stem}.mp4"
    limit = ["--frames", str(config.frames)] if config.frames else []
    encode_s, _ = run_fvc(["encode", str(clip), str(stream), "--size", str(config.size), "--model", config.model,
                           "--quiet", "--force", *limit, *config.encode_args])
    info = json.loads(run_fvc(["info", str(stream), "--json"])[1])
    decode_s, _ = run_fvc(["decode", str(stream), str(decoded_path), "--model", config.model, "--quiet", "--force"])

    frames, source = measured_frames(read_frames(clip, size=config.size), config.frames, config.metric_stride)
    decoded_count, decoded = measured_frames(read_frames(decoded_path, size=config.size), None, config.metric_stride)
    nbytes, fps, decoded_fps = stream.stat().st_size, probe(clip).fps, probe(decoded_path).fps
    if not info["frames"] == decoded_count == frames:
        raise BenchmarkError(f"{clip.name}: frame counts differ: stream {info['frames']}, decoded "
                             f"{decoded_count}, input {frames}")
    if abs(float(decoded_fps) - float(fps)) > 1e-6:
        raise BenchmarkError(f"{clip.name}: decoded fps {decoded_fps} differs from the input's {fps}")
    expected_bpp = nbytes * 8 / (config.size * config.size * frames)
    if info["bytes"] != nbytes or abs(info["bits_per_pixel"] - expected_bpp) > 1e-12:
        raise BenchmarkError(f"{clip.name}: fvc info says {info['bytes']} B, {info['bits_per_pixel']} bpp; "
                             f"the file has {nbytes} B = {expected_bpp} bpp")
    # Only every stride-th frame is kept, so the frame-to-frame (temporal) error and AKD are rd_curve's to measure.
    quality = {k: v for k, v in metrics(source, decoded, None).items() if k in ("lpips", "psnr", "ssim")}
    return {"clip": clip.stem, "frames": frames, "fps": round(float(fps), 3), "bytes": nbytes,
            "bpp": info["bits_per_pixel"], "kbps": info["kbps"], "keyframes": info["keyframes"],
            "keyframe_bytes": info["bytes_by_type"]["keyframe"], "motion_packets": info["motion_packets"],
            "motion_bytes_per_frame": info["motion_bytes_per_packet"], **quality,
            "encode_fps": frames / encode_s, "decode_fps": frames / decode_s}


def write_readme(config: RoundTripConfig, table: pd.DataFrame, device: str, command: str) -> None:
    """README.md of the run: command, device, the per-clip table and its mean row."""
    rows = [*table.itertuples(index=False), ("**mean**", *table.drop(columns="clip").mean())]
    cells = [[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    markdown = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns),
                *("| " + " | ".join(row) + " |" for row in cells)]
    lines = [f"# fvc round trip: `{portable_argv([config.model])[0]}`", "", f"Command: `{command}`", "",
             f"Device: {device}. Metrics on frames 0, {config.metric_stride}, {2 * config.metric_stride}, … of the decoded mp4 "
             f"(`fvc decode` default CRF 18) against the {config.size}² frames the encoder read; "
             "fps = frames / wall time of the whole `fvc` command, each in a process of its own (start-up, imports "
             "and model loading included).", "",
             *markdown, ""]
    (config.out / "README.md").write_text("\n".join(lines))


def run(config: RoundTripConfig, command: str) -> pd.DataFrame:
    """Measure every clip; write roundtrip.csv and README.md under config.out."""
    clips = find_clips(config.data, list(config.clips) or None)
    config.out.mkdir(parents=True, exist_ok=True)
    metrics = Metrics("cpu", 1)  # measure_clip keeps only the frames to measure
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for clip in clips:
            row = measure_clip(clip, config, Path(work), metrics)
            rows.append(row)
            print(", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                  flush=True)
    table = pd.DataFrame(rows)
    device = device_description("cpu")
    table.assign(device=device).to_csv(config.out / "roundtrip.csv", index=False)
    write_readme(config, table, device, command)
    return table


def parse_args(argv: list[str] | None) -> tuple[RoundTripConfig, str]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                epilog="Arguments after -- go to `fvc encode` (e.g. -- --keyframe-qp 32).")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of clips (default: bench512)")
    p.add_argument("--run-name", default="roundtrip", help="results go to benchmarks/results/<run-name>")
    p.add_argument("--out", type=Path, help="results folder (overrides --run-name)")
    p.add_argument("--model", default="fv2v", help="fvc --model value (default the shipped fv2v weights)")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--frames", type=int, help="first N frames of each clip")
    p.add_argument("--metric-stride", type=int, default=10)
    p.add_argument("--clips", nargs="+", default=[], help="N (first N by name) or clip names")
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = p.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    out = args.out or RESULTS / args.run_name
    config = RoundTripConfig(args.data, out, args.model, args.size, args.frames, args.metric_stride,
                             tuple(args.clips), tuple(extra))
    return config, "python benchmarks/roundtrip.py " + " ".join(portable_argv(argv))


def main(argv: list[str] | None = None) -> int:
    config, command = parse_args(argv)
    try:
        table = run(config, command)
    except BenchmarkError as exc:
        print(f"roundtrip: error: {exc}", file=sys.stderr)
        return 1
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
