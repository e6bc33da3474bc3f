"""fvc's H.264 keyframes against HEVC (libx265) and AV1 (SVT-AV1) intra pictures: bytes at equal LPIPS.

Each picture (the first frame of each clip, or with --frames-per-clip N, frames 0, S, 2S, ... at --stride S) is
coded alone as one intra picture by every codec over its quality scale, decoded back, and scored:
- `h264`: fvc's own keyframe path, codec.h264.encode_intra / decode_intra, exactly as fvc codes an IDR (x264
  preset medium, constant QP, one thread, SEI stripped; the IDR slice QP is IDR_QP_OFFSET below the QP asked for);
- `x265`: libx265 preset medium at constant QP (its ipratio also puts the I slice 3 below it), one thread, no
  version SEI, the raw Annex-B access unit (VPS + SPS + PPS + IDR slice); decoded by FFmpeg's hevc;
- `svtav1-p8` / `svtav1-p4`: SVT-AV1 key frame at CRF (1..63), preset 8 (rd_curve's) and the slower preset 4,
  one thread (lp=1), the OBU stream as written (temporal delimiter and sequence header counted); decoded by
  libdav1d.
All codecs get the same yuv420p BT.601 limited-range picture (codec.video.rgb_to_yuv420p) and are read back
through the same conversion (frame_to_rgb). Bytes are everything a decoder needs for that one picture.

Per clip (metrics averaged over its pictures at each quality value) and codec: BD-rate against h264 on LPIPS-alex
(lower is better) over the shared LPIPS range and over the LPIPS range of fvc's keyframe QPs (h264 QP 24-40), on
PSNR, and the bytes at LPIPS 0.10 / 0.15 / 0.20 and at the LPIPS of h264 QP 30 (fvc's default), interpolated in
log bytes (bd_rate.rate_for_quality). Writes keyframes.csv (one row per clip x picture x codec x quality),
per_clip.csv, summary.csv and run.json to --out, and prints the summary. Usage:
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/keyframe_codecs.py --data ../shared/data/bench512 --size 512 \\
        --out benchmarks/results/keyframe-codecs-bench512
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Callable

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bd_rate import CurveError, _log_rate_of_quality, bd_rate, rate_for_quality  # noqa: E402
from protocol import portable  # noqa: E402
from rd_curve import device_description, find_clips  # noqa: E402
from rdcodecs import BenchmarkError, SvtAv1, X265  # noqa: E402
from results_folder import command_line, provenance, run_stamp  # noqa: E402

from codec import metrics  # noqa: E402
from codec.h264 import IDR_QP_OFFSET, decode_intra, encode_intra  # noqa: E402
from codec.video import frame_to_rgb, read_frames, rgb_to_yuv420p  # noqa: E402

# Quality values swept per codec. fvc's keyframe QPs of interest are about 24-40 (default 30; the IDR's slice QP
# is IDR_QP_OFFSET = 3 lower), where a 512² face keyframe scores LPIPS ~0.02-0.08; the sweeps go on to QP 51
# (and SVT-AV1's CRF 63, its coarsest) so that LPIPS 0.10-0.20 is reached on most clips, and start low enough
# that every codec's curve covers h264's at QP 24.
H264_QPS = (18, 21, 24, 27, 30, 33, 36, 39, 42, 45, 48, 51)
X265_QPS = (15, 18, 21, 24, 27, 30, 33, 36, 39, 42, 45, 48, 51)  # x265's QP scale follows H.264's
SVTAV1_CRFS = (20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60, 63)  # SVT-AV1's CRF runs 1..63 (qindex 4x)
FVC_QP_RANGE = (24, 40)  # h264 QPs whose LPIPS range the "fvc range" BD-rate covers
FVC_DEFAULT_QP = 30
LPIPS_TARGETS = (0.10, 0.15, 0.20)
ANCHOR = "h264"
DEFAULT_STRIDE = 50  # 2 s at 25 fps between the pictures of one clip with --frames-per-clip N

COLUMNS = ["clip", "frame", "codec", "quality", "bytes", "lpips", "psnr", "encode_ms", "decode_ms",
           "date", "commit", "device"]


class KeyframeCodecError(Exception):
    """An encoder or decoder that did not give one picture for one picture."""


@dataclass(frozen=True)
class KeyframeCodec:
    """One way to code a picture alone: encode(rgb, quality) -> bytes, decode(bytes) -> rgb."""

    name: str
    scale: str  # what `quality` means
    qualities: tuple[int, ...]
    encode: Callable[[np.ndarray, int], bytes]
    decode: Callable[[bytes], np.ndarray]
    settings: dict[str, str] = field(default_factory=dict)


def encode_picture(encoder_name: str, options: dict[str, str], rgb: np.ndarray) -> bytes:
    """`rgb` coded alone by FFmpeg's `encoder_name` (a fresh encoder, as fvc opens one per IDR): all its bytes."""
    height, width, _ = rgb.shape
    encoder = av.CodecContext.create(encoder_name, "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.time_base, encoder.framerate = Fraction(1, 25), Fraction(25)
    encoder.thread_type, encoder.thread_count = "FRAME", 1
    encoder.colorspace, encoder.color_range = int(Colorspace.ITU601), int(ColorRange.MPEG)
    encoder.options = options
    picture = rgb_to_yuv420p(rgb)
    picture.pts = 0
    packets = [bytes(p) for p in encoder.encode(picture) + encoder.encode(None)]
    if len(packets) != 1:
        raise KeyframeCodecError(f"{encoder_name} wrote {len(packets)} packets for one picture, expected 1")
    return packets[0]


def decode_picture(decoder_name: str, data: bytes) -> np.ndarray:
    """The one RGB picture of `data`, decoded by FFmpeg's `decoder_name` on one thread."""
    decoder = av.CodecContext.create(decoder_name, "r")
    decoder.thread_type, decoder.thread_count = "FRAME", 1
    frames = [*decoder.decode(av.Packet(data)), *decoder.decode(None)]
    if len(frames) != 1:
        raise KeyframeCodecError(f"{decoder_name} decoded {len(frames)} pictures from {len(data)} bytes, expected 1")
    return frame_to_rgb(frames[0], Colorspace.ITU601, ColorRange.MPEG)


def _params(params: dict[str, str]) -> str:
    return ":".join(f"{k}={v}" for k, v in params.items())


# rd_curve's low-delay settings (one thread, no version SEI, no look-ahead), each picture an intra one.
X265_PARAMS = {**X265.PARAMS, "keyint": "1"}
SVTAV1_PARAMS = dict(SvtAv1.PARAMS)


def x265_options(qp: int) -> dict[str, str]:
    return {"preset": X265.PRESET, "qp": str(qp), "x265-params": _params(X265_PARAMS)}


def svtav1_options(crf: int, preset: str) -> dict[str, str]:
    return {"preset": preset, "crf": str(crf), "svtav1-params": _params(SVTAV1_PARAMS)}


def codecs() -> dict[str, KeyframeCodec]:
    """Every codec measured, by name; h264 (fvc's keyframes) first, the anchor."""
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration at every picture otherwise
    ffmpeg = f"FFmpeg {av.ffmpeg_version_info}, PyAV {av.__version__}"
    pix = "yuv420p (BT.601 limited, codec.video conversion)"
    found = {ANCHOR: KeyframeCodec(
        ANCHOR, "x264 qp (fvc --keyframe-qp; IDR slice QP 3 lower)", H264_QPS, encode_intra, decode_intra,
        {"encoder": f"libx264 via codec.h264.encode_intra ({ffmpeg})", "decoder": "h264 (codec.h264.decode_intra)",
         "preset": "medium", "rate control": "constant qp, x264-params keyint=1:scenecut=0, one thread",
         "idr_qp_offset": str(IDR_QP_OFFSET), "container": "none (Annex-B SPS + PPS + IDR, SEI stripped)",
         "pix_fmt": pix})}
    found["x265"] = KeyframeCodec(
        "x265", "x265 qp (I slice 3 lower by its ipratio)", X265_QPS,
        lambda rgb, q: encode_picture("libx265", x265_options(q), rgb), lambda data: decode_picture("hevc", data),
        {"encoder": f"libx265 ({ffmpeg})", "decoder": "hevc", "preset": X265.PRESET,
         "rate control": "constant qp", "x265-params": _params(X265_PARAMS),
         "container": "none (raw Annex-B: VPS + SPS + PPS + IDR)", "pix_fmt": pix})
    for preset in ("8", "4"):
        found[f"svtav1-p{preset}"] = KeyframeCodec(
            f"svtav1-p{preset}", "SVT-AV1 crf (1..63)", SVTAV1_CRFS,
            lambda rgb, q, p=preset: encode_picture("libsvtav1", svtav1_options(q, p), rgb),
            lambda data: decode_picture("libdav1d", data),
            {"encoder": f"libsvtav1 ({ffmpeg})", "decoder": "libdav1d", "preset": preset, "rate control": "crf",
             "svtav1-params": _params(SVTAV1_PARAMS),
             "container": "none (OBU stream: temporal delimiter + sequence header + frame)", "pix_fmt": pix})
    return found


def timed(function, repeats: int):
    """(last result, median wall time in ms) of `repeats` calls."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append((time.perf_counter() - start) * 1e3)
    return result, float(np.median(times))


def measure(codec: KeyframeCodec, rgb: np.ndarray, quality: int, repeats: int = 1) -> dict[str, float]:
    """One picture coded by `codec` at `quality`: bytes, LPIPS-alex, PSNR, encode and decode ms."""
    data, encode_ms = timed(lambda: codec.encode(rgb, quality), repeats)
    decoded, decode_ms = timed(lambda: codec.decode(data), repeats)
    if decoded.shape != rgb.shape:
        raise KeyframeCodecError(f"{codec.name} at {quality} decoded to {decoded.shape}, expected {rgb.shape}")
    return {"bytes": len(data), "lpips": float(metrics.lpips_distance(rgb, decoded)[0]),
            "psnr": float(metrics.psnr(rgb, decoded)[0]), "encode_ms": encode_ms, "decode_ms": decode_ms}


@dataclass
class Curve:
    """One codec's points on one clip: quality values with mean bytes, LPIPS and PSNR over the clip's pictures."""

    qualities: list[int]
    bytes: list[float]
    lpips: list[float]
    psnr: list[float]

    def lpips_span(self, low: int, high: int) -> tuple[float, float]:
        """(lowest, highest) LPIPS of the points with quality values in low..high."""
        inside = [m for q, m in zip(self.qualities, self.lpips) if low <= q <= high]
        return min(inside), max(inside)


def bd_rate_lpips_between(anchor: Curve, test: Curve, low: float, high: float) -> float:
    """bd_rate.bd_rate on LPIPS, the mean taken over LPIPS low..high only (within both curves' ranges): each
    codec interpolated through all its points, as bd_rate does."""
    fa, qa0, qa1 = _log_rate_of_quality(anchor.bytes, anchor.lpips, False)  # of q = -LPIPS
    ft, qt0, qt1 = _log_rate_of_quality(test.bytes, test.lpips, False)
    lo, hi = max(qa0, qt0, -high), min(qa1, qt1, -low)
    if hi <= lo:
        return math.nan
    return (math.exp((ft.integrate(lo, hi) - fa.integrate(lo, hi)) / (hi - lo)) - 1.0) * 100.0


def curves_of(rows: list[dict]) -> dict[tuple[str, str], Curve]:
    """(clip, codec) -> its Curve, each quality's metrics averaged over that clip's pictures."""
    grouped: dict[tuple[str, str], dict[int, list[dict]]] = {}
    for row in rows:
        grouped.setdefault((row["clip"], row["codec"]), {}).setdefault(int(row["quality"]), []).append(row)
    curves = {}
    for key, by_quality in grouped.items():
        qualities = sorted(by_quality)
        mean = {m: [float(np.mean([float(r[m]) for r in by_quality[q]])) for q in qualities]
                for m in ("bytes", "lpips", "psnr")}
        curves[key] = Curve(qualities, mean["bytes"], mean["lpips"], mean["psnr"])
    return curves


def _safe(function, *args, **kwargs) -> float:
    try:
        return float(function(*args, **kwargs))
    except CurveError:
        return math.nan


def bytes_at_lpips(curve: Curve, target: float) -> tuple[float, str]:
    """(bytes, how) at which `curve` reaches LPIPS `target`, interpolated in log bytes: how is "interpolated", or
    "bound" when even its coarsest point is better than `target` (SVT-AV1 at CRF 63: the bytes of that point, an
    upper bound), or "not-reached" (NaN bytes)."""
    try:
        rate, how = rate_for_quality(curve.bytes, curve.lpips, target, higher_is_better=False)
    except CurveError:
        return math.nan, "not-reached"
    return rate, {"below-range": "bound"}.get(how, how)


def compare(anchor: Curve, test: Curve, anchor_qp: int = FVC_DEFAULT_QP,
            fvc_range: tuple[int, int] = FVC_QP_RANGE, targets=LPIPS_TARGETS) -> dict[str, float]:
    """`test` against `anchor` (h264) on one clip: BD-rates in % (negative: test needs fewer bytes for the same
    quality), on LPIPS over the whole shared range and over the LPIPS span of the anchor's `fvc_range` QPs, and on
    PSNR; bytes of each at the LPIPS `targets` and at the anchor's LPIPS at `anchor_qp`, and test's change there
    in %."""
    result = {
        "bd_lpips": _safe(bd_rate, anchor.bytes, anchor.lpips, test.bytes, test.lpips, higher_is_better=False),
        "bd_lpips_fvc_range": (_safe(bd_rate_lpips_between, anchor, test, *anchor.lpips_span(*fvc_range))
                               if any(fvc_range[0] <= q <= fvc_range[1] for q in anchor.qualities) else math.nan),
        "bd_psnr": _safe(bd_rate, anchor.bytes, anchor.psnr, test.bytes, test.psnr, higher_is_better=True),
    }
    points = {f"{t:.2f}": t for t in targets}
    if anchor_qp in anchor.qualities:
        points[f"qp{anchor_qp}"] = anchor.lpips[anchor.qualities.index(anchor_qp)]
    for label, target in points.items():
        (a, _), (t, how) = bytes_at_lpips(anchor, target), bytes_at_lpips(test, target)
        result[f"anchor_bytes_at_{label}"], result[f"bytes_at_{label}"], result[f"how_at_{label}"] = a, t, how
        result[f"change_at_{label}"] = (t / a - 1.0) * 100.0 if a > 0 and t > 0 else math.nan
    if anchor_qp in anchor.qualities:
        result[f"lpips_at_qp{anchor_qp}"] = points[f"qp{anchor_qp}"]
    return result


def _mean(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def summarize(rows: list[dict], targets=LPIPS_TARGETS) -> tuple[list[dict], list[dict]]:
    """(per-clip comparisons, per-codec summary). At an LPIPS target the mean bytes of a codec and of h264 are
    over the clips where both have a number there (n; `bound` of them upper bounds), and the change is that of the
    means."""
    curves = curves_of(rows)
    clips = sorted({clip for clip, _ in curves})
    names = list(dict.fromkeys(row["codec"] for row in rows))
    labels = [f"{t:.2f}" for t in targets] + [f"qp{FVC_DEFAULT_QP}"]
    per_clip, summary = [], []
    for name in names:
        compared = []
        for clip in clips:
            if (clip, ANCHOR) not in curves or (clip, name) not in curves:
                continue
            result = compare(curves[(clip, ANCHOR)], curves[(clip, name)], targets=targets)
            compared.append(result)
            per_clip.append({"clip": clip, "codec": name, **{k: _fmt(v) for k, v in result.items()}})
        codec_rows = [r for r in rows if r["codec"] == name]
        line = {"codec": name, "clips": len(compared),
                "bd_lpips": _mean(r["bd_lpips"] for r in compared),
                "bd_lpips_fvc_range": _mean(r["bd_lpips_fvc_range"] for r in compared),
                "bd_psnr": _mean(r["bd_psnr"] for r in compared)}
        for label in labels:
            both = [r for r in compared if not math.isnan(r.get(f"bytes_at_{label}", math.nan))
                    and not math.isnan(r.get(f"anchor_bytes_at_{label}", math.nan))]
            mean_test = _mean(r[f"bytes_at_{label}"] for r in both)
            mean_anchor = _mean(r[f"anchor_bytes_at_{label}"] for r in both)
            line[f"bytes_at_{label}"] = mean_test
            line[f"h264_bytes_at_{label}"] = mean_anchor
            line[f"change_at_{label}"] = (mean_test / mean_anchor - 1) * 100 if both else math.nan
            line[f"n_at_{label}"] = len(both)
            line[f"bound_at_{label}"] = sum(r[f"how_at_{label}"] == "bound" for r in both)
        line["encode_ms"] = _mean(float(r["encode_ms"]) for r in codec_rows)
        line["decode_ms"] = _mean(float(r["decode_ms"]) for r in codec_rows)
        summary.append(line)
    return per_clip, summary


def _fmt(value) -> str:
    return "" if isinstance(value, float) and math.isnan(value) else (f"{value:.6g}" if isinstance(value, float)
                                                                     else str(value))


def pictures(clip: Path, size: int, count: int, stride: int) -> list[tuple[int, np.ndarray]]:
    """Frames 0, stride, 2·stride, ... (at most `count`, while the clip lasts) of `clip` at `size`²."""
    wanted, found = {i * stride for i in range(count)}, []
    for index, frame in enumerate(read_frames(clip, size=size)):
        if index in wanted:
            found.append((index, frame))
        if len(found) == len(wanted):
            break
    return found


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows({k: _fmt(v) if isinstance(v, float) else v for k, v in row.items()} for row in rows)


def summary_table(summary: list[dict], targets=LPIPS_TARGETS) -> str:
    labels = [f"{t:.2f}" for t in targets] + [f"qp{FVC_DEFAULT_QP}"]
    head = ("| codec | clips | BD-rate LPIPS | BD-rate LPIPS (h264 QP 24-40) | BD-rate PSNR | "
            + " | ".join(f"bytes at LPIPS {l} (vs h264, clips)" if not l.startswith("qp") else
                         f"bytes at h264 {l.upper()}'s LPIPS (vs h264, clips)" for l in labels)
            + " | encode ms | decode ms |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for s in summary:
        cells = [s["codec"], str(s["clips"])]
        cells += ["" if s["codec"] == ANCHOR else f"{s[k]:+.1f} %" for k in ("bd_lpips", "bd_lpips_fvc_range", "bd_psnr")]
        for label in labels:
            if s[f"n_at_{label}"] == 0:
                cells.append("—")
            elif s["codec"] == ANCHOR:
                cells.append(f"{s[f'bytes_at_{label}']:,.0f} ({s[f'n_at_{label}']})")
            else:
                bound = s[f"bound_at_{label}"]
                note = f", {bound} of them upper bounds" if bound else ""
                cells.append(f"{'≤ ' if bound else ''}{s[f'bytes_at_{label}']:,.0f} "
                             f"({s[f'change_at_{label}']:+.1f} %, {s[f'n_at_{label}']}{note})")
        cells += [f"{s['encode_ms']:.0f}", f"{s['decode_ms']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of clips")
    parser.add_argument("--clips", nargs="+", help="the first N clips (sorted by name), or clip names; default all")
    parser.add_argument("--size", type=int, default=512, help="square frame side after centre crop")
    parser.add_argument("--frames-per-clip", type=int, default=1, help="pictures per clip: frames 0, S, 2S, ...")
    parser.add_argument("--stride", type=int, default=DEFAULT_STRIDE, help="S, frames between a clip's pictures")
    parser.add_argument("--codecs", default=",".join(codecs()), help="comma-separated, from: " + ",".join(codecs()))
    parser.add_argument("--repeats", type=int, default=1, help="timing repeats per measurement (median)")
    parser.add_argument("--out", type=Path, required=True, help="results folder")
    args = parser.parse_args(argv)

    available = codecs()
    chosen = [c.strip() for c in args.codecs.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in available]
    if unknown or ANCHOR not in chosen:
        parser.error(f"--codecs must name {ANCHOR} and only {', '.join(available)}; got {', '.join(unknown) or args.codecs}")
    try:
        clips = find_clips(args.data, args.clips)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    stamp, device = run_stamp(), device_description("cpu")
    print(f"device: {device}; code {stamp['commit']}")
    print(f"{args.frames_per_clip} picture(s) per clip of {len(clips)} clip(s) from {portable(args.data)} at "
          f"{args.size}²", flush=True)

    rows = []
    for clip in clips:
        for index, rgb in pictures(clip, args.size, args.frames_per_clip, args.stride):
            for name in chosen:
                codec = available[name]
                for quality in codec.qualities:
                    m = measure(codec, rgb, quality, args.repeats)
                    rows.append({"clip": clip.stem, "frame": index, "codec": name, "quality": quality, **m,
                                 **provenance(stamp["commit"]), "device": device})
            print(f"  {clip.stem} frame {index} done", flush=True)
        write_csv(args.out / "keyframes.csv", rows, COLUMNS)

    per_clip, summary = summarize(rows)
    write_csv(args.out / "per_clip.csv", per_clip, list(per_clip[0]) if per_clip else ["clip", "codec"])
    summary = [{**s, "date": stamp["date"], "commit": stamp["commit"], "device": device} for s in summary]
    write_csv(args.out / "summary.csv", summary, list(summary[0]))
    run_info = {"command": command_line(None if argv is None else [sys.argv[0], *argv]), **stamp, "device": device,
                "data": portable(args.data), "clips": [c.stem for c in clips], "size": args.size,
                "frames_per_clip": args.frames_per_clip, "stride": args.stride, "repeats": args.repeats,
                "lpips": "LPIPS-alex v0.1 (codec.metrics.lpips_distance, CPU)", "psnr": "RGB, peak 255",
                "lpips_targets": list(LPIPS_TARGETS), "fvc_qp_range": list(FVC_QP_RANGE),
                "fvc_default_qp": FVC_DEFAULT_QP,
                "codecs": {name: {"quality": available[name].scale, "points": list(available[name].qualities),
                                  **available[name].settings} for name in chosen}}
    (args.out / "run.json").write_text(json.dumps(run_info, indent=2) + "\n")
    print(summary_table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
