"""`fvc info`: what an .fvc stream holds, as text or JSON (torch-free, so it starts fast)."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import InputError
from .common import EXIT_OK, check_input, count_text, frames_text


def run(args) -> int:
    """`fvc info ARGS`."""
    from collections import Counter

    from bitstream import BitstreamError, summarize
    from bitstream.header import weights_model_id

    try:
        summary = summarize(check_input(args.input), packets=args.packets)
    except BitstreamError as exc:
        raise InputError(f"{args.input}: {exc}") from None
    # Hashes the shipped weights here: codec.motion_model would import torch, seconds for a quick look.
    weights = Path(__file__).resolve().parents[1] / "weights"
    summary["model_name"] = next((path.stem for path in sorted(weights.glob(f"{summary['motion_kind']}-*.pt"))
                                  if weights_model_id(path).hex() == summary["model_id"]), None)
    error = summary["error"]
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        model_id, name = summary["model_id"], summary["model_name"]
        model = f"{name} ({model_id[:8]}…)" if name else f"{model_id} (unknown weights)"
        print(f"{args.input}: fvc {summary['version']}, {summary['motion_kind']} motion, "
              f"{summary['num_keypoints']} keypoints, {summary['keyframe_codec'].upper()} keyframes, model {model}")
        if summary["notes"]:
            print("notes: " + ", ".join(f"{k} {v if isinstance(v, str) else json.dumps(v, separators=(',', ':'))}"
                                        for k, v in summary["notes"].items()))
        print(f"video: {summary['width']}x{summary['height']} at {summary['fps']} fps, "
              f"{frames_text(summary['frames'])} ({summary['duration_s']:.2f} s)")
        keyframes = summary["keyframe_list"]
        if keyframes:
            line = f"keyframes: {len(keyframes)}"
            reasons = Counter(str(k["reason"]) for k in keyframes if k["reason"] is not None)
            if reasons:
                line += " (" + ", ".join(f"{reason} {n}" for reason, n in reasons.items()) + ")"
            predicted = sum(k.get("predicted", False) for k in keyframes)
            line += f", {predicted} predicted" if predicted else ""
            qps = sorted({k["qp"] for k in keyframes if k["qp"] is not None})
            if qps:
                line += f", QP {qps[0]}" + (f"..{qps[-1]}" if len(qps) > 1 else "")
            print(line + f", {sum(k['bytes'] for k in keyframes) / len(keyframes):,.0f} B on average")
        if summary["ref_slots"] > 1:
            switches = count_text(summary["slot_switches"], "switch", "switches")
            print(f"reference slots: {summary['ref_slots']}, {switches} to a stored keyframe (USE_SLOT)")
        print(f"packets: {summary['keyframes']} keyframes, {summary['motion_packets']} motion"
              + (f" ({summary['resync_packets']} RESYNC, {summary['resync_bytes']:,} B)"
                 if summary["resync_packets"] else "")
              + (f", {summary['note_packets']} notes" if summary["note_packets"] else "")
              + (f", {summary['unknown_packets']} unknown (skipped)" if summary["unknown_packets"] else ""))
        print("bytes: " + ", ".join(f"{k} {v:,}" for k, v in summary["bytes_by_type"].items() if v)
              + f"; total {summary['bytes']:,}")
        print(f"rate: {summary['bits_per_pixel']:.5f} bpp, {summary['kbps']:.1f} kbps, motion "
              f"{summary['motion_bytes_per_packet']:.1f} B/packet")
        for group, g in summary["groups"].items():
            print(f"group {group}: step {g['step']:g}, radius {g['radius']}, decay {g['decay']}, "
                  f"escape {g['escape_freq']}" + (f", mask {g['mask_freq']}" if g["mask_freq"] else ""))
        for packet in summary.get("packets", []):
            print(f"packet {packet['index']} at byte {packet['offset']}: {packet['type']}"
                  + (f" frame {packet['frame']}" if packet["frame"] is not None else "")
                  + (f" slot {packet['slot']}" if "slot" in packet else "") + f", {packet['bytes']:,} B")
        if error is not None:
            print(f"damaged at byte {error['offset']}: the lines above describe the {summary['bytes']:,} bytes "
                  "before it")
    if error is not None:
        raise InputError(f"{args.input}: {BitstreamError(**error)}")
    return EXIT_OK

