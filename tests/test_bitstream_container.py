"""Writer, reader and incremental parser: round trips, live feeding, every error with its offset."""
from __future__ import annotations

import io
import pickle
import struct
import zlib

import numpy as np
import pytest

from bitstream import (BitstreamError, EndPacket, FileStreamWriter, KeyframePacket, MotionDecoder, MotionEncoder,
                       MotionKind, MotionPacket, PacketParser, StreamReader, StreamWriter, TruncatedStreamError,
                       UnknownPacket, default_header)
from bitstream.packets import PacketType, frame

AU = b"\0\0\0\1\x67\x42\0\0\0\1\x65\x88\x80"


def make_stream(frame_count: int = 0, unknown: bool = False) -> tuple[bytes, list, object]:
    header = default_header(MotionKind.FV2V, 64, 48, 25, bytes(range(16)), num_keypoints=3, frame_count=frame_count)
    sink = io.BytesIO()
    writer = StreamWriter(sink, header)
    encoder = MotionEncoder(header)
    packets = []
    for t in range(7):
        if t in (0, 4):
            encoder.reset()
            packet = KeyframePacket(t, AU + bytes([t]))
        else:
            ints = {g.name: np.full((g.count, g.dims), t) for g in header.groups}
            packet = MotionPacket(t + (t > 4), encoder.encode(ints)[0])
        writer.write(packet)
        packets.append(packet)
        if unknown and t == 2:
            writer.write(UnknownPacket(200, b"future"))
    packets.append(writer.close())
    return sink.getvalue(), packets, header


def error_of(data: bytes) -> tuple[list, BitstreamError]:
    """Packets a reader delivers before the error, and the error."""
    got = []
    with pytest.raises(BitstreamError) as info:
        for packet in StreamReader(data):
            got.append(packet)
    return got, info.value


def test_writer_reader_round_trip_with_sizes():
    data, packets, header = make_stream(frame_count=8, unknown=True)
    reader = StreamReader(data)
    assert reader.header == header
    records = list(reader.records())
    assert [r.packet for r in records if not isinstance(r.packet, UnknownPacket)] == packets
    assert [r.packet for r in records if isinstance(r.packet, UnknownPacket)] == [UnknownPacket(200, b"future")]
    assert reader.parser.header_size + sum(r.size for r in records) == len(data)
    assert all(a.offset + a.size == b.offset for a, b in zip(records, records[1:]))
    assert list(StreamReader(io.BytesIO(data))) == packets
    assert packets[-1] == EndPacket(8, 2, 5, records[-1].offset)


def test_incremental_parser_byte_by_byte_and_flushing_writer():
    data, packets, _ = make_stream()
    parser = PacketParser()
    got = []
    for i in range(len(data)):
        got += parser.feed(data[i:i + 1])
        if i < 20:
            assert parser.header is None
    parser.close()
    assert got == packets

    class Sink(io.BytesIO):
        flushes = 0

        def flush(self):
            self.flushes += 1

    sink = Sink()
    writer = StreamWriter(sink, parser.header, flush=True)
    writer.write(packets[0])
    assert sink.flushes == 2
    live = PacketParser()
    assert live.feed(sink.getvalue()) == [packets[0]]  # decodable before the stream ends
    with pytest.raises(TruncatedStreamError, match="END"):
        live.close()


def fix_header_crc(data: bytearray) -> bytearray:
    body_len = struct.unpack_from("<H", data, 10)[0]
    struct.pack_into("<I", data, 12 + body_len, zlib.crc32(data[:12 + body_len]))
    return data


def test_header_errors_name_offsets():
    data, _, header = make_stream()
    hsize = len(header.pack())
    assert error_of(b"RIFF" + data[4:])[1].offset == 0
    assert "magic" in str(error_of(b"\x89FVX")[1])
    bad = bytearray(data)
    bad[8] = 6  # 1.x to 5.x are read; 6 is the first major no version defines
    _, err = error_of(bytes(bad))
    assert "version 6.0" in err.message and err.offset == 8
    bad = bytearray(data)
    bad[13] ^= 1
    _, err = error_of(bytes(bad))
    assert "header CRC" in err.message and err.offset == hsize - 4
    bad = fix_header_crc(bytearray(data))
    bad[28] = 7
    _, err = error_of(bytes(fix_header_crc(bad)))
    assert "motion kind 7" in err.message and err.offset == 28
    for cut in (3, 11, 30, hsize - 1):
        _, err = error_of(data[:cut])
        assert isinstance(err, TruncatedStreamError) and "header" in err.message


def test_truncation_yields_complete_packets_then_raises():
    data, packets, _ = make_stream()
    reader = StreamReader(data)
    offsets = [r.offset for r in reader.records()]
    for k, start in enumerate(offsets):
        got, err = error_of(data[:start + 3])
        assert got == packets[:k] and isinstance(err, TruncatedStreamError)
        assert (err.offset, err.packet) == (start, k) and "inside a packet" in err.message
    got, err = error_of(data[:offsets[-1]])
    assert got == packets[:-1] and "without an END" in err.message and err.packet == len(packets) - 1


def packet_offsets(data: bytes) -> list[int]:
    return [r.offset for r in StreamReader(data).records()]


def test_packet_crc_and_length_errors():
    data, packets, header = make_stream()
    offsets = packet_offsets(data)
    bad = bytearray(data)
    bad[offsets[2] + 4] ^= 0x10  # inside the third packet's body
    got, err = error_of(bytes(bad))
    # Reported where the damaged packet starts, not where the check fired (its CRC field).
    assert got == packets[:2] and "CRC mismatch" in err.message and (err.offset, err.packet) == (offsets[2], 2)
    assert str(err).startswith(f"packet 2 at byte {offsets[2]}: CRC mismatch")
    head = header.pack()
    huge = frame(PacketType.KEYFRAME, b"\0" + AU)[:1] + b"\xff\xff\xff\xff\x0f"
    _, err = error_of(head + huge)
    assert "exceeds the limit" in err.message and (err.offset, err.packet) == (len(head), 0)
    _, err = error_of(head + bytes([PacketType.MOTION, 0x80, 0x80, 0x84, 0x00]))
    assert "limit" in err.message or "overlong" in err.message
    _, err = error_of(head + b"\x01\x80\x00")
    assert "overlong varint" in err.message and (err.offset, err.packet) == (len(head), 0)
    _, err = error_of(head + b"\x01\xff\xff\xff\xff\xff")
    assert "varint" in err.message
    _, err = error_of(head + b"\x00\x00")
    assert "type 0" in err.message and err.offset == len(head)


def stream_of(header, *packets: bytes) -> bytes:
    return header.pack() + b"".join(packets)


def test_sequence_errors():
    _, _, header = make_stream()
    key = lambda i, au=AU: frame(PacketType.KEYFRAME, bytes([i]) + au)  # noqa: E731
    motion = lambda delta: frame(PacketType.MOTION, bytes([delta]) + b"\x12")  # noqa: E731
    h = len(header.pack())
    got, err = error_of(stream_of(header, motion(1)))
    assert got == [] and "before any keyframe" in err.message and err.offset == h
    got, err = error_of(stream_of(header, key(3), key(3)))
    assert len(got) == 1 and "does not follow" in err.message and err.offset == h + len(key(3))
    _, err = error_of(stream_of(header, key(3), motion(0)))
    assert "delta is 0" in err.message
    _, err = error_of(stream_of(header, key(0, b"\x65\x88")))
    assert "start code" in err.message
    _, err = error_of(stream_of(header, key(0, b"\0\0\1\x67\x42")))
    assert "IDR" in err.message
    end = frame(PacketType.END, bytes([1, 1, 0, h + len(key(0))]))
    got, err = error_of(stream_of(header, key(0), end, b"\0"))
    assert len(got) == 2 and "trailing data" in err.message and err.offset == h + len(key(0)) + len(end)
    wrong_end = frame(PacketType.END, bytes([2, 1, 0, h + len(key(0))]))
    _, err = error_of(stream_of(header, key(0), wrong_end))
    assert "END totals" in err.message
    counted = default_header(MotionKind.FV2V, 64, 48, 25, bytes(16), num_keypoints=3, frame_count=1)
    _, err = error_of(stream_of(counted, key(0), key(1)))
    assert "beyond the header's frame count" in err.message


def test_deferred_error_in_one_feed():
    data, packets, _ = make_stream()
    parser = PacketParser()
    assert parser.feed(data + b"junk") == packets
    with pytest.raises(BitstreamError, match="trailing"):
        parser.feed(b"")
    with pytest.raises(BitstreamError, match="trailing"):
        parser.close()


def test_writer_refuses_what_readers_refuse():
    _, _, header = make_stream()
    writer = StreamWriter(io.BytesIO(), header)
    with pytest.raises(BitstreamError, match="before any keyframe"):
        writer.write(MotionPacket(0, b""))
    writer.write(KeyframePacket(2, AU))
    with pytest.raises(BitstreamError, match="does not follow"):
        writer.write(KeyframePacket(1, AU))
    with pytest.raises(BitstreamError, match="65536"):
        writer.write(MotionPacket(3, bytes(65537)))
    with pytest.raises(BitstreamError, match="close"):
        writer.write(EndPacket(3, 1, 0, 0))
    with pytest.raises(BitstreamError, match="not an unknown"):
        writer.write(UnknownPacket(2, b""))
    counted = default_header(MotionKind.FV2V, 64, 48, 25, bytes(16), num_keypoints=3, frame_count=9)
    short = StreamWriter(io.BytesIO(), counted)
    short.write(KeyframePacket(0, AU))
    with pytest.raises(BitstreamError, match="header says 9"):
        short.close()


def test_file_writer_never_leaves_partial_output(tmp_path):
    _, packets, header = make_stream()
    path = tmp_path / "out.fvc"
    with FileStreamWriter(path, header) as writer:
        for p in packets[:-1]:
            writer.write(p)
        assert not path.exists() and (tmp_path / "out.fvc.tmp").exists()
    assert list(StreamReader(path)) == packets
    with pytest.raises(FileExistsError):
        FileStreamWriter(path, header)
    before = path.read_bytes()
    with pytest.raises(RuntimeError):
        with FileStreamWriter(path, header, force=True) as writer:
            writer.write(packets[0])
            raise RuntimeError("encoder crashed")
    assert path.read_bytes() == before and not (tmp_path / "out.fvc.tmp").exists()


def test_damage_anywhere_in_a_packet_names_that_packet_and_its_start():
    """spec §5.3: whichever check fires (cap, varint, CRC, body, order), the report is the packet's first byte."""
    data, packets, _ = make_stream(unknown=True)
    records = list(StreamReader(data).records())
    for record in records:
        for pos in range(record.offset, record.offset + record.size):
            bad = bytearray(data)
            bad[pos] ^= 0x41
            got, err = error_of(bytes(bad))
            assert (err.offset, err.packet) == (record.offset, record.index), (pos, str(err))
            assert str(err).startswith(f"packet {record.index} at byte {record.offset}: ")
            assert got == [r.packet for r in records[:record.index] if not isinstance(r.packet, UnknownPacket)]


def test_index_counts_every_packet_and_motion_errors_can_name_it():
    data, _, header = make_stream(unknown=True)
    records = list(StreamReader(data).records())
    assert [r.index for r in records] == list(range(len(records)))
    assert isinstance(records[3].packet, UnknownPacket)  # counted like any other packet
    with pytest.raises(BitstreamError) as info:
        MotionDecoder(header).decode(b"\xff" * 8, offset=records[4].offset, packet=records[4].index)
    assert str(info.value) == f"packet 4 at byte {records[4].offset}: invalid range-coded motion payload"


def test_trailing_data_and_a_missing_end_are_numbered_after_the_last_packet():
    data, packets, _ = make_stream()
    got, err = error_of(data + b"\x02")
    assert got == packets and (err.offset, err.packet) == (len(data), len(packets))
    end = packet_offsets(data)[-1]
    got, err = error_of(data[:end])
    assert isinstance(err, TruncatedStreamError) and (err.offset, err.packet) == (end, len(packets) - 1)


def test_damage_in_the_first_packet_leaves_the_header_readable():
    data, _, header = make_stream()
    start = len(header.pack())
    bad = bytearray(data)
    bad[start + 3] ^= 1
    reader = StreamReader(bytes(bad))
    assert reader.header == header
    with pytest.raises(BitstreamError, match="CRC mismatch") as info:
        list(reader)
    assert (info.value.offset, info.value.packet) == (start, 0)
    assert str(pickle.loads(pickle.dumps(info.value))) == str(info.value)  # errors cross process pools whole
