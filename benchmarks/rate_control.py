"""How close `--kbps` lands: each clip encoded at each target rate as `fvc encode --quality Q --kbps T` does it.

For every clip x target the search of codec.quality_rate runs from --start (the `--quality` a user gives), over full
closed-loop passes, and the row records the Q it chose, the rate written, its error against the target, whether it
lies within RATE_TOLERANCE, every pass (Q:kbps), the passes' seconds and the LPIPS of the frames the decoder shows.
Rows already in rate.csv are kept (resumable). Usage:
    .venv/bin/python benchmarks/rate_control.py --out results/X [--data DIR] [--clips N | NAMES] [--frames 250]
        [--size 512] [--targets 10,30,100,300,500] [--start 40] [--stride 10]
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from codec import video
from codec.coding_defaults import QUALITY_MAX, QUALITY_MIN
from codec.encoder import EncoderConfig
from codec.errors import InputError
from codec.metrics import lpips_distance
from codec.model_loading import load_model_spec
from codec.quality_rate import RATE_TOLERANCE, encode_quality_to_rate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import portable_args, portable_label  # noqa: E402
from rd_curve import add_clip_options, device_description, find_clips  # noqa: E402
from rdcodecs import BenchmarkError  # noqa: E402
from rdcodecs.fvc import decode_stream  # noqa: E402
from results_folder import Table, code_version, command_line, provenance  # noqa: E402

FPS = 25
TARGETS = (10.0, 30.0, 100.0, 300.0, 500.0)  # the span at 512²: one keyframe and motion to every frame coded
START = 40.0  # mid-range: the search reaches both ends from here in about as many passes
KEY = ["clip", "target_kbps"]
COLUMNS = ["date", "commit", "weights", *KEY, "start", "quality", "kbps", "error_pct", "within", "passes",
           "pass_kbps", "keyframes", "lpips", "seconds"]


def measure(source: np.ndarray, model, model_id: bytes, target: float, start: float, stride: int) -> dict:
    """One clip at one target: the row's measured columns."""
    height, width = source.shape[1:3]
    base = EncoderConfig(width=width, height=height, fps=FPS)
    began = time.perf_counter()
    clip, choice = encode_quality_to_rate(lambda: iter(source), model, base, model_id, target, start)
    seconds = time.perf_counter() - began
    shown = decode_stream(model, clip.to_bytes(), source, "fvc")
    picked = np.arange(0, len(source), stride)
    return {"start": start, "quality": choice.quality, "kbps": round(choice.kbps, 2),
            "error_pct": round(100 * (choice.kbps / target - 1), 2), "within": int(not choice.missed),
            "passes": len(choice.passes), "pass_kbps": " ".join(f"{q:g}:{r:.1f}" for q, r in choice.passes),
            "keyframes": clip.stats.keyframes,
            "lpips": round(float(np.mean(lpips_distance(source[picked], shown[picked], "cpu"))), 5),
            "seconds": round(seconds, 1)}


def summary(rows: list[dict]) -> str:
    """Per target: clips within tolerance, mean and worst |error|, mean passes, as a markdown table."""
    lines = [f"| target kbps | clips | within ±{RATE_TOLERANCE:.0%} | mean |error| % | worst error % | passes | Q |",
             "|---|---|---|---|---|---|---|"]
    groups: dict[float, list[dict]] = {}
    for r in rows:
        groups.setdefault(float(r["target_kbps"]), []).append(r)
    for target in sorted(groups):
        group = groups[target]
        errors = [float(r["error_pct"]) for r in group]
        worst = max(errors, key=abs)
        qs = [float(r["quality"]) for r in group]
        lines.append(f"| {target:g} | {len(group)} | {sum(int(r['within']) for r in group)} | "
                     f"{sum(map(abs, errors)) / len(errors):.1f} | {worst:+.1f} | "
                     f"{sum(int(r['passes']) for r in group) / len(group):.1f} | {min(qs):g}-{max(qs):g} |")
    return "\n".join(lines)


def _targets(text: str) -> list[float]:
    values = [float(v) for v in text.split(",")]
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise argparse.ArgumentTypeError("targets must be positive numbers, comma-separated")
    return values


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_clip_options(p)
    p.add_argument("--targets", type=_targets, default=list(TARGETS),
                   help=f"target rates in kbps, comma-separated (default {','.join(f'{t:g}' for t in TARGETS)})")
    p.add_argument("--start", type=float, default=START, help=f"the --quality the search starts from (default {START:g})")
    p.add_argument("--stride", type=int, default=10, help="LPIPS on every N-th frame (default 10, rd_curve's)")
    p.add_argument("--model", help="weights or untrained-CONFIG (default the shipped fv2v weights)")
    p.add_argument("--out", type=Path, required=True, help="folder for rate.csv and run.json")
    args = p.parse_args(argv)
    try:
        if args.frames < 2 or args.size < 16 or args.stride < 1 or not QUALITY_MIN <= args.start <= QUALITY_MAX:
            raise BenchmarkError(f"--frames must be >= 2, --size >= 16, --stride >= 1 and --start within "
                                 f"{QUALITY_MIN}..{QUALITY_MAX}")
        clips = find_clips(args.data, args.clips)
        loaded = load_model_spec(args.model, "cpu")
        args.out.mkdir(parents=True, exist_ok=True)
        table = Table(args.out / "rate.csv", COLUMNS)
        rows = table.read()
    except (BenchmarkError, InputError) as exc:
        print(f"rate_control: error: {exc}", file=sys.stderr)
        return 1
    commit, weights = code_version(), portable_label(loaded.label)
    done = {(r["clip"], float(r["target_kbps"])) for r in rows}
    info = {**provenance(commit), "weights": weights, "model_id": loaded.model_id.hex(),
            "device": device_description("cpu"), "args": portable_args(vars(args)), "command": command_line(argv)}
    (args.out / "run.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"rate_control: {len(clips)} clips on {info['device']}, code {commit}, weights {weights}", flush=True)
    for clip in clips:
        todo = [t for t in args.targets if (clip.stem, t) not in done]
        if not todo:
            continue
        source = np.stack(list(itertools.islice(video.read_frames(clip, size=args.size, fps=FPS), args.frames)))
        for target in todo:
            row = {**provenance(commit), "weights": weights, "clip": clip.stem, "target_kbps": target,
                   **measure(source, loaded.model, loaded.model_id, target, args.start, args.stride)}
            table.append(row)
            rows.append(row)
            print(" ".join(f"{k} {row[k]}" for k in COLUMNS[3:]), flush=True)
    print(summary(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
