"""Packet types, their bodies and the framing type | length | body | CRC-32 (spec §4-5)."""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

from .constants import MAX_END_BYTES, MAX_KEYFRAME_BYTES, MAX_MOTION_BYTES, MAX_UNKNOWN_PACKET_BYTES
from .errors import BitstreamError, TruncatedStreamError
from .varint import decode_varint, encode_varint

CRC = struct.Struct("<I")
MAX_FRAME_INDEX = 2**32 - 2  # so that frame_count = last index + 1 still fits a varint
IDR_NAL_TYPE = 5


class PacketType(IntEnum):
    """Packet type byte; 0 is invalid, values above END are skipped by v1 readers."""

    KEYFRAME = 1
    MOTION = 2
    END = 3


@dataclass(frozen=True)
class KeyframePacket:
    """One H.264 Annex-B access unit holding a single IDR picture; resets the motion state."""

    frame_index: int
    annexb: bytes


@dataclass(frozen=True)
class MotionPacket:
    """Entropy-coded motion symbols of one frame (spec §7)."""

    frame_index: int
    payload: bytes


@dataclass(frozen=True)
class EndPacket:
    """Totals a reader checks against what it saw; `end_offset` is where END starts."""

    frame_count: int
    keyframe_count: int
    motion_count: int
    end_offset: int


@dataclass(frozen=True)
class UnknownPacket:
    """A packet of a type this version does not know; readers skip it."""

    type: int
    body: bytes


Packet = KeyframePacket | MotionPacket | EndPacket | UnknownPacket

BODY_CAPS = {PacketType.KEYFRAME: MAX_KEYFRAME_BYTES + 5, PacketType.MOTION: MAX_MOTION_BYTES + 5,
             PacketType.END: MAX_END_BYTES}


def body_cap(packet_type: int) -> int:
    """Largest body length a reader accepts for `packet_type` (checked before reading it)."""
    return BODY_CAPS.get(packet_type, MAX_UNKNOWN_PACKET_BYTES)


def annexb_problem(au: bytes) -> str | None:
    """Why `au` is not an Annex-B access unit with an IDR slice, or None if it is."""
    if not (au.startswith(b"\0\0\1") or au.startswith(b"\0\0\0\1")):
        return "keyframe does not start with an Annex-B start code"
    pos = 0
    while (pos := au.find(b"\0\0\1", pos)) >= 0:
        pos += 3
        if pos < len(au) and au[pos] & 0x1F == IDR_NAL_TYPE:
            return None
    return "keyframe has no IDR slice (NAL type 5)"


def packet_type_of(packet: Packet) -> int:
    if isinstance(packet, KeyframePacket):
        return PacketType.KEYFRAME
    if isinstance(packet, MotionPacket):
        return PacketType.MOTION
    if isinstance(packet, EndPacket):
        return PacketType.END
    return packet.type


def encode_body(packet: Packet, last_index: int) -> bytes:
    """Body bytes; MOTION stores its frame index as the delta from `last_index`."""
    if isinstance(packet, KeyframePacket):
        return encode_varint(packet.frame_index) + bytes(packet.annexb)
    if isinstance(packet, MotionPacket):
        return encode_varint(packet.frame_index - last_index) + bytes(packet.payload)
    if isinstance(packet, EndPacket):
        return b"".join(encode_varint(v) for v in (packet.frame_count, packet.keyframe_count,
                                                    packet.motion_count, packet.end_offset))
    return bytes(packet.body)


def frame(packet_type: int, body: bytes) -> bytes:
    """type | varint length | body | CRC-32 (zlib polynomial) of everything before it."""
    head = bytes([packet_type]) + encode_varint(len(body)) + body
    return head + CRC.pack(zlib.crc32(head))


def decode_body(packet_type: int, body: bytes, last_index: int, offset: int) -> Packet:
    """The packet held by `body`; `offset` is the body's position in the stream."""
    try:
        if packet_type == PacketType.KEYFRAME:
            index, pos = decode_varint(body, 0, offset)
            return KeyframePacket(index, bytes(body[pos:]))
        if packet_type == PacketType.MOTION:
            delta, pos = decode_varint(body, 0, offset)
            if delta == 0:
                raise BitstreamError("motion frame index delta is 0 (indices must increase)", offset)
            return MotionPacket(last_index + delta, bytes(body[pos:]))
        if packet_type == PacketType.END:
            values, pos = [], 0
            for _ in range(4):
                value, pos = decode_varint(body, pos, offset)
                values.append(value)
            # Later minor versions may append fields; a v1.0 reader ignores them.
            return EndPacket(*values)
    except TruncatedStreamError as exc:
        raise BitstreamError(f"packet body too short ({exc.message})", exc.offset) from None
    return UnknownPacket(packet_type, bytes(body))
