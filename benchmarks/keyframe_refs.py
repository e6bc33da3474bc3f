"""What reference keyframes and predicted keyframes save: keyframe count and bytes per clip, with quality.

Every clip is encoded at each keyframe QP and one refresh threshold with each setting (refs 1 or 4,
keyframes intra or predicted) and decoded; a row gives the keyframes (IDR and predicted), slot switches,
keyframe and stream bytes and rd_curve's LPIPS, PSNR and temporal error on every --stride-th frame. With
two or more QPs the report also gives each setting's keyframe bytes against refs 1 at equal LPIPS
(Bjøntegaard delta over the QPs). --frames 0 codes whole clips (the long-clip check). Rows already in
keyframes.csv are kept (resumable). Usage:
    .venv/bin/python benchmarks/keyframe_refs.py --out results/X [--data DIR] [--clips A B] [--qp 26,30,34]
        [--refresh 16] [--frames 250] [--settings refs1,refs4,refs1-pred,refs4-pred,refs4-pred-refresh,refs4-pred-any]
        [--idr-period 250] [--reuse-margin DB]
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from bitstream import KeyframePacket
from codec import video
from codec.model_loading import load_model_spec
from codec.coding_defaults import DEFAULT_IDR_PERIOD, DEFAULT_KEYFRAME_QP, DEFAULT_REFRESH_DB, DEFAULT_REUSE_MARGIN_DB
from codec.encoder import EncoderConfig, encode_clip
from codec.errors import InputError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bd_rate import CurveError, bd_rate  # noqa: E402
from protocol import DEFAULT_FRAMES, portable_args, portable_label  # noqa: E402
from results_folder import run_stamp  # noqa: E402
from rd_curve import (DEFAULT_DATA, DEFAULT_METRIC_STRIDE, Metrics, device_description,  # noqa: E402
                      find_clips)
from rdcodecs import BenchmarkError  # noqa: E402
from rdcodecs.fvc import decode_stream  # noqa: E402

SETTINGS = {"refs1": {"refs": 1, "predict_keyframes": False}, "refs4": {"refs": 4, "predict_keyframes": False},
            "refs1-pred": {"refs": 1, "predict_keyframes": True}, "refs4-pred": {"refs": 4, "predict_keyframes": True},
            # refs 4 as bitstream 2.0's first encoder chose slots: another slot only on a refresh
            "refs4-pred-refresh": {"refs": 4, "predict_keyframes": True, "switch_margin": None},
            # refs 4 reusing any older keyframe that clears the threshold (--reuse-margin any, the default before)
            "refs4-pred-any": {"refs": 4, "predict_keyframes": True, "reuse_margin": None}}
COLUMNS = ["clip", "setting", "qp", "frames", "keyframes", "idr", "predicted", "switches", "keyframe_bytes", "bytes",
           "bpp", "lpips", "psnr", "temporal", "seconds"]


def code_clip(frames: np.ndarray, model, ident: bytes, config: EncoderConfig, metrics: Metrics) -> dict:
    """One setting's keyframe counts, bytes and decoded quality on `frames`."""
    start = time.perf_counter()
    clip = encode_clip(frames, model, config, ident)
    data = clip.to_bytes()
    decoded = decode_stream(model, data, frames, "fvc")
    keyframes = [p for p in clip.packets if isinstance(p, KeyframePacket)]
    scores = metrics(frames, decoded, None)
    n, height, width, _ = frames.shape
    return {"frames": n, "keyframes": len(keyframes), "idr": sum(p.intra for p in keyframes),
            "predicted": sum(not p.intra for p in keyframes), "switches": clip.stats.slot_switches,
            "keyframe_bytes": clip.stats.keyframe_bytes, "bytes": len(data),
            "bpp": round(len(data) * 8 / (n * height * width), 6), "lpips": round(scores["lpips"], 5),
            "psnr": round(scores["psnr"], 3), "temporal": round(scores["temporal"], 3),
            "seconds": round(time.perf_counter() - start, 1)}


def _baseline(setting: str) -> str:
    """The refs-1 setting a setting is compared with: the one with the same kind of keyframes."""
    return "refs1-pred" if "-pred" in setting else "refs1"


def report(rows: list[dict]) -> str:
    """Per clip and QP: each setting's keyframes, keyframe bytes and LPIPS against refs 1's; then at equal LPIPS."""
    lines = ["| clip | setting | QP | keyframes (IDR + predicted) | switches | keyframe bytes | vs refs 1 | LPIPS "
             "| vs refs 1 |", "|---|---|---|---|---|---|---|---|---|"]
    by_key = {(r["clip"], r["setting"], r.get("qp")): r for r in rows}
    for r in rows:
        b = by_key.get((r["clip"], _baseline(r["setting"]), r.get("qp")))
        saving = f"{int(r['keyframe_bytes']) / int(b['keyframe_bytes']) - 1:+.1%}" if b and b is not r else ""
        dl = f"{float(r['lpips']) - float(b['lpips']):+.4f}" if b and b is not r else ""
        lines.append(f"| {r['clip']} | {r['setting']} | {r.get('qp') or ''} | {r['keyframes']} ({r['idr']} + "
                     f"{r['predicted']}) | {r['switches']} | {int(r['keyframe_bytes']):,} | {saving} | "
                     f"{float(r['lpips']):.4f} | {dl} |")
    equal = _equal_lpips(rows)
    if equal:
        lines += ["", "Keyframe bytes against refs 1 at equal LPIPS (Bjøntegaard delta over the keyframe QPs; "
                  "n/a where the curves share no LPIPS range):", "", "| clip | setting | keyframe bytes |",
                  "|---|---|---|", *equal]
    return "\n".join(lines)


def _equal_lpips(rows: list[dict]) -> list[str]:
    """Table rows: each non-baseline setting's keyframe-byte delta at equal LPIPS, per clip."""
    curves: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for r in rows:
        curves.setdefault((r["clip"], r["setting"]), []).append((float(r["keyframe_bytes"]), float(r["lpips"])))
    out = []
    for (clip, setting), points in curves.items():
        anchor = curves.get((clip, _baseline(setting)))
        if setting == _baseline(setting) or not anchor or min(len(points), len(anchor)) < 2:
            continue
        try:
            delta = bd_rate(*zip(*anchor), *zip(*points), higher_is_better=False)
        except CurveError:
            delta = math.nan
        out.append(f"| {clip} | {setting} | {'n/a' if math.isnan(delta) else f'{delta:+.1f} %'} |")
    return out


def _qps(text: str) -> list[int]:
    try:
        return [int(q) for q in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of QPs") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help=f"folder of clips (default {DEFAULT_DATA}; evaluation data is only evaluated, never tuned on)")
    p.add_argument("--clips", nargs="+", help="N (the first N clips by name) or clip names (stems); default all")
    p.add_argument("--qp", type=_qps, default=[DEFAULT_KEYFRAME_QP],
                   help=f"keyframe QP(s), comma-separated (default {DEFAULT_KEYFRAME_QP}, the encoder's)")
    p.add_argument("--refresh", type=float, default=DEFAULT_REFRESH_DB,
                   help=f"refresh threshold in dB (default {DEFAULT_REFRESH_DB:g}, the encoder's)")
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                   help=f"frames per clip, 0 = all (default {DEFAULT_FRAMES})")
    p.add_argument("--stride", type=int, default=DEFAULT_METRIC_STRIDE, help="score every N-th frame")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--settings", default=",".join(SETTINGS), help=f"comma-separated, of {', '.join(SETTINGS)}")
    p.add_argument("--idr-period", type=int, default=DEFAULT_IDR_PERIOD,
                   help=f"frames from one IDR keyframe to the next (default {DEFAULT_IDR_PERIOD}, the encoder's)")
    p.add_argument("--reuse-margin", type=float, default=DEFAULT_REUSE_MARGIN_DB,
                   help="with refs 4: reuse a slot only within this many dB of a new keyframe's rendering (default "
                        f"{DEFAULT_REUSE_MARGIN_DB:g}, the encoder's; the -any setting reuses any that clears the "
                        "threshold)")
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
    done = {(r["clip"], r["setting"], r.get("qp")) for r in rows}
    info = {**run_stamp(), "weights": portable_label(loaded.label), "model_id": ident.hex(),
            "device": device_description("cpu"), "args": portable_args(vars(args))}
    (args.out / "run.json").write_text(json.dumps(info, indent=2) + "\n")
    for clip in clips:
        todo = [(s, qp) for qp in args.qp for s in settings if (clip.stem, s, str(qp)) not in done]
        if not todo:
            continue
        frames = video.read_frames(clip, size=args.size, fps=25)
        frames = np.stack(list(itertools.islice(frames, args.frames) if args.frames else frames))
        for name, qp in todo:
            config = EncoderConfig(width=args.size, height=args.size, fps=25, keyframe_qp=qp,
                                   refresh_threshold=args.refresh, idr_period=args.idr_period,
                                   **{"reuse_margin": args.reuse_margin, **SETTINGS[name]})
            coded = code_clip(frames, model, ident, config, metrics)
            rows.append({"clip": clip.stem, "setting": name, "qp": str(qp), **coded})
            with open(table, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=COLUMNS)
                writer.writeheader()
                writer.writerows(rows)
            print(" ".join(f"{k} {v}" for k, v in rows[-1].items()), flush=True)
    print(report(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
