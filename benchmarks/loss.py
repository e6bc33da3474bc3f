"""Loss resilience of a live call: clips sent through the loopback UDP transport at seeded loss, scored as shown.

Each clip is sent as `fvc send` sends it (preset fast, a RESYNC every 25 motion packets) by codec.live's LiveSender to
a LiveReceiver on 127.0.0.1 whose NetworkSimulator drops datagrams: 0, 1, 3 and 10 % at random (seeded) and one burst
of 3 consecutive datagrams in the middle of the clip, each with NACK retransmission on and off. A row gives the mean
LPIPS and temporal error of the frames the receiver shows against the source, the frames concealed or never shown,
the longest run of them (the recovery time after a loss, frames and ms), the bytes sent (RTP headers and re-sent
datagrams included) and the receiver's capture-to-display latency. Rows already in loss.csv are kept (resumable).

Method x264 is the conventional call through the same transport: every frame an H.264 P picture at constant QP
(`--x264-qp`, fvc's own x264 coder: tune zerolatency, 4 references, an IDR only at the start and when the receiver
asks), in the same KEYFRAME packets, datagrams, losses and NACKs. Its receiver repeats the last frame from a lost
picture until the IDR its keyframe request brings, as a WebRTC receiver freezes until its PLI is answered.
Usage:
    .venv/bin/python benchmarks/loss.py --out results/X [--data DIR] [--clips N | NAMES] [--frames 250] [--size 512]
        [--methods fvc,x264] [--x264-qp 42] [--conditions loss0,loss1,loss3,loss10,burst3] [--nack on,off]
        [--seed 0] [--delay MS] [--no-realtime]
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from statistics import median

import numpy as np

from codec import video
from codec.decoder import FrameSource
from codec.encoder import Encoder, EncoderConfig
from codec.errors import InputError
from codec.live import LiveReceiver, LiveSender, NetworkSimulator, percentile, udp_socket
from codec.metrics import lpips_distance, temporal_error
from codec.model_loading import load_model_spec

sys.path.insert(0, str(Path(__file__).resolve().parent))
from protocol import portable_args, portable_label  # noqa: E402
from rd_curve import add_clip_options, device_description, find_clips  # noqa: E402
from rdcodecs import BenchmarkError  # noqa: E402
from results_folder import Table, code_version, command_line, provenance  # noqa: E402

FPS = 25
RESYNC_PERIOD = 25  # fvc send's (codec.coding_defaults.LIVE_RESYNC_PERIOD): motion decodes again at most 1 s after a loss
BURST = 3
METHODS = ("fvc", "x264")
# x264's QP: loss-free, about fvc's LPIPS at 512². On cnn2's first 100 frames (LPIPS every 10th) P pictures at
# QP 40 / 44 / 48 cost 54 / 39 / 30 kbps at LPIPS 0.064 / 0.094 / 0.129; fvc at keyframe QP 32 with one keyframe
# scores 0.077 at 9.9 kbps there (results/bench512-step17548).
X264_QP = 42
# condition -> (random loss probability, burst length); the burst hits the datagrams around the clip's middle frame.
CONDITIONS = {"loss0": (0.0, 0), "loss1": (0.01, 0), "loss3": (0.03, 0), "loss10": (0.10, 0), "burst3": (0.0, BURST)}
KEY = ["clip", "method", "condition", "nack"]
COLUMNS = ["date", "commit", "weights", *KEY, "qp", "loss", "burst", "seed", "frames", "decoded", "concealed", "unshown",
           "longest_run_frames", "longest_run_ms", "lpips", "temporal", "bytes", "resent_bytes", "datagrams",
           "dropped", "lost", "keyframes", "plis", "latency_median_ms", "latency_p95_ms", "seconds"]
UNSHOWN_GREY = 128  # what a viewer sees before the first frame the receiver shows


@dataclass
class Call:
    """What one loopback call sent and what its receiver showed."""

    shown: list  # codec.decoder.ShownFrame, in the order shown
    sender: object  # codec.live.SenderStats
    receiver: LiveReceiver


def encoder_config(method: str, width: int, height: int, x264_qp: int = X264_QP) -> EncoderConfig:
    """fvc send's settings, or x264's: every frame coded (a GOP of one) as an open-loop P picture, no motion."""
    if method == "x264":
        return EncoderConfig(width=width, height=height, fps=Fraction(FPS), refresh_threshold=0.0, max_gop=1,
                             keyframe_qp=x264_qp, predict_keyframes=True, resync_period=0)
    return EncoderConfig(width=width, height=height, fps=Fraction(FPS), refresh_threshold=0.0,
                         resync_period=RESYNC_PERIOD)


def send_over_loopback(frames: np.ndarray, model, model_id: bytes, config: EncoderConfig, *, loss: float, burst: int,
                       seed: int, nack: bool, realtime: bool = True, delay: float = 0.0) -> Call:
    """Send `frames`, coded with `config`, from a LiveSender thread to a LiveReceiver on 127.0.0.1 through
    NetworkSimulator(loss, burst)."""
    n = len(frames)
    encoder = Encoder(model, config, model_id)
    receive_sock, _ = udp_socket("127.0.0.1", 0, bind=True)
    send_sock, address = udp_socket("127.0.0.1", receive_sock.getsockname()[1], bind=False)
    # Arrival positions: header, two NOTEs, the first keyframe, then about one datagram a frame.
    simulator = NetworkSimulator(loss=loss, delay=delay, seed=seed, burst=burst, burst_at=3 + n // 2)
    shown: list = []
    receiver = LiveReceiver(receive_sock, lambda header: model, shown.append, simulator=simulator, nack=nack)
    sender = LiveSender(encoder, send_sock, address, retransmit=nack)
    sent: dict = {}
    thread = threading.Thread(target=lambda: sent.setdefault("stats", sender.run(list(frames), Fraction(FPS),
                                                                                   realtime=realtime)))
    thread.start()
    try:
        receiver.run(timeout=5.0, first_timeout=60.0)
    finally:
        thread.join()
        receive_sock.close()
        send_sock.close()
    if "stats" not in sent:
        raise BenchmarkError("the sender stopped before the end of the clip")
    return Call(shown, sent["stats"], receiver)


def displayed(source: np.ndarray, shown: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a viewer sees at each frame index (the last frame shown up to it; grey before any), and per index
    whether it was concealed and whether nothing new was shown for it."""
    out = np.empty_like(source)
    concealed = np.zeros(len(source), bool)
    unshown = np.ones(len(source), bool)
    by_index = {f.index: f for f in shown if 0 <= f.index < len(source)}
    current = np.full_like(source[0], UNSHOWN_GREY)
    for i in range(len(source)):
        if i in by_index:
            current = by_index[i].image
            unshown[i] = False
            concealed[i] = by_index[i].source == FrameSource.CONCEALED
        out[i] = current
    return out, concealed, unshown


def longest_run(flags: np.ndarray) -> int:
    """The longest run of consecutive True values."""
    best = run = 0
    for flag in flags:
        run = run + 1 if flag else 0
        best = max(best, run)
    return best


def score(source: np.ndarray, call: Call, stride: int = 1, device: str = "cpu") -> dict:
    """One call's row: quality of what was shown, concealment and recovery, bytes, latency."""
    shown, concealed, unshown = displayed(source, call.shown)
    picked = np.arange(0, len(source), stride)
    lpips = float(np.mean(lpips_distance(source[picked], shown[picked], device)))
    temporal = float(np.mean(temporal_error(source[:-1], source[1:], shown[:-1], shown[1:]))) if len(source) > 1 \
        else float("nan")
    run = longest_run(concealed | unshown)
    latency = call.receiver.stats.latency_ms
    transport = call.receiver.depacketizer.stats
    return {"frames": len(source), "decoded": int((~concealed & ~unshown).sum()), "concealed": int(concealed.sum()),
            "unshown": int(unshown.sum()), "longest_run_frames": run, "longest_run_ms": round(run * 1000 / FPS),
            "lpips": round(lpips, 5), "temporal": round(temporal, 3), "bytes": call.sender.bytes,
            "resent_bytes": call.sender.resent_bytes, "datagrams": call.sender.datagrams,
            "dropped": call.receiver.simulator.dropped, "lost": transport.lost, "keyframes": call.sender.keyframes,
            "plis": call.receiver.stats.plis_sent,
            "latency_median_ms": round(median(latency), 1) if latency else "nan",
            "latency_p95_ms": round(percentile(latency, 0.95), 1) if latency else "nan"}


def run_condition(source: np.ndarray, model, model_id: bytes, condition: str, *, nack: bool, seed: int = 0,
                  realtime: bool = True, delay: float = 0.0, stride: int = 1, device: str = "cpu",
                  method: str = "fvc", x264_qp: int = X264_QP) -> dict:
    """One condition of CONDITIONS on one clip by one of METHODS: the row's measured columns (the benchmark's core)."""
    loss, burst = CONDITIONS[condition]
    start = time.perf_counter()
    config = encoder_config(method, source.shape[2], source.shape[1], x264_qp)
    call = send_over_loopback(source, model, model_id, config, loss=loss, burst=burst, seed=seed, nack=nack,
                              realtime=realtime, delay=delay)
    return {"method": method, "condition": condition, "nack": "on" if nack else "off", "qp": config.keyframe_qp,
            "loss": loss, "burst": burst, "seed": seed, **score(source, call, stride, device),
            "seconds": round(time.perf_counter() - start, 1)}


def _choices(text: str, allowed) -> list[str]:
    values = text.split(",")
    unknown = [v for v in values if v not in allowed]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return values


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_clip_options(p)
    p.add_argument("--methods", type=lambda t: _choices(t, METHODS), default=list(METHODS),
                   help="comma-separated, of fvc (fvc send's settings) and x264 (every frame an H.264 picture, "
                        "same transport); default both")
    p.add_argument("--x264-qp", type=int, default=X264_QP, help=f"x264's constant QP (default {X264_QP})")
    p.add_argument("--conditions", type=lambda t: _choices(t, CONDITIONS), default=list(CONDITIONS),
                   help=f"comma-separated, of {', '.join(CONDITIONS)} (default all)")
    p.add_argument("--nack", type=lambda t: _choices(t, ("on", "off")), default=["on", "off"],
                   help="NACK retransmission: on, off or on,off (default both)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random loss (default 0)")
    p.add_argument("--delay", type=float, default=0.0, metavar="MS", help="one-way network delay (default 0)")
    p.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=True,
                   help="send frame k at k / 25 s as a camera would (default on; latency means something only so)")
    p.add_argument("--stride", type=int, default=1, help="LPIPS on every N-th frame (default 1: a concealed frame "
                                                         "is rarely every N-th)")
    p.add_argument("--model", help="weights or untrained-CONFIG (default the shipped fv2v weights)")
    p.add_argument("--out", type=Path, required=True, help="folder for loss.csv and run.json")
    args = p.parse_args(argv)
    try:
        if args.frames < 2 or args.size < 16 or args.stride < 1 or args.delay < 0:
            raise BenchmarkError("--frames must be >= 2, --size >= 16, --stride >= 1 and --delay >= 0")
        encoder_config("x264", 16, 16, args.x264_qp)  # refuses a QP outside H.264's range now, not mid-run
        clips = find_clips(args.data, args.clips)
        loaded = load_model_spec(args.model, "cpu")
    except (BenchmarkError, InputError) as exc:
        print(f"loss: error: {exc}", file=sys.stderr)
        return 1
    commit, weights = code_version(), portable_label(loaded.label)
    args.out.mkdir(parents=True, exist_ok=True)
    table = Table(args.out / "loss.csv", COLUMNS)
    try:
        rows = table.read()
    except BenchmarkError as exc:
        print(f"loss: error: {exc}", file=sys.stderr)
        return 1
    done = {tuple(r[k] for k in KEY) for r in rows}
    info = {**provenance(commit), "weights": weights, "model_id": loaded.model_id.hex(),
            "device": device_description("cpu"), "args": portable_args(vars(args)), "command": command_line(argv)}
    (args.out / "run.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"loss: {len(clips)} clips on {info['device']}, code {commit}, weights {weights}", flush=True)
    for clip in clips:
        todo = [(m, c, n) for m in args.methods for c in args.conditions for n in args.nack
                if (clip.stem, m, c, n) not in done]
        if not todo:
            continue
        source = np.stack(list(itertools.islice(video.read_frames(clip, size=args.size, fps=FPS), args.frames)))
        for method, condition, nack in todo:
            row = run_condition(source, loaded.model, loaded.model_id, condition, nack=nack == "on", seed=args.seed,
                                realtime=args.realtime, delay=args.delay / 1000.0, stride=args.stride,
                                method=method, x264_qp=args.x264_qp)
            row = {**provenance(commit), "weights": weights, "clip": clip.stem, **row}
            table.append(row)
            rows.append(row)
            print(" ".join(f"{k} {row[k]}" for k in COLUMNS[3:]), flush=True)
    print(summary(rows))
    return 0


def summary(rows: list[dict]) -> str:
    """Means over clips per condition and NACK setting, as a markdown table."""
    lines = ["| method | condition | NACK | clips | LPIPS | temporal | concealed | unshown | longest run (frames / ms) | kB | "
             "latency median ms |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["method"], r["condition"], r["nack"]), []).append(r)
    for (method, condition, nack), group in groups.items():
        def mean(key: str) -> float:
            values = [float(r[key]) for r in group]
            return sum(values) / len(values)
        lines.append(f"| {method} | {condition} | {nack} | {len(group)} | {mean('lpips'):.4f} | {mean('temporal'):.2f} | "
                     f"{mean('concealed'):.1f} | {mean('unshown'):.1f} | {max(int(r['longest_run_frames']) for r in group)}"
                     f" / {max(int(r['longest_run_ms']) for r in group)} | {mean('bytes') / 1000:.1f} | "
                     f"{mean('latency_median_ms'):.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
