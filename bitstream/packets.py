"""Packet types, their bodies and the framing type | length | body | CRC-32 (spec §4-5)."""
from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from enum import IntEnum

from .annexb import NalSyntax
from .avc import AVC
from .constants import (FVC_VERSION_MAJOR, MAX_END_BYTES, MAX_KEYFRAME_BYTES, MAX_MOTION_BYTES, MAX_NOTE_BYTES,
                        MAX_NOTE_DEPTH, MAX_UNKNOWN_PACKET_BYTES, NOTE_MINOR, RESYNC_MAJOR, SLOTS_MAJOR, KeyframeCodec)
from .hevc import HEVC
from .errors import BitstreamError, SymbolError, TruncatedStreamError
from .varint import decode_varint, encode_varint

CRC = struct.Struct("<I")
MAX_FRAME_INDEX = 2**32 - 2  # so that frame_count = last index + 1 still fits a varint
# The NOTE member that describes the next KEYFRAME rather than the whole stream (spec §4.4).
KEYFRAME_REASON = "keyframe_reason"


class PacketType(IntEnum):
    """Packet type byte; 0 is invalid, types a stream's version does not define are skipped."""

    KEYFRAME = 1
    MOTION = 2
    END = 3
    NOTE = 4  # from version 1.1 on
    USE_SLOT = 5  # from version 2.0 on
    RESYNC = 6  # from version 4.0 on: a MOTION packet coded against zeros, naming the keyframe it renders from


# The first version that defines each type; a later version defines every type an earlier one does.
_INTRODUCED = {PacketType.KEYFRAME: (FVC_VERSION_MAJOR, 0), PacketType.MOTION: (FVC_VERSION_MAJOR, 0),
               PacketType.END: (FVC_VERSION_MAJOR, 0), PacketType.NOTE: (FVC_VERSION_MAJOR, NOTE_MINOR),
               PacketType.USE_SLOT: (SLOTS_MAJOR, 0), PacketType.RESYNC: (RESYNC_MAJOR, 0)}


def introduced(packet_type: int) -> tuple[int, int]:
    """The first version that defines `packet_type`, a KEYFRAME ... RESYNC type."""
    return _INTRODUCED[packet_type]


def defines(packet_type: int, version: tuple[int, int]) -> bool:
    """Whether a stream of `version` defines `packet_type` (the others are unknown and skipped)."""
    return packet_type in _INTRODUCED and tuple(version) >= _INTRODUCED[packet_type]


# The NAL unit rules of each keyframe codec (spec §4.1, §5.9).
SYNTAX: dict[KeyframeCodec, NalSyntax] = {KeyframeCodec.H264: AVC, KeyframeCodec.HEVC: HEVC}


@dataclass(frozen=True)
class KeyframePacket:
    """One Annex-B access unit holding one IDR picture (3.x: or a predicted one), for reference `slot`, coded
    with `codec`, the stream header's keyframe_codec (5.x; H.264 before).

    It fills the slot (always 0 in 1.x), makes it the active one and resets the motion state (spec §4.1, §5.6).
    """

    frame_index: int
    annexb: bytes
    slot: int = 0
    codec: KeyframeCodec = KeyframeCodec.H264

    @property
    def intra(self) -> bool:
        """Whether the picture is an IDR one, which its codec decodes without any earlier keyframe (spec §5.7)."""
        return is_intra(self.annexb, self.codec)


@dataclass(frozen=True)
class MotionPacket:
    """Entropy-coded motion symbols of one frame (spec §7).

    With `keyframe` set it is a RESYNC packet (version 4.0, spec §4.6): its residuals are against zeros instead of
    the packet before it, and it names the frame index of the keyframe in the active slot, the picture it is
    rendered from. A receiver that lost packets decodes it without any of them.
    """

    frame_index: int
    payload: bytes
    keyframe: int | None = None

    @property
    def resync(self) -> bool:
        return self.keyframe is not None


@dataclass(frozen=True)
class EndPacket:
    """Totals a reader checks against what it saw; `end_offset` is where END starts."""

    frame_count: int
    keyframe_count: int
    motion_count: int
    end_offset: int


@dataclass(frozen=True)
class NotePacket:
    """Informative metadata (version 1.1, spec §4.4): a UTF-8 JSON object that nothing in decoding reads."""

    body: bytes

    @classmethod
    def of(cls, fields: dict) -> NotePacket:
        """The NOTE holding `fields`; SymbolError if they are not a JSON object of at most 4096 bytes."""
        if not isinstance(fields, dict):
            raise SymbolError(f"a note is a JSON object, not {type(fields).__name__}")
        try:
            body = json.dumps(fields, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
        except (TypeError, ValueError) as exc:
            raise SymbolError(f"note is not JSON: {exc}") from None
        if len(body) > MAX_NOTE_BYTES:
            raise SymbolError(f"note of {len(body)} bytes exceeds the limit {MAX_NOTE_BYTES}")
        problem = note_problem(body)
        if problem:
            raise SymbolError(problem)
        return cls(body)

    @property
    def fields(self) -> dict:
        return json.loads(self.body)


class ReasonNotes:
    """The keyframe_reason NOTEs a writer needs: one before a keyframe whose reason differs from the last one given,
    since a reason holds for the keyframes after it (spec §4.4); every coded picture of a constant-quality stream
    would otherwise carry ~31 bytes of the same text."""

    def __init__(self):
        self._last: str | None = None

    def before(self, reason: str) -> NotePacket | None:
        """The NOTE to write before a keyframe coded for `reason`, if one is needed."""
        if reason == self._last:
            return None
        self._last = reason
        return NotePacket.of({KEYFRAME_REASON: reason})

    def reset(self) -> None:
        """The next keyframe gets its NOTE whatever its reason (a receiver may join there)."""
        self._last = None


@dataclass(frozen=True)
class UseSlotPacket:
    """Version 2.x: the MOTION packets that follow render from the keyframe in `slot` (spec §4.5)."""

    slot: int


@dataclass(frozen=True)
class UnknownPacket:
    """A packet of a type this version does not know; readers skip it."""

    type: int
    body: bytes


Packet = KeyframePacket | MotionPacket | EndPacket | NotePacket | UseSlotPacket | UnknownPacket

BODY_CAPS = {PacketType.KEYFRAME: MAX_KEYFRAME_BYTES + 5, PacketType.MOTION: MAX_MOTION_BYTES + 5,
             PacketType.END: MAX_END_BYTES, PacketType.NOTE: MAX_NOTE_BYTES, PacketType.USE_SLOT: 1,
             PacketType.RESYNC: MAX_MOTION_BYTES + 10}


def body_cap(packet_type: int, version: tuple[int, int]) -> int:
    """Largest body length a reader of a `version` stream accepts for `packet_type` (checked before reading it)."""
    return BODY_CAPS[packet_type] if defines(packet_type, version) else MAX_UNKNOWN_PACKET_BYTES


def is_intra(au: bytes, codec: KeyframeCodec = KeyframeCodec.H264) -> bool:
    """Whether the access unit `au` holds an IDR slice (H.264 NAL type 5; HEVC 19 or 20)."""
    return SYNTAX[codec].is_intra(au)


def annexb_problem(au: bytes, predicted: bool = False, codec: KeyframeCodec = KeyframeCodec.H264) -> str | None:
    """Why `au` is not a keyframe access unit of `codec` (spec §4.1, §5.9; `predicted`: of a 3.x or later stream),
    or None if it is."""
    return SYNTAX[codec].problem(au, predicted)


def _unique_members(pairs: list) -> dict:
    names = [name for name, _ in pairs]
    if len(set(names)) < len(names):
        raise ValueError("repeated member name")
    return dict(pairs)


def _deeper_than(value, depth: int) -> bool:
    """Whether arrays and objects nest more than `depth` levels deep in `value`."""
    if isinstance(value, dict):
        value = list(value.values())
    if not isinstance(value, list):
        return False
    return depth == 0 or any(_deeper_than(v, depth - 1) for v in value)


def note_problem(body: bytes) -> str | None:
    """Why `body` is not a NOTE body (spec §4.4: a UTF-8 JSON object, names unique, nesting <= 16), or None."""
    try:
        value = json.loads(body.decode("utf-8"), object_pairs_hook=_unique_members)
    except RecursionError:
        return f"note nests deeper than {MAX_NOTE_DEPTH}"
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
        return f"note is not a UTF-8 JSON object ({exc})"
    if not isinstance(value, dict):
        return "note is not a UTF-8 JSON object (its value is not an object)"
    if _deeper_than(value, MAX_NOTE_DEPTH):
        return f"note nests deeper than {MAX_NOTE_DEPTH}"
    try:
        # Python's parser lets NaN, Infinity, numbers beyond a double and lone surrogate escapes through.
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except ValueError as exc:  # UnicodeEncodeError included
        return f"note is not a UTF-8 JSON object ({exc})"
    return None


def packet_type_of(packet: Packet) -> int:
    if isinstance(packet, KeyframePacket):
        return PacketType.KEYFRAME
    if isinstance(packet, MotionPacket):
        return PacketType.RESYNC if packet.resync else PacketType.MOTION
    if isinstance(packet, EndPacket):
        return PacketType.END
    if isinstance(packet, NotePacket):
        return PacketType.NOTE
    if isinstance(packet, UseSlotPacket):
        return PacketType.USE_SLOT
    return packet.type


def encode_body(packet: Packet, last_index: int, version: tuple[int, int]) -> bytes:
    """Body bytes in a `version` stream; MOTION and RESYNC store their frame index as the delta from `last_index`,
    RESYNC its keyframe's as the distance back from its own.

    A KEYFRAME's slot is written only in 2.x (a 1.x KEYFRAME always fills slot 0).
    """
    if isinstance(packet, KeyframePacket):
        slot = bytes([packet.slot]) if version[0] >= SLOTS_MAJOR else b""
        return slot + encode_varint(packet.frame_index) + bytes(packet.annexb)
    if isinstance(packet, UseSlotPacket):
        return bytes([packet.slot])
    if isinstance(packet, MotionPacket):
        distance = encode_varint(packet.frame_index - packet.keyframe) if packet.resync else b""
        return encode_varint(packet.frame_index - last_index) + distance + bytes(packet.payload)
    if isinstance(packet, EndPacket):
        return b"".join(encode_varint(v) for v in (packet.frame_count, packet.keyframe_count,
                                                    packet.motion_count, packet.end_offset))
    return bytes(packet.body)  # NOTE and unknown types


def frame(packet_type: int, body: bytes) -> bytes:
    """type | varint length | body | CRC-32 (zlib polynomial) of everything before it."""
    head = bytes([packet_type]) + encode_varint(len(body)) + body
    return head + CRC.pack(zlib.crc32(head))


def decode_body(packet_type: int, body: bytes, last_index: int, version: tuple[int, int],
                codec: KeyframeCodec = KeyframeCodec.H264) -> Packet:
    """The packet held by `body` in a `version` stream whose keyframes are coded with `codec`; errors have no offset
    (the parser adds it)."""
    slotted = version[0] >= SLOTS_MAJOR
    if slotted and packet_type in (PacketType.KEYFRAME, PacketType.USE_SLOT) and not body:
        raise BitstreamError("packet body too short (no slot byte)", None)
    try:
        if packet_type == PacketType.KEYFRAME:
            index, pos = decode_varint(body, int(slotted))
            return KeyframePacket(index, bytes(body[pos:]), body[0] if slotted else 0, codec)
        if packet_type == PacketType.MOTION or (packet_type == PacketType.RESYNC and defines(packet_type, version)):
            delta, pos = decode_varint(body, 0)
            if delta == 0:
                raise BitstreamError("motion frame index delta is 0 (indices must increase)", None)
            if packet_type == PacketType.MOTION:
                return MotionPacket(last_index + delta, bytes(body[pos:]))
            distance, pos = decode_varint(body, pos)
            if not 1 <= distance <= last_index + delta:
                raise BitstreamError(f"RESYNC keyframe distance {distance} outside 1..{last_index + delta} "
                                     "(its keyframe comes before it, at frame 0 or later)", None)
            return MotionPacket(last_index + delta, bytes(body[pos:]), last_index + delta - distance)
        if packet_type == PacketType.END:
            values, pos = [], 0
            for _ in range(4):
                value, pos = decode_varint(body, pos)
                values.append(value)
            # Later minor versions may append fields; a v1.0 reader ignores them.
            return EndPacket(*values)
    except TruncatedStreamError as exc:
        raise BitstreamError(f"packet body too short ({exc.message})", None) from None
    if packet_type == PacketType.NOTE and defines(packet_type, version):
        return NotePacket(bytes(body))
    if packet_type == PacketType.USE_SLOT and slotted:
        return UseSlotPacket(body[0])
    return UnknownPacket(packet_type, bytes(body))
