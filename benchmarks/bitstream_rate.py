"""Motion bit rate of the .fvc bitstream on synthetic talking-head traces.

Prints bytes/frame per symbol group (ideal code length) and per MOTION packet (payload,
framing), the quantisation error per group, coder speed, and with --fit the entropy
parameters that would minimise the rate on the trace. Usage:
    .venv/bin/python benchmarks/bitstream_rate.py [--kind fv2v|fomm] [--frames 1500] [--fit]
"""
from __future__ import annotations

import argparse
import platform
import time
from dataclasses import replace

import constriction
import numpy as np

from bitstream import MotionDecoder, MotionEncoder, MotionKind, default_header, dequantize, layout, quantize
from bitstream.freqtable import residual_table
from bitstream.packets import PacketType, encode_body, frame, MotionPacket
from bitstream.symbols import GroupParams
from bitstream.synthetic import FPS, trace


def device() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or "unknown CPU"
    return f"{model}, {platform.python_implementation()} {platform.python_version()}, numpy {np.__version__}"


def code_length(residuals: np.ndarray, params: GroupParams) -> float:
    """Ideal bits of `residuals` under the table of `params` (escapes: ESCAPE + 32 bits)."""
    table = np.asarray(residual_table(params.radius, params.decay, params.escape_freq), dtype=np.float64)
    bits = 24 - np.log2(table)
    escaped = np.abs(residuals) > params.radius
    symbols = np.where(escaped, 2 * params.radius + 1, residuals + params.radius)
    return float(bits[symbols].sum() + 32 * escaped.sum())


def fit(kind: MotionKind, header, residuals: dict[str, list[np.ndarray]], sent_fraction: dict[str, float]) -> None:
    print("\nfitted entropy parameters (minimum ideal rate on this trace):")
    for g, p in zip(header.groups, header.params):
        r = np.concatenate([x.ravel() for x in residuals[g.name]]) if residuals[g.name] else np.zeros(0, int)
        best = min(range(1000, 65536, 500), key=lambda d: code_length(r, replace(p, decay=d)))
        line = (f"  {g.name:12s} decay {best:5d} -> {code_length(r, replace(p, decay=best)) / 8 / len(residuals[g.name]):.2f} "
                f"B/frame (now {p.decay}: {code_length(r, p) / 8 / len(residuals[g.name]):.2f})")
        if g.maskable:
            line += f"; rows sent {sent_fraction[g.name]:.3f} -> mask_freq {int(np.clip(sent_fraction[g.name] * 65536, 1, 65535))}"
        print(line)


def run(kind: MotionKind, frames: int, seeds: int, keyframe_interval: int, mask_threshold: int, do_fit: bool) -> None:
    header = default_header(kind, 256, 256, FPS, bytes(16))
    encoder, decoder = MotionEncoder(header), MotionDecoder(header)
    groups = layout(kind)
    group_bits = {g.name: 0.0 for g in groups}
    sq_error = {g.name: 0.0 for g in groups}
    payload_bytes = packet_bytes = packets = 0
    residuals = {g.name: [] for g in groups}
    rows_sent = {g.name: [0, 0] for g in groups}
    t_enc = t_dec = 0.0
    for seed in range(seeds):
        motion = trace(kind, frames, seed=seed)
        last_index = 0
        for t, m in enumerate(motion):
            if t % keyframe_interval == 0:
                encoder.reset()
                decoder.reset()
                previous = {g.name: np.zeros((g.count, g.dims), np.int64) for g in groups}
                last_index = t
                continue
            ints = quantize(m, header)
            t0 = time.perf_counter()
            payload, decoded = encoder.encode(ints, mask_threshold=mask_threshold)
            t1 = time.perf_counter()
            got = decoder.decode(payload)
            t_dec += time.perf_counter() - t1
            t_enc += t1 - t0
            assert all(np.array_equal(got[k], decoded[k]) for k in got)
            for g in groups:
                group_bits[g.name] += encoder.last_group_bits[g.name]
                residual = ints[g.name].astype(np.int64) - previous[g.name]
                if g.maskable:
                    sent = np.abs(residual).max(axis=1) > mask_threshold if mask_threshold >= 0 else np.ones(g.count, bool)
                    rows_sent[g.name][0] += int(sent.sum())
                    rows_sent[g.name][1] += g.count
                    residual = residual[sent]
                residuals[g.name].append(residual)
                error = dequantize(decoded, header)[g.name] - m[g.name]
                sq_error[g.name] += float(np.mean(error.astype(np.float64) ** 2))
            previous = {k: v.astype(np.int64) for k, v in decoded.items()}
            payload_bytes += len(payload)
            packet_bytes += len(frame(PacketType.MOTION, encode_body(MotionPacket(t, payload), last_index)))
            last_index = t
            packets += 1
    print(f"== {kind.name.lower()} K={header.num_keypoints}: {seeds} traces x {frames} frames at {FPS} fps, "
          f"keyframe every {keyframe_interval}, mask_threshold {mask_threshold}; {packets} motion packets")
    for g, p in zip(groups, header.params):
        print(f"  {g.name:12s} step {p.step:<10.6g} {group_bits[g.name] / 8 / packets:6.2f} B/frame (ideal)   "
              f"quantisation rms {np.sqrt(sq_error[g.name] / packets):.5f}")
    ideal = sum(group_bits.values()) / 8 / packets
    print(f"  ideal total {ideal:.2f} B/frame; payload {payload_bytes / packets:.2f} B/frame "
          f"(coder end {payload_bytes / packets - ideal:+.2f}); MOTION packet {packet_bytes / packets:.2f} B/frame "
          f"= {packet_bytes * 8 * FPS / packets / 1000:.2f} kbps")
    print(f"  encode {t_enc / packets * 1e3:.3f} ms/frame, decode {t_dec / packets * 1e3:.3f} ms/frame")
    if do_fit:
        fit(kind, header, residuals, {k: v[0] / max(v[1], 1) for k, v in rows_sent.items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=["fv2v", "fomm", "both"], default="both")
    ap.add_argument("--frames", type=int, default=1500)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--keyframe-interval", type=int, default=250)
    ap.add_argument("--mask-threshold", type=int, default=0)
    ap.add_argument("--fit", action="store_true")
    args = ap.parse_args()
    print(f"device: {device()}; constriction {getattr(constriction, '__version__', '0.5')}")
    kinds = [MotionKind.FV2V, MotionKind.FOMM] if args.kind == "both" else [MotionKind[args.kind.upper()]]
    for kind in kinds:
        run(kind, args.frames, args.seeds, args.keyframe_interval, args.mask_threshold, args.fit)


if __name__ == "__main__":
    main()
