"""Receiver -> sender feedback of spec §12.8: RTCP PLI (keyframe request) and generic NACK (lost sequence numbers).

Feedback datagrams are reduced-size RTCP (RFC 5506) holding RFC 4585 transport and payload-specific feedback
messages whose media source SSRC is the stream's header id. `FeedbackParser.parse` never raises.
"""
from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass
from typing import Iterable

from .rtp import BAD_LENGTH, BAD_VERSION, DEFAULT_MAX_DATAGRAM, HEADER_ID, RTP_VERSION, SEQ_MODULUS, TRUNCATED

RTCP_HEADER = struct.Struct(">BBH")  # V P FMT | PT | length in 32-bit words minus one
FEEDBACK_IDS = struct.Struct(">II")  # SSRC of packet sender, SSRC of media source
NACK_ENTRY = struct.Struct(">HH")  # PID, BLP
RTPFB = 205  # transport-layer feedback (RFC 4585 §6.2)
PSFB = 206  # payload-specific feedback (RFC 4585 §6.3)
FMT_GENERIC_NACK = 1
FMT_PLI = 1
FEEDBACK_HEADER_BYTES = RTCP_HEADER.size + FEEDBACK_IDS.size
NO_FEEDBACK = "no_feedback"  # valid RTCP holding no PLI or NACK at all
FEEDBACK_DROP_REASONS = (TRUNCATED, BAD_VERSION, BAD_LENGTH, HEADER_ID, NO_FEEDBACK)


@dataclass(frozen=True)
class Feedback:
    """What a receiver asks of the sender of stream `header_id`."""

    header_id: int
    keyframe_request: bool = False
    lost: tuple[int, ...] = ()  # sequence numbers, in the order the receiver listed them
    sender_ssrc: int = 0


def nack_entries(lost: Iterable[int]) -> list[tuple[int, int]]:
    """(PID, BLP) pairs naming `lost`: each PID with a bit for each of the 16 numbers after it (mod 2^16)."""
    entries: list[list[int]] = []
    for seq in lost:
        if not 0 <= seq < SEQ_MODULUS:
            raise ValueError(f"sequence number {seq} outside 0..65535")
        if entries:
            distance = (seq - entries[-1][0]) % SEQ_MODULUS
            if distance == 0:
                continue
            if distance <= 16:
                entries[-1][1] |= 1 << (distance - 1)
                continue
        entries.append([seq, 0])
    return [(pid, blp) for pid, blp in entries]


def _message(packet_type: int, fmt: int, sender_ssrc: int, header_id: int, fci: bytes = b"") -> bytes:
    words = (FEEDBACK_HEADER_BYTES + len(fci)) // 4 - 1
    return RTCP_HEADER.pack((RTP_VERSION << 6) | fmt, packet_type, words) + \
        FEEDBACK_IDS.pack(sender_ssrc, header_id) + fci


def feedback_datagrams(header_id: int, keyframe_request: bool = False, lost: Iterable[int] = (),
                       sender_ssrc: int = 0, max_size: int = DEFAULT_MAX_DATAGRAM) -> list[bytes]:
    """The datagrams that ask for a keyframe and/or name `lost`; none when there is nothing to ask.

    A PLI goes in the first datagram; NACK entries fill datagrams of at most `max_size` bytes.
    """
    for name, value in (("header_id", header_id), ("sender_ssrc", sender_ssrc)):
        if not 0 <= value < 2**32:
            raise ValueError(f"{name} {value} outside 0..2^32-1")
    if max_size < 2 * FEEDBACK_HEADER_BYTES + NACK_ENTRY.size:
        raise ValueError(f"max_size {max_size} below {2 * FEEDBACK_HEADER_BYTES + NACK_ENTRY.size}")
    entries = nack_entries(lost)
    out = []
    head = _message(PSFB, FMT_PLI, sender_ssrc, header_id) if keyframe_request else b""
    while entries or head:
        room = (max_size - len(head) - FEEDBACK_HEADER_BYTES) // NACK_ENTRY.size
        chunk, entries = entries[:room], entries[room:]
        nack = _message(RTPFB, FMT_GENERIC_NACK, sender_ssrc, header_id,
                        b"".join(NACK_ENTRY.pack(*e) for e in chunk)) if chunk else b""
        out.append(head + nack)
        head = b""
    return out


class FeedbackParser:
    """Reads feedback datagrams for stream `header_id`; counts every datagram it drops under one reason."""

    def __init__(self, header_id: int):
        self.header_id = header_id
        self.datagrams = 0
        self.used = 0
        self.dropped: Counter = Counter()

    def parse(self, data: bytes | bytearray | memoryview) -> Feedback | None:
        """The feedback `data` holds for this stream, or None (and a counted reason). Never raises."""
        self.datagrams += 1
        feedback, reason = parse_feedback(data, self.header_id)
        if feedback is None:
            self.dropped[reason] += 1
        else:
            self.used += 1
        return feedback


def parse_feedback(data: bytes | bytearray | memoryview, header_id: int) -> tuple[Feedback | None, str | None]:
    """(feedback, None) or (None, the drop reason): a compound of RTCP packets, every one well framed (RFC 3550
    §6.1, A.2); PLI and generic NACK for `header_id` are read, any other RTCP packet is skipped."""
    data = bytes(data)
    pos, keyframe, lost, ours, others, sender = 0, False, [], False, False, 0
    if not data:
        return None, TRUNCATED
    while pos < len(data):
        if len(data) - pos < RTCP_HEADER.size:
            return None, TRUNCATED
        first, packet_type, words = RTCP_HEADER.unpack_from(data, pos)
        if first >> 6 != RTP_VERSION:
            return None, BAD_VERSION
        size = 4 * (words + 1)
        if pos + size > len(data):
            return None, TRUNCATED
        end = pos + size
        if first & 0x20:  # padding, allowed in the last packet only; its last byte counts it
            padding = data[end - 1]
            if end != len(data) or padding == 0 or padding > size - RTCP_HEADER.size:
                return None, BAD_LENGTH
            end -= padding
        fmt = first & 0x1F
        if (packet_type, fmt) in ((PSFB, FMT_PLI), (RTPFB, FMT_GENERIC_NACK)):
            if end - pos < FEEDBACK_HEADER_BYTES or (end - pos) % 4:
                return None, BAD_LENGTH
            packet_sender, media = FEEDBACK_IDS.unpack_from(data, pos + RTCP_HEADER.size)
            if media != header_id:
                others = True
            else:
                ours, sender = True, packet_sender
                if packet_type == PSFB:
                    keyframe = True  # a PLI has no FCI; any there is ignored
                else:
                    for at in range(pos + FEEDBACK_HEADER_BYTES, end, NACK_ENTRY.size):
                        pid, blp = NACK_ENTRY.unpack_from(data, at)
                        lost.append(pid)
                        lost += [(pid + 1 + bit) % SEQ_MODULUS for bit in range(16) if blp >> bit & 1]
        pos += size
    if not ours:
        return None, HEADER_ID if others else NO_FEEDBACK
    return Feedback(header_id, keyframe, tuple(dict.fromkeys(lost)), sender), None
