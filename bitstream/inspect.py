"""`summarize`: what `fvc info` prints about a stream."""
from __future__ import annotations

import os
from typing import BinaryIO

import numpy as np

from .avc import slice_qp
from .constants import KeyframeCodec
from .errors import BitstreamError
from .packets import KEYFRAME_REASON, EndPacket, KeyframePacket, MotionPacket, NotePacket, UnknownPacket, UseSlotPacket
from .reader import StreamReader

_TYPE_NAMES = {KeyframePacket: "keyframe", MotionPacket: "motion", NotePacket: "note", UseSlotPacket: "use_slot",
               EndPacket: "end", UnknownPacket: "unknown"}


def summarize(source: bytes | bytearray | str | os.PathLike | BinaryIO, packets: bool = False) -> dict:
    """Frames, keyframes, bytes by packet type, rate, model id, reference slots and NOTE members of a stream.

    A stream damaged after its header is summarised up to the damage, which "error" names;
    `packets` adds every packet's index, type, frame, offset and size. With several reference
    slots, keyframes and listed packets also name their slot; in a 3.x stream keyframes say whether they
    are predicted (their QP is then not read: only IDR slice headers are, and only H.264 ones; "keyframe_codec" says
    which codec, 5.x's header field). RESYNC packets (4.x) count as motion
    packets, and "resync_packets" and "resync_bytes" say how many of them, and their bytes, were RESYNC.
    """
    with StreamReader(source) as reader:
        header = reader.header
        slotted = header.ref_slots > 1  # with one slot, always 0, the listings stay as in 1.x
        h264 = header.keyframe_codec == KeyframeCodec.H264
        by_type = {"header": reader.parser.header_size, **{name: 0 for name in _TYPE_NAMES.values()}}
        count = {name: 0 for name in _TYPE_NAMES.values()}
        notes, keyframes, listing, reason, error = {}, [], [], None, None
        resync = {"packets": 0, "bytes": 0}  # RESYNC packets (4.x), counted among the motion packets too
        try:
            for record in reader.records():
                packet = record.packet
                name = _TYPE_NAMES[type(packet)]
                by_type[name] += record.size
                count[name] += 1
                if isinstance(packet, NotePacket):
                    fields = packet.fields
                    reason = fields.pop(KEYFRAME_REASON, reason)
                    notes.update(fields)
                elif isinstance(packet, KeyframePacket):
                    keyframes.append({"frame": packet.frame_index, "offset": record.offset, "bytes": record.size,
                                      "qp": slice_qp(packet.annexb) if h264 else None, "reason": reason,
                                      **({"slot": packet.slot} if slotted else {}),
                                      **({"predicted": not packet.intra} if header.predicted_keyframes else {})})
                elif isinstance(packet, MotionPacket) and packet.resync:
                    resync["packets"] += 1
                    resync["bytes"] += record.size
                if packets:
                    listed = "resync" if isinstance(packet, MotionPacket) and packet.resync else name
                    listing.append({"index": record.index, "type": listed,
                                    "frame": getattr(packet, "frame_index", None),
                                    "offset": record.offset, "bytes": record.size,
                                    **({"slot": packet.slot} if slotted and hasattr(packet, "slot") else {})})
        except BitstreamError as exc:
            error = {"message": exc.message, "offset": exc.offset, "packet": exc.packet}
        version = reader.parser.version
        frames = reader.parser.sequence.frame_count
    total = sum(by_type.values())
    seconds = frames / float(header.fps) if frames else 0.0
    summary = {
        "version": f"{version[0]}.{version[1]}",
        "width": header.width,
        "height": header.height,
        "fps": f"{header.fps_num}/{header.fps_den}",
        "motion_kind": header.kind.name.lower(),
        "num_keypoints": header.num_keypoints,
        "model_id": header.model_id.hex(),
        "keyframe_codec": header.keyframe_codec.name.lower(),
        "frames": frames,
        "keyframes": count["keyframe"],
        "motion_packets": count["motion"],
        "resync_packets": resync["packets"],
        "resync_bytes": resync["bytes"],
        "note_packets": count["note"],
        "unknown_packets": count["unknown"],
        "ref_slots": header.ref_slots,
        "slot_switches": count["use_slot"],
        "duration_s": seconds,
        "bytes": total,
        "bytes_by_type": by_type,
        "motion_bytes_per_packet": by_type["motion"] / count["motion"] if count["motion"] else 0.0,
        "bits_per_pixel": total * 8 / (header.width * header.height * frames) if frames else 0.0,
        "kbps": total * 8 / seconds / 1000 if seconds else 0.0,
        "groups": {g.name: {"step": float(str(np.float32(p.step))), "radius": p.radius, "decay": p.decay,
                            "escape_freq": p.escape_freq, "mask_freq": p.mask_freq}
                   for g, p in zip(header.groups, header.params)},
        "notes": notes,
        "keyframe_list": keyframes,
        "error": error,
    }
    if packets:
        summary["packets"] = listing
    return summary
