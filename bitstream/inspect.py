"""`summarize`: what `fvc info` prints about a stream."""
from __future__ import annotations

import os
from typing import BinaryIO

import numpy as np

from .packets import PacketType, packet_type_of
from .reader import StreamReader

_TYPE_NAMES = {PacketType.KEYFRAME: "keyframe", PacketType.MOTION: "motion", PacketType.END: "end"}


def summarize(source: bytes | bytearray | str | os.PathLike | BinaryIO) -> dict:
    """Frames, keyframes, bytes by packet type, bits per pixel, kbps and model id of a whole stream."""
    with StreamReader(source) as reader:
        header = reader.header
        by_type = {"header": reader.parser.header_size, "keyframe": 0, "motion": 0, "end": 0, "unknown": 0}
        count = {"keyframe": 0, "motion": 0, "end": 0, "unknown": 0}
        for record in reader.records():
            name = _TYPE_NAMES.get(packet_type_of(record.packet), "unknown")
            by_type[name] += record.size
            count[name] += 1
        version = reader.parser.version
    total = sum(by_type.values())
    frames = reader.parser.sequence.frame_count
    seconds = frames / float(header.fps) if frames else 0.0
    return {
        "version": f"{version[0]}.{version[1]}",
        "width": header.width,
        "height": header.height,
        "fps": f"{header.fps_num}/{header.fps_den}",
        "motion_kind": header.kind.name.lower(),
        "num_keypoints": header.num_keypoints,
        "model_id": header.model_id.hex(),
        "frames": frames,
        "keyframes": count["keyframe"],
        "motion_packets": count["motion"],
        "unknown_packets": count["unknown"],
        "duration_s": seconds,
        "bytes": total,
        "bytes_by_type": by_type,
        "motion_bytes_per_packet": by_type["motion"] / count["motion"] if count["motion"] else 0.0,
        "bits_per_pixel": total * 8 / (header.width * header.height * frames) if frames else 0.0,
        "kbps": total * 8 / seconds / 1000 if seconds else 0.0,
        "groups": {g.name: {"step": float(str(np.float32(p.step))), "radius": p.radius, "decay": p.decay,
                            "escape_freq": p.escape_freq, "mask_freq": p.mask_freq}
                   for g, p in zip(header.groups, header.params)},
    }
