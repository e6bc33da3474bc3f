"""Would a residual layer on rendered frames pay (issue 27, item 2)? Its upper bound against coding the frames.

For each clip and QP: `coded`, every frame coded as one H.264 sequence of fvc's coded pictures (KeyframeEncoder
with prediction, constant QP: what `--quality` sends at its top end); `residual`, one keyframe (--keyframe-qp)
and every other frame rendered from decoded motion, then the residual source - rendered (+128, clipped) coded as
such a sequence at the QP and added back; its rate counts the .fvc stream and the residual stream. Also the
rendered frames alone (`rendered`). The residual is coded as a lossy picture of its own, which is what a layer
built on fvc's H.264 path could do; a decoder cannot predict it from the rendered frame. Usage:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/residual_layer.py --data DIR --clips NAMES --frames 100 \\
        --out benchmarks/results/residual-layer-train
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np

from codec import video
from codec.encoder import EncoderConfig, encode_clip
from codec.errors import InputError
from codec.h264 import KeyframeDecoder, KeyframeEncoder
from codec.metrics import lpips_distance
from codec.model_loading import load_model_spec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import portable_args, portable_label  # noqa: E402
from rd_curve import add_clip_options, device_description, find_clips  # noqa: E402
from rdcodecs import BenchmarkError  # noqa: E402
from rdcodecs.fvc import decode_stream  # noqa: E402
from results_folder import Table, code_version, command_line, provenance  # noqa: E402

FPS = 25
QPS = (30, 34, 38, 42, 46)
KEY = ["clip", "layer", "qp"]
COLUMNS = ["date", "commit", "weights", *KEY, "kbps", "lpips", "psnr"]


def coded_sequence(pictures: np.ndarray, qp: int) -> tuple[int, np.ndarray]:
    """Bytes and decoded pictures of `pictures` coded as one IDR + P sequence at `qp`, as fvc codes keyframes."""
    encoder, decoder = KeyframeEncoder(qp, predict=True), KeyframeDecoder()
    size, shown = 0, []
    for i, picture in enumerate(pictures):
        unit = encoder.encode(np.ascontiguousarray(picture), intra=i == 0)
        size += len(unit)
        shown.append(decoder.decode(unit))
    return size, np.stack(shown)


def scores(source: np.ndarray, shown: np.ndarray, stride: int, size: int) -> dict:
    """kbps, LPIPS on every `stride`-th frame and PSNR over every pixel."""
    picked = np.arange(0, len(source), stride)
    mse = float(np.mean((source.astype(np.float64) - shown) ** 2))
    return {"kbps": round(size * 8 * FPS / len(source) / 1000, 2),
            "lpips": round(float(np.mean(lpips_distance(source[picked], shown[picked], "cpu"))), 5),
            "psnr": round(10 * np.log10(255 ** 2 / max(mse, 1e-12)), 3)}


def measure(source: np.ndarray, model, model_id: bytes, keyframe_qp: int, stride: int) -> list[dict]:
    """Every row of one clip: coded and residual at each QP, and the rendered frames alone."""
    rows = []
    for qp in QPS:
        size, shown = coded_sequence(source, qp)
        rows.append({"layer": "coded", "qp": qp, **scores(source, shown, stride, size)})
    height, width = source.shape[1:3]
    config = EncoderConfig(width=width, height=height, fps=FPS, keyframe_qp=keyframe_qp, refresh_threshold=0.0,
                           frame_count=len(source))
    stream = encode_clip(iter(source), model, config, model_id).to_bytes()
    rendered = decode_stream(model, stream, source, "fvc")
    rows.append({"layer": "rendered", "qp": keyframe_qp, **scores(source, rendered, stride, len(stream))})
    residual = np.clip(source.astype(np.int16) - rendered + 128, 0, 255).astype(np.uint8)
    for qp in QPS:
        size, decoded = coded_sequence(residual, qp)
        shown = np.clip(rendered.astype(np.int16) + decoded - 128, 0, 255).astype(np.uint8)
        rows.append({"layer": "residual", "qp": qp, **scores(source, shown, stride, size + len(stream))})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_clip_options(p)
    p.add_argument("--keyframe-qp", type=int, default=32, help="QP of the residual layer's keyframe (default 32)")
    p.add_argument("--stride", type=int, default=4, help="LPIPS on every N-th frame (default 4)")
    p.add_argument("--model", help="weights or untrained-CONFIG (default the shipped fv2v weights)")
    p.add_argument("--out", type=Path, required=True, help="folder for residual.csv and run.json")
    args = p.parse_args(argv)
    try:
        if args.frames < 2 or args.stride < 1:
            raise BenchmarkError("--frames must be >= 2 and --stride >= 1")
        clips = find_clips(args.data, args.clips)
        loaded = load_model_spec(args.model, "cpu")
        args.out.mkdir(parents=True, exist_ok=True)
        table = Table(args.out / "residual.csv", COLUMNS)
        done = {r["clip"] for r in table.read()}
    except (BenchmarkError, InputError) as exc:
        print(f"residual_layer: error: {exc}", file=sys.stderr)
        return 1
    commit, weights = code_version(), portable_label(loaded.label)
    info = {**provenance(commit), "weights": weights, "model_id": loaded.model_id.hex(), "qps": list(QPS),
            "device": device_description("cpu"), "args": portable_args(vars(args)), "command": command_line(argv)}
    (args.out / "run.json").write_text(json.dumps(info, indent=2) + "\n")
    for clip in clips:
        if clip.stem in done:
            continue
        source = np.stack(list(itertools.islice(video.read_frames(clip, size=args.size, fps=FPS), args.frames)))
        for row in measure(source, loaded.model, loaded.model_id, args.keyframe_qp, args.stride):
            table.append({**provenance(commit), "weights": weights, "clip": clip.stem, **row})
            print(clip.stem, " ".join(f"{k} {v}" for k, v in row.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
