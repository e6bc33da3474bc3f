"""Fuzzing reader + motion decoder with mutated conformance vectors: BitstreamError or success, nothing else.

CI runs 10,000 derandomized cases; FVC_FUZZ_EXAMPLES=200000 runs a longer campaign.
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bitstream import BitstreamError, KeyframePacket, MotionDecoder, MotionPacket, StreamReader, UseSlotPacket
from bitstream.varint import decode_varint

VECTORS = [p.read_bytes() for p in sorted((Path(__file__).resolve().parents[1] / "spec" / "vectors").glob("*.fvc"))]
EXAMPLES = int(os.environ.get("FVC_FUZZ_EXAMPLES", "10000"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=os.environ.get("CI") == "true" or EXAMPLES <= 10000,
                database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def decode_everything(data: bytes) -> int:
    """Parse and decode a whole stream; returns the number of packets, raises only BitstreamError.

    Every slot the reader lets through is one a decoder holds a keyframe for (spec §5.6), every
    predicted keyframe has an intra one before it (spec §5.7), and every RESYNC names the keyframe of the
    active slot (spec §4.6).
    """
    reader = StreamReader(data)
    decoder = MotionDecoder(reader.header)
    count, filled, intra_seen, active = 0, {}, False, None
    for record in reader.records():
        if isinstance(record.packet, KeyframePacket):
            assert record.packet.slot < reader.header.ref_slots
            assert record.packet.intra or (reader.header.predicted_keyframes and intra_seen)
            intra_seen = intra_seen or record.packet.intra
            filled[record.packet.slot] = record.packet.frame_index
            active = record.packet.slot
            decoder.reset()
        elif isinstance(record.packet, UseSlotPacket):
            assert record.packet.slot in filled
            active = record.packet.slot
        elif isinstance(record.packet, MotionPacket):
            if record.packet.resync:
                assert reader.header.resync and record.packet.keyframe == filled[active]
                decoder.reset()
            decoder.decode(record.packet.payload, record.offset)
        count += 1
    return count


def refix_crcs(data: bytearray) -> bytearray:
    """Recompute every CRC the framing still reaches, so mutations get past the CRC checks."""
    if len(data) < 12:
        return data
    end = 12 + struct.unpack_from("<H", data, 10)[0]
    if end + 4 > len(data):
        return data
    struct.pack_into("<I", data, end, zlib.crc32(data[:end]))
    pos = end + 4
    while pos < len(data):
        try:
            length, body = decode_varint(data, pos + 1)
        except BitstreamError:
            break
        if body + length + 4 > len(data):
            break
        struct.pack_into("<I", data, body + length, zlib.crc32(data[pos:body + length]))
        pos = body + length + 4
    return data


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("set"), st.integers(0, 10**6), st.sampled_from([0, 1, 2, 3, 4, 0x7F, 0x80, 0xFF])),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 16)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.none()),
)


def mutate(data: bytes, mutations: list) -> bytearray:
    out = bytearray(data)
    for kind, pos, arg in mutations:
        pos %= len(out) + 1
        if kind == "flip" and pos < len(out):
            out[pos] ^= arg
        elif kind == "set" and pos < len(out):
            out[pos] = arg
        elif kind == "delete":
            del out[pos:pos + arg]
        elif kind == "insert":
            out[pos:pos] = arg
        elif kind == "truncate":
            del out[pos:]
    return out


@FUZZ
@given(index=st.integers(0, len(VECTORS) - 1), mutations=st.lists(mutation, min_size=1, max_size=4),
       refix=st.booleans())
def test_mutated_vectors_raise_only_bitstream_errors(index, mutations, refix):
    data = mutate(VECTORS[index], mutations)
    if refix:
        data = refix_crcs(data)
    try:
        decode_everything(bytes(data))
    except BitstreamError as exc:
        assert exc.offset is None or 0 <= exc.offset <= len(data)


@settings(max_examples=max(EXAMPLES // 10, 100), deadline=None, derandomize=True, database=None)
@given(index=st.integers(0, len(VECTORS) - 1), payload=st.binary(max_size=96))
def test_random_payloads_raise_only_bitstream_errors(index, payload):
    decoder = MotionDecoder(StreamReader(VECTORS[index]).header)
    for _ in range(2):
        try:
            decoder.decode(payload)
        except BitstreamError:
            pass


def test_unmutated_vectors_decode():
    assert all(decode_everything(v) >= 3 for v in VECTORS)
