"""The datagram layout of spec §12: an RTP fixed header, one payload-header byte, a fragment of a unit.

A unit is the stream header or one .fvc packet. Nothing here raises on received bytes: `parse_datagram`
returns a drop reason instead. The packetizer, which checks what it is given as the writer does, may raise.
"""
from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass

from ..constants import FVC_VERSION_MINOR, MAX_KEYFRAME_BYTES
from ..errors import BitstreamError
from ..header import StreamHeader, parse_header
from ..packets import (KeyframePacket, MotionPacket, Packet, UseSlotPacket, body_cap, encode_body, frame,
                       packet_type_of)
from ..reader import StreamReader
from ..sequence import StreamSequence

RTP_VERSION = 2
RTP_HEADER = struct.Struct(">BBHII")  # V P X CC | M PT | sequence number | timestamp | SSRC (the header id)
RTP_EXTENSION = struct.Struct(">HH")  # profile-defined word, length in 32-bit words (RFC 3550 §5.3.1)
MIN_DYNAMIC_PAYLOAD_TYPE = 96
DEFAULT_PAYLOAD_TYPE = 96  # dynamic (RFC 3551): the session's signalling names it, the default here
DEFAULT_MAX_DATAGRAM = 1200  # UDP payload bytes, RTP header included: fits IPv6's 1280-byte minimum MTU
MAX_UDP_PAYLOAD = 65507
SEQ_MODULUS = 1 << 16

# The payload header byte: S E V V R R K K.
START = 0x80  # the datagram holds the first fragment of its unit
END = 0x40  # ... the last fragment (S and E: the whole unit)
FORMAT_VERSION_SHIFT = 4  # 2 bits, 0 in this document
RESERVED_BITS = 0x0C  # written 0, ignored by receivers
KIND_MASK = 0x03
UNIT_PACKET = 0  # one .fvc packet, type byte to CRC
UNIT_HEADER = 1  # the stream header, magic to header CRC
UNIT_KINDS = (UNIT_PACKET, UNIT_HEADER)
PAYLOAD_HEADER_BYTES = 1

# Largest units a receiver reassembles: a header (u16 body length) and a packet (KEYFRAME's body cap, framed).
MAX_HEADER_UNIT = 12 + 65535 + 4
MAX_PACKET_UNIT = 1 + 5 + MAX_KEYFRAME_BYTES + 5 + 4

# Why a datagram is dropped (spec §12.6); every dropped datagram is counted under exactly one.
TRUNCATED = "truncated"  # ends inside the RTP header, its CSRC list or extension, or the payload header
BAD_VERSION = "bad_version"  # RTP version not 2, or payload format version not 0
BAD_LENGTH = "bad_length"  # padding count impossible, or no fragment byte
UNKNOWN_KIND = "unknown_kind"  # unit kind 2 or 3
PAYLOAD_TYPE = "payload_type"  # not the session's payload type
HEADER_ID = "header_id"  # SSRC is not the header id the receiver follows
NO_HEADER = "no_header"  # the receiver holds no stream header (yet) to read it with
DUPLICATE = "duplicate"  # a sequence number already received
TOO_OLD = "too_old"  # behind the window: declared lost already, or sent before the receiver's first datagram
SEQ_JUMP = "seq_jump"  # far outside the window (RFC 3550 A.1; two in a row restart), or an unconfirmed one replaced
INCOMPLETE = "incomplete"  # part of a unit some fragment of which is missing
TOO_LARGE = "too_large"  # part of a unit longer than any header or packet
BAD_HEADER = "bad_header"  # a header unit that does not hash to its SSRC, does not parse, or differs
BAD_CRC = "bad_crc"  # a packet unit whose CRC-32 fails
BAD_PACKET = "bad_packet"  # a packet unit that is not one whole valid .fvc packet
FRAME_INDEX = "frame_index"  # a KEYFRAME or MOTION whose frame index disagrees with the timestamp
DROP_REASONS = (TRUNCATED, BAD_VERSION, BAD_LENGTH, UNKNOWN_KIND, PAYLOAD_TYPE, HEADER_ID, NO_HEADER, DUPLICATE,
                TOO_OLD, SEQ_JUMP, INCOMPLETE, TOO_LARGE, BAD_HEADER, BAD_CRC, BAD_PACKET, FRAME_INDEX)


def check_payload_type(payload_type: int) -> None:
    """Refuse a payload type outside RTP's dynamic range (RFC 3551), which RTCP's types cannot be taken for."""
    if not MIN_DYNAMIC_PAYLOAD_TYPE <= payload_type <= 127:
        raise ValueError(f"payload type {payload_type} outside the dynamic range {MIN_DYNAMIC_PAYLOAD_TYPE}..127")


def header_id(header_bytes: bytes) -> int:
    """The stream's header id: the first 4 bytes of SHA-256 of its header bytes, big-endian (spec §12.3)."""
    return int.from_bytes(hashlib.sha256(bytes(header_bytes)).digest()[:4], "big")


@dataclass(frozen=True)
class Datagram:
    """One parsed datagram: RTP fields and the payload header's, and its fragment of a unit."""

    sequence: int
    timestamp: int
    header_id: int  # the RTP SSRC
    payload_type: int
    marker: bool
    start: bool
    end: bool
    kind: int
    fragment: bytes


def build_datagram(sequence: int, timestamp: int, ssrc: int, kind: int, start: bool, end: bool, fragment: bytes,
                   payload_type: int = DEFAULT_PAYLOAD_TYPE, marker: bool = False) -> bytes:
    """The bytes of one datagram as a sender writes it: no padding, no CSRC, no header extension."""
    if not fragment:
        raise ValueError("a datagram carries at least one byte of its unit")
    if kind not in UNIT_KINDS:
        raise ValueError(f"unit kind {kind} is not defined")
    head = RTP_HEADER.pack(RTP_VERSION << 6, (marker << 7) | payload_type, sequence, timestamp, ssrc)
    return head + bytes([(START if start else 0) | (END if end else 0) | kind]) + bytes(fragment)


def parse_datagram(data: bytes | bytearray | memoryview) -> tuple[Datagram | None, str | None]:
    """(datagram, None), or (None, the drop reason) for bytes that are not one (spec §12.2). Never raises."""
    data = bytes(data)
    if len(data) < RTP_HEADER.size:
        return None, TRUNCATED
    first, second, sequence, timestamp, ssrc = RTP_HEADER.unpack_from(data, 0)
    if first >> 6 != RTP_VERSION:
        return None, BAD_VERSION
    pos = RTP_HEADER.size + 4 * (first & 0x0F)  # CSRC identifiers a mixer added: skipped
    if first & 0x10:  # header extension: skipped
        if len(data) < pos + RTP_EXTENSION.size:
            return None, TRUNCATED
        pos += RTP_EXTENSION.size + 4 * RTP_EXTENSION.unpack_from(data, pos)[1]
    end = len(data)
    if first & 0x20:  # padding: its last byte counts the padding bytes, itself included
        if end <= pos:
            return None, TRUNCATED
        padding = data[-1]
        if padding == 0 or padding > end - pos:
            return None, BAD_LENGTH
        end -= padding
    if end < pos + PAYLOAD_HEADER_BYTES:
        return None, TRUNCATED
    flags = data[pos]
    if (flags >> FORMAT_VERSION_SHIFT) & 0x03 != 0:
        return None, BAD_VERSION
    if flags & KIND_MASK not in UNIT_KINDS:
        return None, UNKNOWN_KIND
    fragment = data[pos + PAYLOAD_HEADER_BYTES:end]
    if not fragment:
        return None, BAD_LENGTH
    return Datagram(sequence, timestamp, ssrc, second & 0x7F, bool(second & 0x80), bool(flags & START),
                    bool(flags & END), flags & KIND_MASK, fragment), None


class Packetizer:
    """Turns a stream header and its packets, in stream order, into datagrams (spec §12).

    The header goes out before the first packet and again before every intra KEYFRAME that follows a
    KEYFRAME or MOTION packet, so a receiver that joined late or lost it can start at the next IDR.
    `packetize` refuses (BitstreamError) any packet a reader of the stream would refuse, as StreamWriter does,
    and then sends nothing. `first_seq` defaults to a random number, as RFC 3550 asks.
    """

    def __init__(self, header: bytes | StreamHeader, *, minor: int = FVC_VERSION_MINOR,
                 payload_type: int = DEFAULT_PAYLOAD_TYPE, max_datagram: int = DEFAULT_MAX_DATAGRAM,
                 first_seq: int | None = None):
        header_bytes = header.pack(minor) if isinstance(header, StreamHeader) else bytes(header)
        parsed, size, self.version = parse_header(header_bytes)
        if size != len(header_bytes):
            raise BitstreamError("bytes after the stream header", size)
        check_payload_type(payload_type)
        if not RTP_HEADER.size + PAYLOAD_HEADER_BYTES < max_datagram <= MAX_UDP_PAYLOAD:
            raise ValueError(f"max_datagram {max_datagram} outside {RTP_HEADER.size + 2}..{MAX_UDP_PAYLOAD}")
        if first_seq is not None and not 0 <= first_seq < SEQ_MODULUS:
            raise ValueError(f"first_seq {first_seq} outside 0..65535")
        self.header = parsed
        self.header_bytes = header_bytes
        self.header_id = header_id(header_bytes)
        self.payload_type = payload_type
        self.fragment_size = max_datagram - RTP_HEADER.size - PAYLOAD_HEADER_BYTES
        self.next_seq = int.from_bytes(os.urandom(2), "big") if first_seq is None else first_seq
        self.sequence = StreamSequence(parsed)
        self.offset = size  # stream offset of the next packet, for END's end_offset
        self.timestamp = 0  # frame index of the last KEYFRAME or MOTION packet sent
        self.datagrams = 0
        self._header_sent = False
        self._frames_since_header = False

    def _unit(self, kind: int, data: bytes, timestamp: int, marker: bool) -> list[bytes]:
        pieces = [data[i:i + self.fragment_size] for i in range(0, len(data), self.fragment_size)]
        out = []
        for i, piece in enumerate(pieces):
            last = i == len(pieces) - 1
            out.append(build_datagram(self.next_seq, timestamp, self.header_id, kind, i == 0, last, piece,
                                      self.payload_type, marker and last))
            self.next_seq = (self.next_seq + 1) % SEQ_MODULUS
        self.datagrams += len(out)
        return out

    def header_datagrams(self, timestamp: int | None = None) -> list[bytes]:
        """The stream header's datagrams, now (they take sequence numbers like any others)."""
        self._header_sent, self._frames_since_header = True, False
        return self._unit(UNIT_HEADER, self.header_bytes, self.timestamp if timestamp is None else timestamp, False)

    def packetize(self, packet: Packet, framed: bytes | None = None) -> list[bytes]:
        """The datagrams of `packet` (END included), preceded by the header's where they are due.

        `framed`: the packet's bytes as a reader found them in a stream, sent as they are (an END or a packet of
        an unknown type may hold bytes its dataclass does not keep); by default the packet is framed here.
        """
        if isinstance(packet, (KeyframePacket, UseSlotPacket)):
            self.sequence.check_slot(packet.slot, self.offset)  # before the slot is packed into a byte
        if isinstance(packet, (KeyframePacket, MotionPacket)) and packet.frame_index <= self.sequence.last_index:
            raise BitstreamError(f"frame index {packet.frame_index} does not follow {self.sequence.last_index}",
                                 self.offset)
        packet_type = packet_type_of(packet)
        body = encode_body(packet, self.sequence.last_index, self.version)
        if len(body) > body_cap(packet_type, self.version):
            raise BitstreamError(f"packet body of {len(body)} bytes exceeds the limit "
                                 f"{body_cap(packet_type, self.version)}", self.offset)
        if framed is not None and (not framed or framed[0] != packet_type):
            raise BitstreamError(f"framed bytes are not a packet of type {packet_type}", self.offset)
        self.sequence.admit(packet, self.offset)  # every rule a reader checks (order, slots, Annex-B, END totals)
        data = frame(packet_type, body) if framed is None else bytes(framed)
        self.offset += len(data)
        carries_frame = isinstance(packet, (KeyframePacket, MotionPacket))
        out = []
        if not self._header_sent or (isinstance(packet, KeyframePacket) and packet.intra
                                     and self._frames_since_header):
            out += self.header_datagrams(packet.frame_index if carries_frame else None)
        if carries_frame:
            self.timestamp = packet.frame_index
            self._frames_since_header = True
        return out + self._unit(UNIT_PACKET, data, self.timestamp, carries_frame)


def packetize_stream(data: bytes, **options) -> list[bytes]:
    """Every datagram of the whole .fvc stream `data`, in order (options as for Packetizer)."""
    reader = StreamReader(bytes(data))
    packetizer = Packetizer(bytes(data[:reader.parser.header_size]), **options)
    out = []
    for record in reader.records():
        out += packetizer.packetize(record.packet, data[record.offset:record.offset + record.size])
    return out
