"""Generates the conformance vectors in spec/vectors/: <name>.fvc and <name>.json beside it.

The JSON gives the header fields and every packet with its decoded integers; `encode_vector`
rebuilds the .fvc bytes from the JSON alone, which the tests use to prove determinism.
Usage: .venv/bin/python spec/make_vectors.py [--check] [--force]
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np

from bitstream import (EndPacket, KeyframePacket, MotionEncoder, MotionKind, MotionPacket, NotePacket, StreamHeader,
                       StreamWriter, UnknownPacket, UseSlotPacket, default_header, quantize)
from bitstream.constants import HEVC_MAJOR, NOTE_MINOR, PREDICTION_MAJOR, QUANT_MAX, RESYNC_MAJOR, SLOTS_MAJOR, KeyframeCodec
from bitstream.packets import PacketType, encode_body, frame
from bitstream.parser import PacketParser
from bitstream.sequence import StreamSequence
from bitstream.symbols import GroupParams, default_params
from bitstream.synthetic import trace

VECTORS = Path(__file__).resolve().parent / "vectors"
MODEL_ID = hashlib.sha256(b"fvc conformance vectors").digest()[:16]


def dummy_idr(frame_index: int) -> bytes:
    """A tiny Annex-B access unit shaped like SPS, PPS, IDR slice (not decodable H.264)."""
    return (b"\0\0\0\1\x67\x42\xc0\x1e" + b"\0\0\0\1\x68\xce\x3c\x80"
            + b"\0\0\1\x65\x88\x84" + frame_index.to_bytes(2, "big") + b"\xfc")


def dummy_predicted(frame_index: int) -> bytes:
    """A tiny Annex-B access unit shaped like one non-IDR (P) slice (not decodable H.264)."""
    return b"\0\0\1\x41\x9a" + frame_index.to_bytes(2, "big") + b"\xfc"


def dummy_hevc_idr(frame_index: int) -> bytes:
    """A tiny Annex-B access unit shaped like HEVC VPS, SPS, PPS and an IDR_N_LP slice (not decodable HEVC)."""
    return (b"\0\0\0\1\x40\x01\x0c\x01" + b"\0\0\0\1\x42\x01\x01\x01" + b"\0\0\0\1\x44\x01\xc1\x72"
            + b"\0\0\1\x28\x01\xaf" + frame_index.to_bytes(2, "big") + b"\xfc")


def dummy_hevc_predicted(frame_index: int) -> bytes:
    """A tiny Annex-B access unit shaped like one HEVC TRAIL_R slice (not decodable HEVC)."""
    return b"\0\0\1\x02\x01\xd0" + frame_index.to_bytes(2, "big") + b"\xfc"


# Dummy access units (intra, predicted) per keyframe codec.
DUMMIES = {KeyframeCodec.H264: (dummy_idr, dummy_predicted), KeyframeCodec.HEVC: (dummy_hevc_idr, dummy_hevc_predicted)}


def _header_json(header: StreamHeader, minor: int, extension: bytes) -> dict:
    version = header.version(minor)
    slots = {"ref_slots": header.ref_slots} if version[0] >= SLOTS_MAJOR else {}
    if version[0] >= HEVC_MAJOR:
        slots["keyframe_codec"] = int(header.keyframe_codec)
    return {
        "version": list(version), "extension_hex": extension.hex(), **slots,
        "width": header.width, "height": header.height, "fps_num": header.fps_num, "fps_den": header.fps_den,
        "frame_count": header.frame_count, "motion_kind": int(header.kind), "num_keypoints": header.num_keypoints,
        "model_id": header.model_id.hex(),
        "groups": [{"name": g.name, "count": g.count, "dims": g.dims, "maskable": g.maskable,
                    "step": p.step, "step_f32_hex": struct.pack("<f", p.step).hex(), "radius": p.radius,
                    "decay": p.decay, "escape_freq": p.escape_freq, "mask_freq": p.mask_freq}
                   for g, p in zip(header.groups, header.params)],
    }


def header_from_json(h: dict) -> StreamHeader:
    """The StreamHeader a vector's JSON describes."""
    params = tuple(GroupParams(struct.unpack("<f", bytes.fromhex(g["step_f32_hex"]))[0], g["radius"], g["decay"],
                               g["escape_freq"], g["mask_freq"]) for g in h["groups"])
    return StreamHeader(h["width"], h["height"], h["fps_num"], h["fps_den"], h["frame_count"],
                        MotionKind(h["motion_kind"]), h["num_keypoints"], bytes.fromhex(h["model_id"]), params,
                        h.get("ref_slots", 1), h["version"][0] >= PREDICTION_MAJOR, h["version"][0] >= RESYNC_MAJOR,
                        KeyframeCodec(h.get("keyframe_codec", KeyframeCodec.H264)))


def pack_header(header: StreamHeader, minor: int, extension: bytes) -> bytes:
    """Header bytes as a writer of version 1.`minor` would emit them, with its extra body bytes."""
    packed = header.pack()
    if minor == 0 and not extension:
        return packed
    head = bytearray(packed[:-4]) + extension
    head[9] = minor
    struct.pack_into("<H", head, 10, len(head) - 12)
    return bytes(head) + struct.pack("<I", zlib.crc32(head))


def encode_vector(desc: dict) -> bytes:
    """The .fvc bytes of a vector, from its JSON description alone."""
    h = desc["header"]
    header = header_from_json(h)
    version, extension = tuple(h["version"]), bytes.fromhex(h["extension_hex"])
    if (version == header.version(version[1]) and not extension
            and not any(p["type"] == "end" and p.get("extension_hex") for p in desc["packets"])):
        return _encode_with_writer(desc, header, version[1])
    # Forward-compatibility vectors carry bytes no writer of this version emits: assemble them by hand.
    out = bytearray(pack_header(header, version[1], extension))
    sequence = StreamSequence(header)
    encoder = MotionEncoder(header)
    for p in desc["packets"]:
        packet, extra = _packet(p, encoder, desc["mask_threshold"], header, len(out))
        body = encode_body(packet, sequence.last_index, version) + extra
        sequence.admit(packet, len(out))
        out += frame(int(p.get("packet_type", 0)) or _TYPES[p["type"]], body)
    return bytes(out)


_TYPES = {"keyframe": PacketType.KEYFRAME, "motion": PacketType.MOTION, "use_slot": PacketType.USE_SLOT,
          "note": PacketType.NOTE, "end": PacketType.END, "resync": PacketType.RESYNC}


def _packet(p: dict, encoder: MotionEncoder, mask_threshold: int, header: StreamHeader, offset: int):
    if p["type"] == "keyframe":
        encoder.reset()
        return KeyframePacket(p["frame_index"], bytes.fromhex(p["annexb_hex"]), p.get("slot", 0),
                              header.keyframe_codec), b""
    if p["type"] == "use_slot":  # leaves the motion state as it is (spec §5.6)
        return UseSlotPacket(p["slot"]), b""
    if p["type"] in ("motion", "resync"):
        ints = {k: np.array(v, dtype=np.int32) for k, v in p["symbols"].items()}
        if p["type"] == "resync":  # coded against zeros, naming the keyframe it is rendered from (spec §4.6)
            encoder.reset()
        payload, _ = encoder.encode(ints, mask_threshold=mask_threshold)
        return MotionPacket(p["frame_index"], payload, p["reference_frame"] if p["type"] == "resync" else None), b""
    if p["type"] == "unknown":
        return UnknownPacket(p["packet_type"], bytes.fromhex(p["body_hex"])), b""
    if p["type"] == "note":
        return NotePacket(p["text"].encode()), b""
    end = EndPacket(p["frame_count"], p["keyframe_count"], p["motion_count"], offset)
    return end, bytes.fromhex(p.get("extension_hex", ""))


def _encode_with_writer(desc: dict, header: StreamHeader, minor: int) -> bytes:
    sink = io.BytesIO()
    writer = StreamWriter(sink, header, minor=minor)
    encoder = MotionEncoder(header)
    for p in desc["packets"]:
        if p["type"] == "end":
            writer.close()
        else:
            writer.write(_packet(p, encoder, desc["mask_threshold"], header, writer.offset)[0])
    return sink.getvalue()


def describe(name: str, description: str, header: StreamHeader, events: list, mask_threshold: int = 0,
             minor: int = 0, extension: bytes = b"", end_extension: bytes = b"") -> dict:
    """A vector's JSON from encoder inputs; events are (kind, ...) tuples in stream order.

    ("keyframe", index[, slot[, "predicted"]]), ("motion", index, ints), ("resync", index, ints), ("use_slot", slot),
    ("note", members), ("unknown", type, body). With reference slots, keyframes name their slot and motion packets
    the keyframe they are rendered from; in 3.x keyframes say whether they are predicted. A RESYNC (4.x) always
    names its keyframe, as its `reference_frame`.
    """
    encoder = MotionEncoder(header)
    slotted = header.ref_slots > 1
    packets, keyframes, motions, last = [], 0, 0, -1
    slots, active = {}, 0  # slot -> frame index of the keyframe in it
    for event in events:
        if event[0] == "keyframe":
            encoder.reset()
            active = event[2] if slotted else 0
            slots[active] = event[1]
            predicted = event[-1] == "predicted"
            au = DUMMIES[header.keyframe_codec][predicted](event[1])
            packets.append({"type": "keyframe", **({"slot": active} if slotted else {}), "frame_index": event[1],
                            **({"predicted": predicted} if header.predicted_keyframes else {}),
                            "annexb_hex": au.hex()})
            keyframes, last = keyframes + 1, event[1]
        elif event[0] == "use_slot":
            active = event[1]
            packets.append({"type": "use_slot", "slot": active})
        elif event[0] in ("motion", "resync"):
            resync = event[0] == "resync"
            if resync:
                encoder.reset()
            _, decoded = encoder.encode(event[2], mask_threshold=mask_threshold)
            packets.append({"type": event[0], "frame_index": event[1],
                            **({"reference_frame": slots[active]} if slotted or resync else {}),
                            "symbols": {k: v.tolist() for k, v in decoded.items()}})
            motions, last = motions + 1, event[1]
        elif event[0] == "note":  # the UTF-8 JSON text of the body, as the reference encoder writes it
            packets.append({"type": "note", "text": NotePacket.of(event[1]).body.decode()})
        else:
            packets.append({"type": "unknown", "packet_type": event[1], "body_hex": event[2].hex()})
    end = {"type": "end", "frame_count": last + 1, "keyframe_count": keyframes, "motion_count": motions}
    if end_extension:
        end["extension_hex"] = end_extension.hex()
    packets.append(end)
    desc = {"name": name, "description": description, "mask_threshold": mask_threshold,
            "header": _header_json(header, minor, extension), "packets": packets}
    data = encode_vector(desc)
    _annotate(desc, data)
    return desc


def _annotate(desc: dict, data: bytes) -> None:
    """Add offsets, sizes, payloads and END offset as a reader sees them; check they agree."""
    parser = PacketParser()
    records = parser.feed_records(data)
    parser.close()
    assert len(records) == len(desc["packets"]), desc["name"]
    for p, r in zip(desc["packets"], records):
        p["offset"], p["size"] = r.offset, r.size
        if p["type"] in ("motion", "resync"):
            p["payload_hex"] = r.packet.payload.hex()
        if p["type"] == "end":
            p["end_offset"] = r.packet.end_offset
    desc["header_size"] = parser.header_size
    desc["file_size"] = len(data)
    desc["file_sha256"] = hashlib.sha256(data).hexdigest()


def _ints(header: StreamHeader, rows: dict[str, list]) -> dict[str, np.ndarray]:
    return {g.name: np.array(rows[g.name], dtype=np.int32).reshape(g.count, g.dims) for g in header.groups}


def _trace_events(header: StreamHeader, frames: range, keyframes: set[int], seed: int, skip: set[int] = frozenset()):
    motion = trace(header.kind, max(frames) + 1, header.num_keypoints, seed=seed)
    return [("keyframe", t) if t in keyframes else ("motion", t, quantize(motion[t], header))
            for t in frames if t not in skip]


def _plan_events(plan: list, motion: dict) -> list:
    """Events of a plan: a frame index is a MOTION packet, ("resync", index) a RESYNC, other tuples as they are."""
    return [("resync", e[1], motion[e[1]]) if isinstance(e, tuple) and e[0] == "resync"
            else e if isinstance(e, tuple) else ("motion", e, motion[e]) for e in plan]


def build() -> dict[str, dict]:
    """Every conformance vector's JSON description."""
    fv2v, fomm = MotionKind.FV2V, MotionKind.FOMM
    out = {}

    small = tuple(GroupParams(p.step, 4, p.decay, 4096, p.mask_freq) for p in default_params(fv2v))
    tiny = default_header(fv2v, 64, 64, 25, MODEL_ID, num_keypoints=2, frame_count=3, params=small)
    out["tiny"] = describe("tiny", "fv2v, K=2, radius 4: one keyframe and two motion packets (spec §10 walks "
                           "through it byte by byte)", tiny, [
        ("keyframe", 0),
        ("motion", 1, _ints(tiny, {"rotation": [3, -1, 0], "translation": [0, 1, 0],
                                   "expression": [1, 0, -2, 0, 0, 0]})),
        ("motion", 2, _ints(tiny, {"rotation": [4, -1, 0], "translation": [0, 1, 0],
                                   "expression": [1, 0, -2, 0, 0, 1]})),
    ])

    h = default_header(fv2v, 256, 256, 25, MODEL_ID, frame_count=12)
    out["fv2v_single_keyframe"] = describe("fv2v_single_keyframe", "fv2v, K=20, default parameters: one keyframe "
                                           "then 11 motion packets of a synthetic trace", h,
                                           _trace_events(h, range(12), {0}, seed=1))

    h = default_header(fv2v, 512, 512, 25, MODEL_ID, frame_count=16)
    out["fv2v_multi_keyframe"] = describe("fv2v_multi_keyframe", "fv2v, K=20: keyframes at 0 and 8 (the motion "
                                          "state resets), frame 5 not sent (index delta 2)", h,
                                          _trace_events(h, range(16), {0, 8}, seed=2, skip={5}))

    escape_params = tuple(GroupParams(p.step, 2, p.decay, 20000, p.mask_freq) for p in default_params(fv2v))
    h = default_header(fv2v, 256, 256, 25, MODEL_ID, num_keypoints=4, frame_count=6, params=escape_params)
    events = _trace_events(h, range(6), {0}, seed=3)
    events[2][2]["rotation"][0] = [QUANT_MAX, -QUANT_MAX, 3]
    events[3][2]["rotation"][0] = [-QUANT_MAX, QUANT_MAX, -3]
    events[4][2]["expression"][1] = [1000, -70000, 0]
    out["fv2v_escapes"] = describe("fv2v_escapes", "fv2v, K=4, radius 2: escapes, including residuals of "
                                   "±(2^31-2) between ±QUANT_MAX", h, events)

    h = default_header(fv2v, 256, 256, 25, MODEL_ID, num_keypoints=8, frame_count=10)
    events = _trace_events(h, range(10), {0}, seed=4)
    for _, t, ints in events[1:]:
        ints["expression"][4:] = 7  # half of the keypoints never move: their rows are masked off
    out["fv2v_masked"] = describe("fv2v_masked", "fv2v, K=8, mask_threshold 1: static and slowly moving "
                                  "keypoints are not sent", h, events, mask_threshold=1)

    h = default_header(fomm, 256, 256, (30000, 1001), MODEL_ID, frame_count=10)
    out["fomm"] = describe("fomm", "fomm, K=10 keypoints and Jacobians at 30000/1001 fps", h,
                           _trace_events(h, range(10), {0}, seed=5))

    h = default_header(fv2v, 256, 256, 25, MODEL_ID, num_keypoints=6, frame_count=0)
    events = _trace_events(h, range(7), {0, 4}, seed=6)
    events.insert(2, ("unknown", 0x40, b"a future packet type"))
    out["live_future_minor"] = describe("live_future_minor", "live stream (frame_count 0) written by a future "
                                        "version 1.1: extra header bytes, an unknown packet type 0x40 and an "
                                        "extra END field, all of which a v1.0 decoder skips", h, events,
                                        minor=1, extension=b"\x01\x02\x03", end_extension=b"\x07")

    h = default_header(fv2v, 256, 256, 25, MODEL_ID, num_keypoints=4, frame_count=8)
    events = _trace_events(h, range(8), {0, 5}, seed=9)
    events.insert(5, ("note", {"keyframe_reason": "quality"}))
    events.insert(0, ("note", {"keyframe_reason": "first"}))
    events.insert(0, ("note", {"writer": "fvc 0.1.0", "preset": "medium", "source": {"width": 1280, "height": 720},
                               "crop": [412, 92, 512], "comment": "déjà vu: NOTE text is UTF-8"}))
    out["fv2v_notes"] = describe("fv2v_notes", "version 1.1 as the reference encoder writes it: a NOTE after the "
                                 "header (writer, preset, source, crop) and a NOTE with the keyframe_reason before "
                                 "each KEYFRAME; a 1.0 decoder skips them as unknown, and the integers are the "
                                 "same", h, events, minor=NOTE_MINOR)

    h = default_header(fv2v, 256, 256, 25, MODEL_ID, num_keypoints=4, frame_count=14, ref_slots=3)
    motion = {t: ints for _, t, ints in _trace_events(h, range(14), {0}, seed=7)[1:]}
    plan = [("keyframe", 0, 0), 1, 2, ("keyframe", 3, 1), 4, ("use_slot", 0), 5, 6, ("keyframe", 7, 2), 8,
            ("use_slot", 1), 9, ("keyframe", 10, 0), 11, ("use_slot", 2), 12, ("use_slot", 0), 13]
    out["fv2v_slots"] = describe("fv2v_slots", "version 2.0, 3 reference slots: keyframes fill slots 0, 1, 2 and "
                                 "then slot 0 again; USE_SLOT switches back to older keyframes and leaves the "
                                 "motion state as it is", h,
                                 [e if isinstance(e, tuple) else ("motion", e, motion[e]) for e in plan])

    h = default_header(fv2v, 256, 256, 25, MODEL_ID, num_keypoints=4, frame_count=12, ref_slots=2,
                       predicted_keyframes=True)
    motion = {t: ints for _, t, ints in _trace_events(h, range(12), {0}, seed=8)[1:]}
    plan = [("keyframe", 0, 0), 1, 2, ("keyframe", 3, 1, "predicted"), 4, ("keyframe", 5, 0, "predicted"), 6,
            ("use_slot", 1), 7, ("keyframe", 8, 1), 9, ("keyframe", 10, 0, "predicted"), 11]
    out["fv2v_predicted"] = describe("fv2v_predicted", "version 3.0, 2 reference slots: an intra keyframe, two "
                                     "predicted ones (slices of NAL type 1), a USE_SLOT, a second intra keyframe "
                                     "and a keyframe predicted after it", h,
                                     [e if isinstance(e, tuple) else ("motion", e, motion[e]) for e in plan])

    h = default_header(fv2v, 256, 256, 25, MODEL_ID, num_keypoints=4, frame_count=14, ref_slots=2, resync=True)
    motion = {t: ints for _, t, ints in _trace_events(h, range(14), {0}, seed=10)[1:]}
    plan = [("keyframe", 0, 0), ("resync", 1), 2, 3, ("resync", 4), 5, ("keyframe", 6, 1, "predicted"), ("resync", 7),
            8, ("use_slot", 0), 9, ("resync", 10), 11, 13]
    out["fv2v_resync"] = describe("fv2v_resync", "version 4.0, 2 reference slots: RESYNC packets (coded against "
                                  "zeros, naming the keyframe of the active slot) after each keyframe and every "
                                  "third motion packet, one after a USE_SLOT naming the older keyframe, a predicted "
                                  "keyframe, and frame 12 not sent",
                                  h, _plan_events(plan, motion))

    h = default_header(fv2v, 256, 256, 25, MODEL_ID, num_keypoints=4, frame_count=12, ref_slots=2,
                       keyframe_codec=KeyframeCodec.HEVC)
    motion = {t: ints for _, t, ints in _trace_events(h, range(12), {0}, seed=11)[1:]}
    plan = [("keyframe", 0, 0), 1, 2, ("keyframe", 3, 1, "predicted"), 4, ("use_slot", 0), ("resync", 5), 6,
            ("keyframe", 7, 0, "predicted"), 8, ("keyframe", 9, 1), 10, ("keyframe", 11, 0, "predicted")]
    out["hevc_predicted"] = describe("hevc_predicted", "version 5.0, keyframe_codec 1 (HEVC), 2 reference slots: an "
                                     "IDR keyframe (VPS, SPS, PPS, IDR_N_LP slice), predicted ones (a TRAIL_R "
                                     "slice each), a USE_SLOT and a RESYNC naming the older keyframe, a second IDR "
                                     "and a keyframe predicted after it",
                                     h, _plan_events(plan, motion))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description="Generate spec/vectors/ (refuses to change existing files without --force)")
    ap.add_argument("--check", action="store_true", help="only report whether the files are up to date")
    ap.add_argument("--force", action="store_true", help="overwrite vectors whose content changed")
    args = ap.parse_args()
    VECTORS.mkdir(exist_ok=True)
    stale = []
    for name, desc in build().items():
        files = {VECTORS / f"{name}.fvc": encode_vector(desc),
                 VECTORS / f"{name}.json": (json.dumps(desc, indent=1) + "\n").encode()}
        for path, content in files.items():
            if path.exists() and path.read_bytes() == content:
                continue
            stale.append(path)
            if args.check:
                continue
            if path.exists() and not args.force:
                print(f"{path} differs; rerun with --force to overwrite", file=sys.stderr)
                continue
            path.write_bytes(content)
    for path in stale:
        print(("stale: " if args.check else "written: ") + str(path.relative_to(VECTORS.parent.parent)))
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
