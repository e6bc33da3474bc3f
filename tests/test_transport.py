"""The UDP transport of spec §12 (bitstream.transport): datagram layout, fragmentation, the receiver's window,
loss detection across the sequence-number wrap, drops with counted reasons, RTCP feedback, and a loopback
run through real sockets (127.0.0.1 only) with seeded loss."""
from __future__ import annotations

import hashlib
import io
import random
import socket
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from bitstream import (KeyframePacket, MotionEncoder, MotionKind, MotionPacket, NotePacket, StreamReader,
                       StreamWriter, default_header, quantize)
from bitstream.synthetic import trace
from bitstream.transport import depacketizer
from bitstream.transport import (DROP_REASONS, UNIT_HEADER, UNIT_PACKET, Depacketizer, DropEvent, Feedback,
                                 FeedbackParser, HeaderEvent, LossEvent, MissingEvent, PacketEvent, Packetizer,
                                 ResyncEvent, SentHistory, UnitDropEvent, build_datagram, feedback_datagrams,
                                 header_id, nack_entries, packetize_stream, parse_datagram, parse_feedback)
from bitstream.transport import history

VECTORS = Path(__file__).resolve().parents[1] / "spec" / "vectors"
VECTOR_NAMES = sorted(p.stem for p in VECTORS.glob("*.fvc"))
MODEL_ID = hashlib.sha256(b"fvc transport tests").digest()[:16]


def vector(name: str) -> bytes:
    return (VECTORS / f"{name}.fvc").read_bytes()


def header_size(stream: bytes) -> int:
    return StreamReader(stream).parser.header_size


def synthetic_stream(frames: int = 120, keyframe_every: int = 40, keyframe_bytes: int = 3000, seed: int = 0) -> bytes:
    """A real stream from the bitstream writer: synthetic fv2v motion coded by MotionEncoder, and keyframes whose
    access units (an IDR slice NAL unit of random bytes) need several datagrams."""
    header = default_header(MotionKind.FV2V, 256, 256, 25, MODEL_ID, frame_count=frames)
    rng = np.random.default_rng(seed)
    sink = io.BytesIO()
    writer = StreamWriter(sink, header, minor=1)
    encoder = MotionEncoder(header)
    writer.write(NotePacket.of({"writer": "test_transport"}))
    for index, motion in enumerate(trace(MotionKind.FV2V, frames, seed=seed)):
        if index % keyframe_every == 0:
            writer.write(NotePacket.of({"keyframe_reason": "first" if index == 0 else "max_gop"}))
            au = b"\0\0\0\1\x65" + rng.integers(1, 256, keyframe_bytes, dtype=np.uint8).tobytes()
            writer.write(KeyframePacket(index, au))
            encoder.reset()
        else:
            payload, _ = encoder.encode(quantize(motion, header))
            writer.write(MotionPacket(index, payload))
    writer.close()
    return sink.getvalue()


@pytest.fixture(scope="module")
def stream() -> bytes:
    return synthetic_stream()


def receive(datagrams, receiver: Depacketizer | None = None, flush: bool = True) -> tuple[Depacketizer, list]:
    receiver = receiver or Depacketizer()
    events = []
    for d in datagrams:
        events += receiver.push(d)
        check_accounting(receiver)
    if flush:
        events += receiver.flush()
        check_accounting(receiver)
        assert receiver.stats.pending == 0
    return receiver, events


def check_accounting(receiver: Depacketizer) -> None:
    """Every datagram is used, waiting, or dropped under exactly one known reason (spec §12.6)."""
    s = receiver.stats
    assert set(s.dropped) <= set(DROP_REASONS)
    assert s.datagrams == s.used + sum(s.dropped.values()) + s.pending


def of(events, kind) -> list:
    return [e for e in events if isinstance(e, kind)]


def lost(events) -> list[int]:
    return [s for e in of(events, LossEvent) for s in e.seqs]


def missing(events) -> list[int]:
    return [s for e in of(events, MissingEvent) for s in e.seqs]


def rebuilt(events) -> bytes:
    """The stream a receiver got: header unit, then every packet's bytes."""
    return b"".join(e.data for e in events if isinstance(e, (HeaderEvent, PacketEvent)))


def seq_of(datagram: bytes) -> int:
    return struct.unpack_from(">H", datagram, 2)[0]


# -- layout -------------------------------------------------------------------------------------------------------


def test_tiny_datagrams_are_the_spec_example():
    """spec §12.9, byte for byte: RTP header, payload header, units; the sequence number wraps 65535 -> 0."""
    stream = vector("tiny")
    datagrams = packetize_stream(stream, first_seq=65534)
    assert header_id(stream[:87]) == 0xF5E12F2C
    expected = ["80 60 ff fe 00 00 00 00 f5 e1 2f 2c c1", "80 e0 ff ff 00 00 00 00 f5 e1 2f 2c c0",
                "80 e0 00 00 00 00 00 01 f5 e1 2f 2c c0", "80 e0 00 01 00 00 00 02 f5 e1 2f 2c c0",
                "80 60 00 02 00 00 00 02 f5 e1 2f 2c c0"]
    assert [d[:13].hex(" ") for d in datagrams] == expected
    assert [len(d) for d in datagrams] == [100, 45, 24, 22, 24]
    assert b"".join(d[13:] for d in datagrams) == stream  # header unit, then the packets as the file holds them
    assert datagrams[2][13:].hex(" ") == "02 05 01 f6 84 6f 1d c2 97 0c a3"


def test_parse_datagram_reads_what_build_datagram_writes():
    data = build_datagram(513, 70000, 0xDEADBEEF, UNIT_PACKET, True, False, b"abc", payload_type=101, marker=True)
    d, reason = parse_datagram(data)
    assert reason is None
    assert (d.sequence, d.timestamp, d.header_id, d.payload_type, d.marker, d.start, d.end, d.kind, d.fragment) == \
        (513, 70000, 0xDEADBEEF, 101, True, True, False, UNIT_PACKET, b"abc")


def test_receivers_skip_csrcs_extension_and_padding():
    """RFC 3550 fields a mixer or another stack may add: CSRC list, header extension, padding."""
    plain = build_datagram(7, 3, 0x01020304, UNIT_HEADER, True, True, b"unit")
    csrc = bytes([0x80 | 0x20 | 0x10 | 2]) + plain[1:12] + b"\1\1\1\1\2\2\2\2" + b"\xbe\xde\x00\x01" + b"xxxx" \
        + plain[12:] + b"\0\0\3"
    d, reason = parse_datagram(csrc)
    assert reason is None and d.fragment == b"unit" and d.sequence == 7 and d.start and d.end


@pytest.mark.parametrize("data, reason", [
    (b"", "truncated"),
    (bytes(11), "truncated"),
    (build_datagram(1, 0, 5, UNIT_PACKET, True, True, b"x")[:12], "truncated"),  # no payload header byte
    (b"\x40" + build_datagram(1, 0, 5, UNIT_PACKET, True, True, b"x")[1:], "bad_version"),  # RTP version 1
    (build_datagram(1, 0, 5, UNIT_PACKET, True, True, b"x")[:12] + b"\xd0x", "bad_version"),  # format version 1
    (build_datagram(1, 0, 5, UNIT_PACKET, True, True, b"x")[:12] + b"\xc2x", "unknown_kind"),
    (build_datagram(1, 0, 5, UNIT_PACKET, True, True, b"x")[:12] + b"\xc0", "bad_length"),  # empty fragment
    (b"\xa0" + build_datagram(1, 0, 5, UNIT_PACKET, True, True, b"x")[1:] + b"\0", "bad_length"),  # padding 0
    (b"\xa0" + build_datagram(1, 0, 5, UNIT_PACKET, True, True, b"x")[1:] + b"\x09", "bad_length"),  # too much
    (b"\x83" + build_datagram(1, 0, 5, UNIT_PACKET, True, True, b"x")[1:], "truncated"),  # 3 CSRCs announced
    (b"\x90" + build_datagram(1, 0, 5, UNIT_PACKET, True, True, b"x")[1:], "truncated"),  # extension announced
])
def test_bad_datagrams_are_dropped_with_their_reason(data, reason):
    assert parse_datagram(data) == (None, reason)
    receiver, events = receive([data], Depacketizer(5))
    assert receiver.stats.dropped == Counter({reason: 1}) and of(events, DropEvent)[0].reason == reason


# -- round trips and fragmentation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VECTOR_NAMES)
@pytest.mark.parametrize("max_datagram", [1200, 14])
def test_vectors_round_trip(name, max_datagram):
    """Every conformance vector comes out byte for byte, with 1-byte fragments too; the packets are the reader's
    (a MOTION packet's absolute frame index from the timestamp)."""
    stream = vector(name)
    datagrams = packetize_stream(stream, first_seq=65530, max_datagram=max_datagram)
    assert all(len(d) <= max_datagram for d in datagrams)
    receiver, events = receive(datagrams)
    assert rebuilt(events) == stream
    assert [e.packet for e in of(events, PacketEvent)] == [r.packet for r in StreamReader(stream).records()]
    assert receiver.stats.dropped == Counter() and not lost(events) and receiver.stats.used == len(datagrams)
    assert not any(e.discontinuity for e in of(events, PacketEvent))


def test_large_keyframe_is_fragmented_and_reassembled(stream):
    datagrams = packetize_stream(stream, first_seq=100)
    parsed = [parse_datagram(d)[0] for d in datagrams]
    assert all(len(d) <= 1200 for d in datagrams)
    keyframe = [d for d in parsed if d.timestamp == 0 and d.kind == UNIT_PACKET and not d.fragment.startswith(b"\4")]
    # type, 2-byte length, frame index, the 3,005-byte access unit, CRC: 3,013 bytes in pieces of 1200 - 13
    assert [len(d.fragment) for d in keyframe] == [1187, 1187, 3013 - 2 * 1187]
    assert [(d.start, d.end, d.marker) for d in keyframe] == [(True, False, False), (False, False, False),
                                                              (False, True, True)]
    assert [d.sequence for d in keyframe] == [keyframe[0].sequence + i for i in range(3)]
    receiver, events = receive(datagrams)
    assert rebuilt(events) == stream
    frames = [e.frame_index for e in of(events, PacketEvent) if isinstance(e.packet, (KeyframePacket, MotionPacket))]
    assert frames == list(range(120))


def test_header_goes_before_the_first_packet_and_each_later_intra_keyframe(stream):
    parsed = [parse_datagram(d)[0] for d in packetize_stream(stream, first_seq=0)]
    headers = [i for i, d in enumerate(parsed) if d.kind == UNIT_HEADER]
    keyframes = [i for i, d in enumerate(parsed) if d.kind == UNIT_PACKET and d.start and d.fragment[0] == 1]
    assert headers[0] == 0  # before the stream NOTE, and not again before the first keyframe
    assert [parsed[i].timestamp for i in headers] == [0, 40, 80]
    assert [i + 1 for i in headers[1:]] == keyframes[1:]  # keyframe_reason NOTE, header, KEYFRAME
    assert parsed[headers[1]].fragment == stream[:header_size(stream)]


def test_packetizer_refuses_what_a_reader_would():
    header = default_header(MotionKind.FV2V, 64, 64, 25, MODEL_ID)
    packetizer = Packetizer(header, first_seq=0)
    with pytest.raises(Exception, match="before any keyframe"):
        packetizer.packetize(MotionPacket(0, b""))
    packetizer.packetize(KeyframePacket(3, b"\0\0\1\x65\x88"))
    sent = packetizer.next_seq
    with pytest.raises(Exception, match="does not follow"):
        packetizer.packetize(MotionPacket(2, b""))
    assert packetizer.next_seq == sent  # nothing sent, no sequence number taken
    with pytest.raises(ValueError):
        Packetizer(header, payload_type=95)


# -- the window: reordering, loss, wrap, duplicates ------------------------------------------------------------------


def test_reordering_within_the_window_changes_nothing(stream):
    datagrams = packetize_stream(stream, first_seq=65500)
    rng = random.Random(1)
    shuffled = []
    for i in range(0, len(datagrams), 12):  # every datagram moves by fewer than 12 < window 16 places
        block = datagrams[i:i + 12]
        shuffled += rng.sample(block, len(block))
    assert shuffled != datagrams
    receiver, events = receive(shuffled, Depacketizer(header_id(stream[:header_size(stream)])))
    assert rebuilt(events) == stream and receiver.stats.dropped == Counter() and not lost(events)


def test_reordering_beyond_the_window_is_loss_then_too_old(stream):
    datagrams = packetize_stream(stream, first_seq=0)
    late = datagrams.pop(50)  # motion datagrams: one packet each
    datagrams.insert(50 + 20, late)
    receiver, events = receive(datagrams)
    assert lost(events) == [50] and receiver.stats.dropped == Counter({"too_old": 1})
    after = of(events, PacketEvent)
    gap = next(i for i, e in enumerate(after) if e.first_seq == 51)
    assert after[gap].discontinuity and not after[gap + 1].discontinuity


def test_loss_across_the_sequence_wrap(stream):
    datagrams = packetize_stream(stream, first_seq=65528)  # header, 2 NOTEs, 3 keyframe datagrams, then motion
    dropped = {65535, 0, 2, 7}  # MOTION packets of frames 2, 3, 5 and 10
    kept = [d for d in datagrams if seq_of(d) not in dropped]
    receiver, events = receive(kept)
    assert lost(events) == [65535, 0, 2, 7]  # in sequence order, across the wrap
    assert receiver.stats.lost == 4 and receiver.stats.dropped == Counter()
    motion = {e.first_seq: e for e in of(events, PacketEvent) if isinstance(e.packet, MotionPacket)}
    assert motion[1].discontinuity and motion[3].discontinuity and not motion[4].discontinuity
    assert motion[1].packet == MotionPacket(motion[1].frame_index, motion[1].packet.payload)


def test_a_loss_is_declared_after_window_arrivals_or_max_delay():
    stream = vector("fv2v_single_keyframe")
    datagrams = packetize_stream(stream, first_seq=10)
    receiver = Depacketizer(window=4)
    events = []
    for d in datagrams[:3] + datagrams[4:7]:
        events += receiver.push(d)
    assert not lost(events)  # 13 missing, 3 arrivals beyond it
    events += receiver.push(datagrams[7])
    assert lost(events) == [13]  # the 4th arrival beyond it

    timed = Depacketizer(max_delay=0.05)
    events = []
    for i, d in enumerate(datagrams[:3] + datagrams[4:6]):
        events += timed.push(d, now=i * 0.01)
    assert not lost(events + timed.poll(0.0795))
    assert lost(timed.poll(0.0805)) == [13]  # datagram 14 arrived at t = 0.03 and waited 0.05 s


def forged(datagram: bytes, seq: int) -> bytes:
    """`datagram` with another sequence number and a damaged unit: what a corrupted header field looks like."""
    out = bytearray(datagram)
    struct.pack_into(">H", out, 2, seq % 65536)
    out[-1] ^= 0x55
    return bytes(out)


def test_one_datagram_far_ahead_declares_nothing_lost():
    """A damaged datagram numbered 128 ahead of the next one expected is unconfirmed (spec §12.5): it counts for
    neither loss rule, and the real datagram of its number, which arrives in reach of the stream, replaces it."""
    stream = synthetic_stream(200)
    datagrams = packetize_stream(stream, first_seq=65500)
    bad = forged(datagrams[10], seq_of(datagrams[10]) + 128)
    receiver, events = receive(datagrams[:10] + [bad] + datagrams[10:])
    assert not lost(events) and receiver.stats.lost == 0
    assert receiver.stats.dropped == Counter({"seq_jump": 1}) and rebuilt(events) == stream
    timed = Depacketizer(max_delay=0.05)  # the time rule too: it waits behind no gap
    events = [e for i, d in enumerate(datagrams[:10] + [bad]) for e in timed.push(d, now=i * 0.001)]
    assert not lost(events + timed.poll(10.0)) and not missing(events)


def test_a_long_burst_is_declared_lost_once_a_second_datagram_confirms_it(stream):
    """A genuine burst longer than the window: the first datagram after it waits unconfirmed, the next one
    confirms the position, and then the burst is missing (NACKed) and lost as before."""
    datagrams = packetize_stream(stream, first_seq=0)
    receiver = Depacketizer()
    events = [e for d in datagrams[:10] for e in receiver.push(d)]
    events += receiver.push(datagrams[50])
    assert not lost(events) and not missing(events)
    events += receiver.push(datagrams[52])
    assert missing(events) == list(range(10, 50)) + [51]
    assert lost(events) == list(range(10, 37))  # 16 arrivals beyond: 52 - 16 + 1
    events += receiver.flush()
    assert lost(events) == list(range(10, 50)) + [51]


def test_a_gap_is_missing_at_once_and_a_resent_datagram_fills_it_until_it_is_lost():
    """spec §12.5: the NACK list comes as soon as a later datagram arrives; a re-sent copy that arrives before the
    max delay is used as if it had never been late, one after it is too_old, and a second copy is a duplicate."""
    stream = vector("fv2v_single_keyframe")
    datagrams = packetize_stream(stream, first_seq=65530)
    receiver = Depacketizer(max_delay=0.1)
    events = [e for i, d in enumerate(datagrams[:5] + datagrams[6:8]) for e in receiver.push(d, now=i * 0.01)]
    assert missing(events) == [seq_of(datagrams[5])] and not lost(events)
    events += receiver.push(datagrams[5], now=0.09) + receiver.push(datagrams[5], now=0.095)
    events += [e for d in datagrams[8:] for e in receiver.push(d, now=0.1)] + receiver.flush()
    assert rebuilt(events) == stream and not lost(events) and len(missing(events)) == 1
    assert receiver.stats.dropped == Counter({"duplicate": 1}) and receiver.stats.missing == 1

    late = Depacketizer(max_delay=0.1)
    events = [e for i, d in enumerate(datagrams[:5] + datagrams[6:8]) for e in late.push(d, now=i * 0.01)]
    events += late.poll(0.2) + late.push(datagrams[5], now=0.2)
    assert lost(events) == [seq_of(datagrams[5])] and late.stats.dropped == Counter({"too_old": 1})


def test_missing_now_lists_the_numbers_still_awaited_with_their_deadlines():
    """What a receiver may NACK again (spec §12.8): the numbers found missing and neither arrived nor declared lost,
    each given up on max_delay after the first confirmed datagram above it arrived."""
    datagrams = packetize_stream(vector("fv2v_single_keyframe"), first_seq=65530)
    seqs = [seq_of(d) for d in datagrams]
    receiver = Depacketizer(max_delay=0.1)
    assert receiver.missing_now() == []
    for d, t in zip(datagrams[:3], (0.0, 0.01, 0.02)):
        receiver.push(d, now=t)
    receiver.push(datagrams[4], now=0.03)  # 3 missing (65533), deadline 0.13
    receiver.push(datagrams[7], now=0.05)  # 5 and 6 missing (65535 and 0, across the wrap), deadline 0.15
    assert receiver.missing_now() == [(seqs[3], pytest.approx(0.13)), (seqs[5], pytest.approx(0.15)),
                                      (seqs[6], pytest.approx(0.15))]
    receiver.push(datagrams[5], now=0.06)  # a re-sent copy fills 5
    assert [s for s, _ in receiver.missing_now()] == [seqs[3], seqs[6]]
    assert lost(receiver.poll(0.13)) == [seqs[3]]  # given up on: no longer awaited
    assert receiver.missing_now() == [(seqs[6], pytest.approx(0.15))]
    assert Depacketizer().missing_now() == [] and receive(datagrams[:3] + datagrams[4:5], flush=False)[0] \
        .missing_now() == [(seqs[3], None)]  # no times, no deadline: only the window gives it up


def test_the_sender_history_resends_what_it_still_holds():
    datagrams = packetize_stream(vector("fv2v_single_keyframe"), first_seq=65534)
    held = SentHistory(seconds=1.0, limit=4)
    for i, d in enumerate(datagrams[:6]):
        held.add(d, now=i * 0.1)
    assert len(held) == 4  # the limit: the two oldest went
    seqs = [seq_of(d) for d in datagrams[:6]]
    assert held.resend([seqs[5], seqs[0], seqs[3], seqs[3]], now=0.6) == [datagrams[5], datagrams[3]]
    assert held.resend([seqs[5]], now=1.45) == [datagrams[5]] and held.resend([seqs[4]], now=1.45) == []  # 1 s
    assert held.resend([seqs[5]] * 9, now=1.45) == [datagrams[5]]
    assert held.resend([seqs[5]], now=1.45) == []  # re-sent MAX_RESENDS times already
    assert history.MAX_RESENDS == 3
    off = SentHistory(limit=0)
    off.add(datagrams[0], now=0.0)
    assert off.resend([seqs[0]], now=0.0) == []


def test_duplicates_are_dropped_and_counted(stream):
    datagrams = packetize_stream(stream, first_seq=65535)
    doubled = []
    for i, d in enumerate(datagrams):
        doubled.append(d)
        if i % 7 == 0:
            doubled.append(d)  # at once: still waiting or just released
        if i % 11 == 5:
            doubled.append(datagrams[i - 5])  # long released
    receiver, events = receive(doubled)
    assert rebuilt(events) == stream and not lost(events)
    assert receiver.stats.dropped == Counter({"duplicate": len(doubled) - len(datagrams)})
    # duplicates of datagrams that wait behind a gap: the first copy is kept
    held_back = datagrams[:10] + [datagrams[11], datagrams[11], datagrams[12], datagrams[12], datagrams[10]] + \
        datagrams[13:]
    receiver, events = receive(held_back)
    assert rebuilt(events) == stream and receiver.stats.dropped == Counter({"duplicate": 2})


def test_foreign_stream_datagrams_are_dropped_as_header_id(stream):
    ours = packetize_stream(stream, first_seq=1000)
    foreign = packetize_stream(vector("fomm"), first_seq=1001)
    mixed = [d for pair in zip(ours, foreign) for d in pair] + ours[len(foreign):]
    receiver, events = receive(mixed, Depacketizer(header_id(stream[:header_size(stream)])))
    assert rebuilt(events) == stream
    assert receiver.stats.dropped == Counter({"header_id": len(foreign)})
    assert all(e.reason == "header_id" for e in of(events, DropEvent))


def test_unlocked_receiver_follows_the_first_header_and_drops_the_rest(stream):
    """Joining late: the packets before the next header are unreadable (no_header); from the header on the stream
    comes out; a foreign stream's datagrams are header_id."""
    datagrams = packetize_stream(stream, first_seq=0)
    second_header = [i for i, d in enumerate(datagrams) if parse_datagram(d)[0].kind == UNIT_HEADER][1]
    join = 30  # in the middle of the first keyframe interval
    foreign = packetize_stream(vector("tiny"), first_seq=5)
    receiver, events = receive(datagrams[join:second_header] + foreign[1:] + datagrams[second_header:])
    # they waited for a header; when it came they were older than it, or another stream's
    assert receiver.stats.dropped == Counter({"too_old": second_header - join, "header_id": len(foreign) - 1})
    first = of(events, PacketEvent)[0]
    assert isinstance(first.packet, KeyframePacket) and first.first_seq == second_header + 1
    keyframe_40 = next(r for r in StreamReader(stream).records() if getattr(r.packet, "frame_index", -1) == 40)
    assert rebuilt(events) == stream[:header_size(stream)] + stream[keyframe_40.offset:]


def test_joining_long_before_a_header():
    """300 datagrams wait for a header: the newest are kept (256 with the header), then found older than it
    (too_old), even those more than 100 behind it, which would otherwise read as a sequence jump and restart
    the numbering."""
    header = default_header(MotionKind.FV2V, 64, 64, 25, MODEL_ID)
    packetizer = Packetizer(header, first_seq=65000)
    datagrams = packetizer.packetize(KeyframePacket(0, b"\0\0\1\x65\x88"))
    datagrams += [d for i in range(1, 301) for d in packetizer.packetize(MotionPacket(i, b""))]
    second = len(datagrams)
    datagrams += packetizer.packetize(KeyframePacket(301, b"\0\0\1\x65\x88"))
    datagrams += [d for i in range(302, 320) for d in packetizer.packetize(MotionPacket(i, b""))]
    receiver, events = receive(datagrams[2:second], flush=False)
    assert receiver.stats.dropped == Counter({"no_header": 300 - 256}) and receiver.stats.pending == 256
    more, after = receive(datagrams[second:], receiver)
    # the header unit is the 301st datagram kept: it evicts one more
    assert receiver.stats.dropped == Counter({"no_header": 45, "too_old": 255}) and not of(after, ResyncEvent)
    assert [e.frame_index for e in of(after, PacketEvent)] == list(range(301, 320))


def test_a_lost_header_is_resent_before_the_next_keyframe(stream):
    """A receiver told the header id that lost the first header unit starts at the second, ahead of frame 40."""
    datagrams = packetize_stream(stream, first_seq=0)
    second_header = [i for i, d in enumerate(datagrams) if parse_datagram(d)[0].kind == UNIT_HEADER][1]
    receiver, events = receive(datagrams[1:], Depacketizer(header_id(stream[:header_size(stream)])))
    assert of(events, HeaderEvent)[0].header == StreamReader(stream).header
    assert receiver.stats.dropped == Counter({"too_old": second_header - 1})
    first = of(events, PacketEvent)[0]
    assert isinstance(first.packet, KeyframePacket) and first.frame_index == 40 and not first.discontinuity
    keyframe_40 = next(r for r in StreamReader(stream).records() if getattr(r.packet, "frame_index", -1) == 40)
    assert rebuilt(events) == stream[:header_size(stream)] + stream[keyframe_40.offset:]


def test_a_lost_fragment_drops_its_packet_as_incomplete(stream):
    datagrams = packetize_stream(stream, first_seq=65534)
    parsed = [parse_datagram(d)[0] for d in datagrams]
    middle = next(i for i, d in enumerate(parsed) if d.timestamp == 40 and d.kind == UNIT_PACKET and not d.start)
    receiver, events = receive(datagrams[:middle] + datagrams[middle + 1:])
    assert lost(events) == [parsed[middle].sequence]
    (unit,) = of(events, UnitDropEvent)
    assert unit.reason == "incomplete" and unit.timestamp == 40
    assert unit.seqs == (parsed[middle - 1].sequence, parsed[middle + 1].sequence)
    assert receiver.stats.dropped == Counter({"incomplete": 2})
    after = next(e for e in of(events, PacketEvent) if e.frame_index == 41)
    assert after.discontinuity and isinstance(after.packet, MotionPacket)


def test_a_dropped_unit_names_its_packet_type_when_its_first_fragment_came(stream):
    """A receiver learns from a dropped unit's first fragment that a KEYFRAME was lost (spec §12.6, §12.7)."""
    datagrams = packetize_stream(stream, first_seq=0)
    parsed = [parse_datagram(d)[0] for d in datagrams]
    middle = next(i for i, d in enumerate(parsed) if d.timestamp == 40 and d.kind == UNIT_PACKET and not d.start)
    _, events = receive(datagrams[:middle] + datagrams[middle + 1:])
    assert of(events, UnitDropEvent)[0].packet_type == 1  # KEYFRAME
    first = next(i for i, d in enumerate(parsed) if d.timestamp == 80 and d.kind == UNIT_PACKET and d.start
                 and not d.end)
    _, events = receive(datagrams[:first] + datagrams[first + 1:])
    assert of(events, UnitDropEvent)[0].packet_type is None  # its first fragment is what was lost


def test_resync_packets_travel_as_motion_packets():
    """RESYNC (4.0): delivered with its frame index and keyframe; its keyframe distance is checked against the
    timestamp, and a lost RESYNC flags the packet after it like a lost MOTION packet."""
    stream = vector("fv2v_resync")
    datagrams = packetize_stream(stream, first_seq=65530)
    receiver, events = receive(datagrams)
    resyncs = [e for e in of(events, PacketEvent) if isinstance(e.packet, MotionPacket) and e.packet.resync]
    assert [(e.frame_index, e.packet.keyframe) for e in resyncs] == [(1, 0), (4, 0), (7, 6), (10, 0)]
    assert rebuilt(events) == stream
    at = next(i for i, d in enumerate(datagrams) if parse_datagram(d)[0].fragment[0] == 6
              and parse_datagram(d)[0].timestamp == 4)
    _, events = receive(datagrams[:at] + datagrams[at + 1:])
    after = next(e for e in of(events, PacketEvent) if e.frame_index == 5)
    assert after.discontinuity and not after.packet.resync
    # Frame 3 lost, and the RESYNC of frame 4 (keyframe distance 4) forged to say frame 3: nothing can check its
    # frame index after the loss, but its keyframe would come before frame 0.
    r = parse_datagram(datagrams[at])[0]
    forged = build_datagram(r.sequence, 3, r.header_id, UNIT_PACKET, True, True, r.fragment, marker=True)
    receiver, _ = receive(datagrams[:at - 1] + [forged] + datagrams[at + 1:])
    assert receiver.stats.dropped == Counter({"bad_packet": 1}) and receiver.stats.lost == 1


def test_a_lost_first_fragment_drops_the_rest(stream):
    datagrams = packetize_stream(stream, first_seq=0)
    parsed = [parse_datagram(d)[0] for d in datagrams]
    first = next(i for i, d in enumerate(parsed) if d.timestamp == 80 and d.kind == UNIT_PACKET and d.start
                 and not d.end)
    receiver, events = receive(datagrams[:first] + datagrams[first + 1:])
    (unit,) = of(events, UnitDropEvent)
    assert unit.reason == "incomplete" and len(unit.seqs) == 2 and unit.seqs[0] == parsed[first + 1].sequence


def test_damaged_units_are_dropped_with_their_reason(stream):
    datagrams = packetize_stream(stream, first_seq=0)
    h = header_id(stream[:header_size(stream)])
    motion = next(i for i, d in enumerate(datagrams) if parse_datagram(d)[0].fragment[0] == 2)
    m = parse_datagram(datagrams[motion])[0]
    flipped = bytearray(datagrams[motion])
    flipped[-6] ^= 1
    wrong_time = build_datagram(m.sequence, m.timestamp + 1, h, UNIT_PACKET, True, True, m.fragment, marker=True)
    cut = build_datagram(m.sequence, m.timestamp, h, UNIT_PACKET, True, True, m.fragment[:-1])
    for damaged, reason in ((bytes(flipped), "bad_crc"), (wrong_time, "frame_index"), (cut, "bad_packet")):
        receiver, events = receive(datagrams[:motion] + [damaged] + datagrams[motion + 1:])
        assert receiver.stats.dropped == Counter({reason: 1}), reason
        assert of(events, UnitDropEvent)[0].seqs == (m.sequence,)


def test_a_wrong_timestamp_after_a_loss_costs_one_more_packet():
    """After a loss nothing can check a MOTION packet's timestamp; a wrong one that got through is found by the
    next packet, which is dropped, and the receiver forgets it rather than dropping everything after."""
    stream = vector("fv2v_single_keyframe")
    datagrams = packetize_stream(stream, first_seq=0)  # header, KEYFRAME 0, MOTION 1 ... 11, END
    m = parse_datagram(datagrams[5])[0]
    assert m.timestamp == 4
    forged = build_datagram(m.sequence, 1000, m.header_id, UNIT_PACKET, True, True, m.fragment, marker=True)
    receiver, events = receive(datagrams[:4] + [forged] + datagrams[6:])  # frame 3 lost, frame 4 says 1000
    assert receiver.stats.dropped == Counter({"frame_index": 1})  # frame 5
    frames = [e.frame_index for e in of(events, PacketEvent) if isinstance(e.packet, MotionPacket)]
    assert frames == [1, 2, 1000, 6, 7, 8, 9, 10, 11]


def test_a_keyframe_whose_timestamp_is_not_its_frame_index_is_dropped():
    stream = vector("tiny")
    datagrams = packetize_stream(stream, first_seq=0)
    k = parse_datagram(datagrams[1])[0]
    assert k.fragment[0] == 1 and k.timestamp == 0
    forged = build_datagram(k.sequence, 5, k.header_id, UNIT_PACKET, True, True, k.fragment, marker=True)
    receiver, events = receive([datagrams[0], forged] + datagrams[2:])
    assert receiver.stats.dropped == Counter({"frame_index": 1})
    assert [(u.reason, u.seqs) for u in of(events, UnitDropEvent)] == [("frame_index", (k.sequence,))]


def test_forged_header_unit_is_dropped(stream):
    header = stream[:header_size(stream)]
    h = header_id(header)
    other = vector("tiny")[:87]
    tiny = packetize_stream(vector("tiny"), first_seq=1)
    receiver, events = receive([build_datagram(0, 0, h, UNIT_HEADER, True, True, other)] + tiny)
    assert receiver.stats.dropped == Counter({"bad_header": 1})
    assert rebuilt(events) == vector("tiny")  # the forged unit did not make it follow the id it claimed
    receiver, events = receive([build_datagram(0, 0, h, UNIT_HEADER, True, True, other)], Depacketizer(h))
    assert receiver.stats.dropped == Counter({"bad_header": 1}) and receiver.header is None


def test_a_sequence_jump_is_dropped_and_two_restart(stream):
    """RFC 3550 A.1: one datagram far away is dropped; two consecutive ones are a restarted sender."""
    tiny = vector("tiny")
    first = packetize_stream(tiny, first_seq=100)
    again = packetize_stream(tiny, first_seq=40000)
    receiver, events = receive(first[:-1] + [again[3]] + again)
    assert receiver.stats.dropped == Counter({"seq_jump": 2})  # again[3], then again[0]: not consecutive
    assert of(events, ResyncEvent) == [ResyncEvent(40001)]
    assert receiver.stats.resyncs == 1
    kept = [e.first_seq for e in of(events, PacketEvent)]
    assert kept == [101, 102, 103, 40001, 40002, 40003, 40004]  # the restarted stream from its 2nd datagram on
    assert [e.frame_index for e in of(events, PacketEvent)][3:6] == [0, 1, 2]  # frame indices may start again


def test_a_unit_longer_than_any_packet_is_dropped_as_too_large(stream, monkeypatch):
    """The bound keeps a sender that never sets E from growing a unit without end (16 MiB + framing; 100 here)."""
    monkeypatch.setattr(depacketizer, "MAX_PACKET_UNIT", 100)
    h = header_id(stream[:header_size(stream)])
    head = packetize_stream(stream, first_seq=0)[:4]  # header, 2 NOTEs, the first keyframe datagram (1187 bytes)
    endless = [build_datagram(4 + i, 0, h, UNIT_PACKET, False, i == 9, bytes(50)) for i in range(10)]
    receiver, events = receive(head + endless, Depacketizer(h))
    assert receiver.stats.dropped == Counter({"too_large": 11})
    assert [(u.reason, len(u.seqs)) for u in of(events, UnitDropEvent)] == [("too_large", 11)]


def test_foreign_payload_type_is_dropped(stream):
    datagrams = packetize_stream(stream, first_seq=0, payload_type=97)
    receiver, _ = receive(datagrams)
    assert receiver.stats.dropped == Counter({"payload_type": len(datagrams)})


# -- feedback ---------------------------------------------------------------------------------------------------------


def test_feedback_bytes_are_the_spec_example():
    (datagram,) = feedback_datagrams(0xF5E12F2C, True, [65535, 0, 2, 40], sender_ssrc=0x12345678)
    assert datagram.hex(" ") == ("81 ce 00 02 12 34 56 78 f5 e1 2f 2c "
                                 "81 cd 00 04 12 34 56 78 f5 e1 2f 2c ff ff 00 05 00 28 00 00")
    assert parse_feedback(datagram, 0xF5E12F2C) == (Feedback(0xF5E12F2C, True, (65535, 0, 2, 40), 0x12345678), None)


def test_nack_entries_cover_16_numbers_across_the_wrap():
    assert nack_entries([65530, 65531, 65546 % 65536, 65547 % 65536]) == [(65530, 1 | 1 << 15), (11, 0)]
    assert nack_entries([]) == [] and nack_entries([5, 5]) == [(5, 0)]


@pytest.mark.parametrize("keyframe", [False, True])
def test_feedback_round_trip_in_several_datagrams(keyframe):
    lost_seqs = [(60000 + 3 * i) % 65536 for i in range(3000)]  # every third number, across the wrap
    datagrams = feedback_datagrams(7, keyframe, lost_seqs, max_size=200)
    assert len(datagrams) > 1 and all(len(d) <= 200 for d in datagrams)
    parser = FeedbackParser(7)
    got = [parser.parse(d) for d in datagrams]
    assert [f.keyframe_request for f in got] == [keyframe] + [False] * (len(got) - 1)
    assert [s for f in got for s in f.lost] == lost_seqs
    assert parser.used == len(datagrams) and not parser.dropped


def test_feedback_skips_other_rtcp_and_drops_what_is_not_for_it():
    receiver_report = bytes([0x80, 201, 0, 1]) + b"\0\0\0\1"  # RR, no report blocks
    (pli,) = feedback_datagrams(9, True)
    parser = FeedbackParser(9)
    assert parser.parse(receiver_report + pli) == Feedback(9, True)
    assert parser.parse(receiver_report) is None
    assert parser.parse(feedback_datagrams(8, True)[0]) is None
    assert parser.parse(pli[:-1]) is None
    assert parser.parse(b"\x40" + pli[1:]) is None
    assert parser.parse(b"") is None
    assert parser.dropped == Counter({"no_feedback": 1, "header_id": 1, "truncated": 2, "bad_version": 1})
    assert feedback_datagrams(9) == []


# -- loopback ---------------------------------------------------------------------------------------------------------


def loopback(datagrams: list[bytes], loss: float, seed: int, receiver: Depacketizer) -> tuple[list[int], list]:
    """Send `datagrams` from one socket on 127.0.0.1 to another, a few in flight at a time; the receiving side
    drops each with probability `loss` (seeded, in-process) before the depacketizer sees it."""
    rng = random.Random(seed)
    dropped, events = [], []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(5.0)
        address = rx.getsockname()
        assert address[0] == "127.0.0.1"
        for i in range(0, len(datagrams), 8):
            batch = datagrams[i:i + 8]
            for d in batch:
                tx.sendto(d, address)
            for _ in batch:
                data, source = rx.recvfrom(65536)
                assert source[0] == "127.0.0.1"
                if rng.random() < loss:
                    dropped.append(seq_of(data))
                else:
                    events += receiver.push(data)
                    check_accounting(receiver)
    return dropped, events + receiver.flush()


@pytest.mark.parametrize("source", ["vector", "synthetic"])
def test_loopback_udp_with_seeded_loss_reports_exactly_the_dropped_numbers(source):
    data = vector("fv2v_multi_keyframe") if source == "vector" else synthetic_stream(400, 100, seed=1)
    datagrams = packetize_stream(data, first_seq=65400 if source == "synthetic" else 65530)
    loss, seed = 0.10, 29 if source == "synthetic" else 3  # a seed under which the vector loses some inner datagrams
    receiver = Depacketizer(header_id(data[:header_size(data)]))
    dropped, events = loopback(datagrams, loss, seed, receiver)
    sent = [seq_of(d) for d in datagrams]
    arrived = [s for s in sent if s not in dropped]
    # Numbers lost before the first or after the last datagram that arrived cannot be detected (spec §12.5).
    inner = [s for s in sent[sent.index(arrived[0]):sent.index(arrived[-1])] if s in dropped]
    assert len(inner) >= (2 if source == "vector" else 30)
    assert lost(events) == inner
    assert receiver.stats.lost == len(inner) and receiver.stats.datagrams == len(arrived)
    # What comes out: every packet after the first header unit that arrived none of whose datagrams was dropped.
    start = min(i for i, d in enumerate(datagrams) if parse_datagram(d)[0].kind == UNIT_HEADER and sent[i] in arrived)
    expected = [e.data for e in receive(datagrams)[1] if isinstance(e, PacketEvent) and sent.index(e.first_seq) > start
                and not set(sent[sent.index(e.first_seq):sent.index(e.last_seq) + 1]) & set(dropped)]
    assert [e.data for e in of(events, PacketEvent)] == expected
    assert len(expected) > 0.7 * len(list(StreamReader(data).records()))
