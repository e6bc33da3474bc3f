"""Fuzzing the UDP transport (spec §12): mutated and random datagrams and feedback never raise, every datagram a
receiver drops is counted under one known reason, and nothing damaged comes out as a packet.

Seeded; at least 10,000 mutated datagrams per test (FVC_FUZZ_EXAMPLES raises the count for a longer campaign).
"""
from __future__ import annotations

import os
import random
import struct
import zlib
from pathlib import Path

from bitstream import KeyframePacket, MotionPacket, UseSlotPacket
from bitstream.packets import annexb_problem, frame
from bitstream.transport import (DROP_REASONS, UNIT_PACKET, Depacketizer, FeedbackParser, HeaderEvent, PacketEvent,
                                 build_datagram, feedback_datagrams, header_id, packetize_stream, parse_datagram)
from bitstream.varint import decode_varint
from bitstream.transport.feedback import FEEDBACK_DROP_REASONS

VECTORS = sorted((Path(__file__).resolve().parents[1] / "spec" / "vectors").glob("*.fvc"))
COUNT = max(10_000, int(os.environ.get("FVC_FUZZ_EXAMPLES", "10000")))


def streams() -> list[tuple[bytes, list[bytes]]]:
    """(header bytes, datagrams) of every vector, whole and in 40-byte datagrams (so with fragments)."""
    out = []
    for i, path in enumerate(VECTORS):
        data = path.read_bytes()
        whole = packetize_stream(data, first_seq=(65500 + 7 * i) % 65536)
        header = parse_datagram(whole[0])[0].fragment
        out.append((header, whole))
        out.append((header, packetize_stream(data, first_seq=65520 + i, max_datagram=40)))
    return out


STREAMS = streams()


def originals(datagrams: list[bytes]) -> set[bytes]:
    """Every unit the datagrams carry, reassembled in order."""
    units, pieces = set(), []
    for d in datagrams:
        p = parse_datagram(d)[0]
        pieces = [p.fragment] if p.start else pieces + [p.fragment]
        if p.end:
            units.add(b"".join(pieces))
    return units


ALL_UNITS = set().union(*(originals(ds) for _, ds in STREAMS))


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to three mutations: bit flips, set bytes, truncation, extension, insertion, deletion, RTP fields
    rewritten (sequence number, timestamp, SSRC, payload type, payload header byte), or random bytes."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(10)
        pos = rng.randrange(len(out) + 1)
        if kind == 0 and out:
            out[pos % len(out)] ^= 1 << rng.randrange(8)
        elif kind == 1 and out:
            out[pos % len(out)] = rng.choice([0, 1, 0x7F, 0x80, 0xC0, 0xFF, rng.randrange(256)])
        elif kind == 2:
            del out[pos:]
        elif kind == 3:
            out += rng.randbytes(rng.randint(1, 40))
        elif kind == 4:
            out[pos:pos] = rng.randbytes(rng.randint(1, 8))
        elif kind == 5:
            del out[pos:pos + rng.randint(1, 8)]
        elif kind == 6 and len(out) >= 4:  # sequence number: near, far, or across the wrap
            seq = struct.unpack_from(">H", out, 2)[0]
            struct.pack_into(">H", out, 2, rng.choice([seq + 1, seq - 1, seq + 20, seq - 200, seq + 5000,
                                                       65535, 0, rng.randrange(65536)]) % 65536)
        elif kind == 7 and len(out) >= 12:  # timestamp or SSRC
            struct.pack_into(">I", out, rng.choice([4, 8]), rng.choice([0, 1, 2**32 - 1, rng.randrange(2**32)]))
        elif kind == 8 and len(out) >= 13:  # M|PT, or the payload header byte
            out[rng.choice([1, 12])] = rng.randrange(256)
        elif kind == 9:
            out = bytearray(rng.randbytes(rng.randint(0, 64)))
    return bytes(out)


def check(receiver: Depacketizer) -> None:
    s = receiver.stats
    assert set(s.dropped) <= set(DROP_REASONS)
    assert s.datagrams == s.used + sum(s.dropped.values()) + s.pending


def check_output(events, headers: set[bytes]) -> None:
    """Only undamaged units come out: every packet and header delivered is one that was sent."""
    for e in events:
        if isinstance(e, PacketEvent):
            assert e.data in ALL_UNITS
        elif isinstance(e, HeaderEvent):
            assert e.data in headers


def test_mutated_datagrams_alone():
    """COUNT mutated datagrams (from every vector's stream) into receivers following one stream and none."""
    rng = random.Random(2029)
    headers = {h for h, _ in STREAMS}
    followed = Depacketizer(header_id(STREAMS[0][0]), window=8)
    any_stream = Depacketizer(max_delay=0.02)
    pushed = 0
    for n in range(COUNT):
        _, datagrams = STREAMS[n % len(STREAMS)] if n % 3 else STREAMS[0]
        data = mutate(rng, rng.choice(datagrams))
        for receiver in (followed, any_stream):
            check_output(receiver.push(data, now=n * 0.001), headers)
            check(receiver)
        pushed += 1
    for receiver in (followed, any_stream):
        check_output(receiver.flush(), headers)
        check(receiver)
        assert receiver.stats.pending == 0 and receiver.stats.datagrams == pushed
    assert sum(followed.stats.dropped.values()) > 0.5 * pushed


def test_streams_interleaved_with_mutations():
    """Each stream's datagrams, some reordered, duplicated or lost, interleaved with mutated copies: the real
    packets still come out undamaged, and every datagram is accounted for."""
    rng = random.Random(29)
    headers = {h for h, _ in STREAMS}
    total = delivered = 0
    rounds = 0
    while total < COUNT:
        header, datagrams = STREAMS[rounds % len(STREAMS)]
        rounds += 1
        receiver = Depacketizer(header_id(header) if rounds % 2 else None)
        traffic = []
        for d in datagrams:
            if rng.random() < 0.05:
                continue  # lost
            traffic.append(d)
            while rng.random() < 0.6:
                traffic.append(mutate(rng, rng.choice(datagrams)))
            if rng.random() < 0.05:
                traffic.append(d)  # duplicate
        for i in range(len(traffic) - 1):
            if rng.random() < 0.1:
                traffic[i], traffic[i + 1] = traffic[i + 1], traffic[i]
        for data in traffic:
            check_output(receiver.push(data), headers)
            check(receiver)
        events = receiver.flush()
        check_output(events, headers)
        check(receiver)
        assert receiver.stats.pending == 0
        total += sum(1 for d in traffic if d not in datagrams)
        delivered += receiver.stats.packets
    assert total >= COUNT and delivered > 0


def mutate_packet(rng: random.Random, unit: bytes) -> bytes:
    """A packet unit damaged inside and framed again (length and CRC made right) so that it gets past the CRC
    check to the body checks; now and then the type byte changes or the framing is left wrong."""
    length, pos = decode_varint(unit, 1)
    packet_type, body = unit[0], unit[pos:pos + length]
    if rng.random() < 0.15:
        packet_type = rng.choice([0, 1, 2, 3, 4, 5, 6, 0x40, 0xFF])
    body = mutate(rng, body) if rng.random() < 0.9 else body
    if len(body) > 70000:
        body = body[:70000]
    framed = frame(packet_type, body) if packet_type else bytes([0]) + unit[1:]
    if rng.random() < 0.1:  # damage the framing itself, then put a CRC over it at the end
        framed = mutate(rng, framed)[:-4] or b"\1"
        framed += struct.pack("<I", zlib.crc32(framed))
    return framed


def stream_units(datagrams: list[bytes]) -> list[tuple[int, int, bytes]]:
    """(kind, timestamp, unit) of the whole datagrams of a stream, in order."""
    return [(p.kind, p.timestamp, p.fragment) for p in (parse_datagram(d)[0] for d in datagrams)]


def test_units_damaged_behind_valid_crcs():
    """Packets mutated and framed again, so their CRC holds: the receiver's packet checks (frame index, varints,
    slots, Annex-B, NOTE text) reject them with a counted reason, never an exception; what it delivers passes
    them."""
    rng = random.Random(6184)
    mutated = rounds = 0
    reasons = set()
    while mutated < COUNT:
        header, datagrams = STREAMS[2 * (rounds % len(VECTORS))]  # whole datagrams: one unit each
        rounds += 1
        h = header_id(header)
        receiver = Depacketizer(h if rounds % 2 else None)
        seq, fragment_size = rng.randrange(65536), rng.choice([1, 7, 100, 1187])
        for kind, timestamp, unit in stream_units(datagrams):
            if kind == UNIT_PACKET and rng.random() < 0.5:
                unit = mutate_packet(rng, unit)
                mutated += 1
                if rng.random() < 0.2:
                    timestamp = rng.choice([0, timestamp + 1, max(timestamp - 1, 0), 2**32 - 1, rng.randrange(2**32)])
            pieces = [unit[i:i + fragment_size] for i in range(0, len(unit), fragment_size)]
            for i, piece in enumerate(pieces):
                data = build_datagram(seq, timestamp, h, kind, i == 0, i == len(pieces) - 1, piece)
                seq = (seq + 1) % 65536
                for event in receiver.push(data):
                    if isinstance(event, PacketEvent) and isinstance(event.packet, (KeyframePacket, MotionPacket)):
                        assert event.packet.frame_index == event.frame_index <= 2**32 - 2
                    if isinstance(event, PacketEvent) and isinstance(event.packet, MotionPacket) and \
                            event.packet.resync:  # 4.0: its keyframe comes before it (spec §4.6)
                        assert receiver.header.resync and 0 <= event.packet.keyframe < event.frame_index
                    if isinstance(event, PacketEvent) and isinstance(event.packet, (KeyframePacket, UseSlotPacket)):
                        assert event.packet.slot < receiver.header.ref_slots
                    if isinstance(event, PacketEvent) and isinstance(event.packet, KeyframePacket):
                        assert annexb_problem(event.packet.annexb, receiver.header.predicted_keyframes,
                                              receiver.header.keyframe_codec) is None
                check(receiver)
        receiver.flush()
        check(receiver)
        assert receiver.stats.pending == 0
        reasons |= set(receiver.stats.dropped)
    assert {"bad_packet", "frame_index"} <= reasons


def test_random_bytes_never_raise():
    rng = random.Random(7)
    receiver = Depacketizer()
    for n in range(COUNT):
        data = rng.randbytes(rng.randint(0, 1300))
        if n % 2:  # make RTP version 2 and the default payload type likely, so deeper checks run
            data = bytes([0x80 | (data[0] & 0x3F) if data else 0x80, 96]) + data[2:]
        receiver.push(data)
        check(receiver)
    receiver.flush()
    check(receiver)
    assert receiver.stats.pending == 0 and receiver.stats.packets == 0


def test_feedback_fuzz():
    """Mutated PLI/NACK datagrams and random bytes: the parser never raises, counts every drop under a known
    reason, and what it returns names real sequence numbers."""
    rng = random.Random(4585)
    sources = [d for n in range(40) for d in feedback_datagrams(
        rng.choice([7, 8]), rng.random() < 0.5, [rng.randrange(65536) for _ in range(rng.randint(0, 60))],
        sender_ssrc=rng.randrange(2**32), max_size=rng.choice([64, 200, 1200]))]
    sources.append(bytes([0x80, 201, 0, 1]) + b"\0\0\0\1")  # a receiver report
    parser = FeedbackParser(7)
    for n in range(COUNT):
        data = mutate(rng, rng.choice(sources)) if n % 4 else rng.randbytes(rng.randint(0, 80))
        if n % 8 == 1:
            data = rng.choice(sources) + data  # a compound: good packet, then damage
        feedback = parser.parse(data)
        assert set(parser.dropped) <= set(FEEDBACK_DROP_REASONS)
        assert parser.datagrams == parser.used + sum(parser.dropped.values())
        if feedback is not None:
            assert feedback.header_id == 7 and all(0 <= s < 65536 for s in feedback.lost)
    assert parser.used > 0 and sum(parser.dropped.values()) > 0
