"""What reference keyframes and predicted keyframes save: keyframe count and bytes per clip, with quality.

Every clip is encoded at one keyframe QP and refresh threshold with each setting (refs 1 or 4, keyframes
intra or predicted) and decoded; a row gives the keyframes (IDR and predicted), slot switches, keyframe
and stream bytes and rd_curve's LPIPS, PSNR and temporal error on every --stride-th frame. --frames 0
codes whole clips (the long-clip check). Rows already in keyframes.csv are kept (resumable). Usage:
    .venv/bin/python benchmarks/keyframe_refs.py --out results/X [--data DIR] [--clips A B] [--qp 30]
        [--refresh 16] [--frames 250] [--settings refs1,refs4,refs1-pred,refs4-pred,refs4-pred-refresh]
        [--idr-period 250] [--reuse-margin DB]
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from bitstream import KeyframePacket, StreamReader
from codec import video
from codec.cli import load_model_spec
from codec.coding_defaults import DEFAULT_REFRESH_DB
from codec.decoder import Decoder
from codec.encoder import EncoderConfig, encode_clip
from codec.errors import InputError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rd_curve import (DEFAULT_DATA, DEFAULT_FRAMES, DEFAULT_METRIC_STRIDE, Metrics, device_description,  # noqa: E402
                      find_clips)
from rdcodecs import BenchmarkError  # noqa: E402

SETTINGS = {"refs1": {"refs": 1, "predict_keyframes": False}, "refs4": {"refs": 4, "predict_keyframes": False},
            "refs1-pred": {"refs": 1, "predict_keyframes": True}, "refs4-pred": {"refs": 4, "predict_keyframes": True},
            # refs 4 as bitstream 2.0's first encoder chose slots: another slot only on a refresh
            "refs4-pred-refresh": {"refs": 4, "predict_keyframes": True, "switch_margin": None}}
COLUMNS = ["clip", "setting", "frames", "keyframes", "idr", "predicted", "switches", "keyframe_bytes", "bytes",
           "bpp", "lpips", "psnr", "temporal", "seconds"]


def code_clip(frames: np.ndarray, model, ident: bytes, config: EncoderConfig, metrics: Metrics) -> dict:
    """One setting's keyframe counts, bytes and decoded quality on `frames`."""
    start = time.perf_counter()
    clip = encode_clip(frames, model, config, ident)
    data = clip.to_bytes()
    reader = StreamReader(data)
    decoder = Decoder(model, reader.header)
    decoded = np.stack([picture for packet in reader for picture in decoder.push(packet)])
    keyframes = [p for p in clip.packets if isinstance(p, KeyframePacket)]
    scores = metrics(frames, decoded, None)
    n, height, width, _ = frames.shape
    return {"frames": n, "keyframes": len(keyframes), "idr": sum(p.intra for p in keyframes),
            "predicted": sum(not p.intra for p in keyframes), "switches": clip.stats.slot_switches,
            "keyframe_bytes": clip.stats.keyframe_bytes, "bytes": len(data),
            "bpp": round(len(data) * 8 / (n * height * width), 6), "lpips": round(scores["lpips"], 5),
            "psnr": round(scores["psnr"], 3), "temporal": round(scores["temporal"], 3),
            "seconds": round(time.perf_counter() - start, 1)}


def report(rows: list[dict]) -> str:
    """Per clip: each setting's keyframes, keyframe bytes and LPIPS against refs1's."""
    lines = ["| clip | setting | keyframes (IDR + predicted) | switches | keyframe bytes | vs refs1 | LPIPS "
             "| vs refs1 |", "|---|---|---|---|---|---|---|---|"]
    base = {r["clip"]: r for r in rows if r["setting"] == "refs1"}
    for r in rows:
        b = base.get(r["clip"])
        saving = f"{int(r['keyframe_bytes']) / int(b['keyframe_bytes']) - 1:+.1%}" if b else ""
        dl = f"{float(r['lpips']) - float(b['lpips']):+.4f}" if b else ""
        lines.append(f"| {r['clip']} | {r['setting']} | {r['keyframes']} ({r['idr']} + {r['predicted']}) | "
                     f"{r['switches']} | {int(r['keyframe_bytes']):,} | {saving} | {float(r['lpips']):.4f} | {dl} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help=f"folder of clips (default {DEFAULT_DATA}; evaluation data is only evaluated, never tuned on)")
    p.add_argument("--clips", nargs="+", help="N (the first N clips by name) or clip names (stems); default all")
    p.add_argument("--qp", type=int, default=EncoderConfig.keyframe_qp,
                   help=f"keyframe QP (default {EncoderConfig.keyframe_qp}, the encoder's)")
    p.add_argument("--refresh", type=float, default=DEFAULT_REFRESH_DB,
                   help=f"refresh threshold in dB (default {DEFAULT_REFRESH_DB:g}, the encoder's)")
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                   help=f"frames per clip, 0 = all (default {DEFAULT_FRAMES})")
    p.add_argument("--stride", type=int, default=DEFAULT_METRIC_STRIDE, help="score every N-th frame")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of {', '.join(SETTINGS)}")
    p.add_argument("--idr-period", type=int, default=250, help="frames from one IDR keyframe to the next (default 250)")
    p.add_argument("--reuse-margin", type=float, help="with refs 4: reuse a slot only within this many dB of a new "
                   "keyframe's rendering (default: whenever it clears the refresh threshold)")
    p.add_argument("--out", type=Path, required=True, help="folder for keyframes.csv, run.json and the report")
    args = p.parse_args(argv)
    settings = args.settings.split(",")
    unknown = [s for s in settings if s not in SETTINGS]
    try:
        if unknown:
            raise BenchmarkError(f"unknown setting(s) {', '.join(unknown)}; choose from {', '.join(SETTINGS)}")
        clips = find_clips(args.data, args.clips)
        loaded = load_model_spec(None, "cpu")  # the shipped fv2v weights
    except (BenchmarkError, InputError) as exc:
        print(f"keyframe_refs: error: {exc}", file=sys.stderr)
        return 1
    model, ident = loaded.model, loaded.model_id
    metrics = Metrics("cpu", args.stride)
    args.out.mkdir(parents=True, exist_ok=True)
    table = args.out / "keyframes.csv"
    rows = []
    if table.exists():
        with open(table, newline="") as f:
            rows = list(csv.DictReader(f))
    done = {(r["clip"], r["setting"]) for r in rows}
    info = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "weights": loaded.label,
            "model_id": ident.hex(), "device": device_description("cpu"),
            "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                     cwd=Path(__file__).parent).stdout.strip(),
            "args": {k: str(v) for k, v in vars(args).items()}}
    (args.out / "run.json").write_text(json.dumps(info, indent=2) + "\n")
    for clip in clips:
        todo = [s for s in settings if (clip.stem, s) not in done]
        if not todo:
            continue
        frames = video.read_frames(clip, size=args.size, fps=25)
        frames = np.stack(list(itertools.islice(frames, args.frames) if args.frames else frames))
        for name in todo:
            config = EncoderConfig(width=args.size, height=args.size, fps=25, keyframe_qp=args.qp,
                                   refresh_threshold=args.refresh, idr_period=args.idr_period,
                                   reuse_margin=args.reuse_margin, **SETTINGS[name])
            rows.append({"clip": clip.stem, "setting": name, **code_clip(frames, model, ident, config, metrics)})
            with open(table, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=COLUMNS)
                writer.writeheader()
                writer.writerows(rows)
            print(" ".join(f"{k} {v}" for k, v in rows[-1].items()), flush=True)
    print(report(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
