"""NOTE packets (version 1.1), keyframe QP from the H.264 headers, and `summarize` of whole and damaged streams."""
from __future__ import annotations

import io
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitstream import (BitstreamError, KeyframePacket, MotionEncoder, MotionKind, MotionPacket, NotePacket,
                       StreamReader, StreamWriter, SymbolError, UnknownPacket, default_header, summarize)
from bitstream.avc import slice_qp
from bitstream.packets import PacketType, frame
from bitstream.varint import encode_varint

HEADER = default_header(MotionKind.FV2V, 64, 48, 25, bytes(range(16)), num_keypoints=3)


# ---------------------------------------------------------------- H.264 syntax written from ITU-T H.264 §7.3

class Bits:
    """Writes u(n), ue(v) and se(v) fields, then a NAL unit with its emulation prevention bytes."""

    def __init__(self):
        self.bits: list[int] = []

    def u(self, n: int, value: int) -> Bits:
        self.bits += [(value >> (n - 1 - i)) & 1 for i in range(n)]
        return self

    def ue(self, value: int) -> Bits:
        n = (value + 1).bit_length()
        return self.u(n - 1, 0).u(n, value + 1)

    def se(self, value: int) -> Bits:
        return self.ue(2 * value - 1 if value > 0 else -2 * value)

    def nal(self, header_byte: int, tail: bytes = b"") -> bytes:
        bits = self.bits + [1] + [0] * (-(len(self.bits) + 1) % 8)  # rbsp_stop_one_bit, alignment
        rbsp = bytes(int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8)) + tail
        out, zeros = bytearray([header_byte]), 0
        for byte in rbsp:
            if zeros >= 2 and byte <= 3:
                out.append(3)
                zeros = 0
            out.append(byte)
            zeros = zeros + 1 if byte == 0 else 0
        return b"\0\0\0\1" + bytes(out)


def sps(sps_id=0, profile=66, chroma=1, separate=0, scaling=(), frame_num_bits=4, poc_type=2, poc_lsb_bits=4,
        always_zero=1, cycle=(), frame_mbs_only=1) -> bytes:
    b = Bits().u(8, profile).u(8, 0).u(8, 30).ue(sps_id)
    if profile in (100, 110, 122, 244):
        b.ue(chroma)
        if chroma == 3:
            b.u(1, separate)
        b.ue(0).ue(0).u(1, 0).u(1, bool(scaling))
        if scaling:
            for i in range(8 if chroma != 3 else 12):
                deltas = scaling[i] if i < len(scaling) else None
                b.u(1, deltas is not None)
                for d in deltas or ():
                    b.se(d)
    b.ue(frame_num_bits - 4).ue(poc_type)
    if poc_type == 0:
        b.ue(poc_lsb_bits - 4)
    elif poc_type == 1:
        b.u(1, always_zero).se(-2).se(1).ue(len(cycle))
        for offset in cycle:
            b.se(offset)
    b.ue(1).u(1, 0).ue(3).ue(2).u(1, frame_mbs_only)
    return b.u(1, 1).u(1, 0).u(1, 0).nal(0x67)  # direct_8x8_inference, no cropping, no VUI


def pps(pps_id=0, sps_id=0, init_qp=26, bottom_field_pic_order=0, slice_groups=0, redundant=0) -> bytes:
    b = Bits().ue(pps_id).ue(sps_id).u(1, 1).u(1, bottom_field_pic_order).ue(slice_groups)
    if slice_groups:
        b.ue(0).ue(5).ue(5)  # map type 0, run lengths
    b.ue(0).ue(0).u(1, 0).u(2, 0).se(init_qp - 26).se(0).se(-2).u(1, 1).u(1, 0).u(1, redundant)
    return b.nal(0x68)


def idr(qp_delta, pps_id=0, slice_type=7, separate=0, frame_num_bits=4, frame_mbs_only=1, field_pic=0,
        poc_type=2, poc_lsb_bits=4, bottom_field_pic_order=0, always_zero=1, redundant=0) -> bytes:
    b = Bits().ue(0).ue(slice_type).ue(pps_id)
    if separate:
        b.u(2, 1)
    b.u(frame_num_bits, 0)
    if not frame_mbs_only:
        b.u(1, field_pic)
        if field_pic:
            b.u(1, 1)
    b.ue(0)  # idr_pic_id
    if poc_type == 0:
        b.u(poc_lsb_bits, 0)
        if bottom_field_pic_order and not field_pic:
            b.se(-1)
    elif poc_type == 1 and not always_zero:
        b.se(3)
        if bottom_field_pic_order and not field_pic:
            b.se(-3)
    if redundant:
        b.ue(0)
    b.u(1, 0).u(1, 0).se(qp_delta)  # dec_ref_pic_marking, slice_qp_delta
    return b.ue(0).nal(0x65, tail=bytes(40))  # disable_deblocking_filter_idc, then "slice data"


@pytest.mark.parametrize("case", [
    dict(),  # baseline: poc type 2, frames only
    # Scaling lists: 16 deltas; -8 at once (use the default list); a 64-list ending early at a zero scale.
    dict(profile=100, scaling=[(3, -2, 5) + (0,) * 13, None, (-8,), None, None, None, (4, 2, -14), (1,) * 64],
         poc_type=0, poc_lsb_bits=16,
         frame_num_bits=16, frame_mbs_only=0, bottom_field_pic_order=1, redundant=1),
    dict(profile=244, chroma=3, separate=1, poc_type=1, always_zero=0, cycle=(4, -4), frame_mbs_only=0,
         field_pic=1, bottom_field_pic_order=1),
    dict(profile=100, poc_type=1, always_zero=1, cycle=(2,), bottom_field_pic_order=1),
])
def test_slice_qp_reads_every_path_to_slice_qp_delta(case):
    sps_keys = {"profile", "chroma", "separate", "scaling", "frame_num_bits", "poc_type", "poc_lsb_bits",
                "always_zero", "cycle", "frame_mbs_only"}
    slice_keys = {"separate", "frame_num_bits", "frame_mbs_only", "field_pic", "poc_type", "poc_lsb_bits",
                  "bottom_field_pic_order", "always_zero", "redundant"}
    pps_keys = {"bottom_field_pic_order", "redundant"}
    for init_qp, delta in ((26, 0), (22, 9), (40, -13)):
        au = (sps(sps_id=2, **{k: v for k, v in case.items() if k in sps_keys})
              + pps(pps_id=0, sps_id=2, init_qp=10)  # a decoy the slice does not use
              + pps(pps_id=1, sps_id=2, init_qp=init_qp, **{k: v for k, v in case.items() if k in pps_keys})
              + idr(delta, pps_id=1, **{k: v for k, v in case.items() if k in slice_keys}))
        assert slice_qp(au) == init_qp + delta


def test_slice_qp_undoes_emulation_prevention():
    au = sps(frame_num_bits=16, poc_type=0, poc_lsb_bits=16) + pps(init_qp=30) + idr(-4, frame_num_bits=16,
                                                                                       poc_type=0, poc_lsb_bits=16)
    assert b"\0\0\3" in au.split(b"\0\0\0\1")[-1]
    assert slice_qp(au) == 26


@pytest.mark.parametrize("au", [
    pps() + idr(0),  # no SPS
    sps() + idr(0),  # no PPS
    sps() + pps(slice_groups=1) + idr(0),  # slice groups (FMO) are not followed
    sps() + pps() + idr(0, slice_type=5),  # a P slice cannot be IDR
    sps() + pps() + idr(0)[:6],  # cut inside the slice header
    sps() + pps(),  # no IDR slice
    b"\0\0\1",
])
def test_slice_qp_is_none_when_unreadable(au):
    assert slice_qp(au) is None


def test_slice_qp_of_x264_keyframes_follows_the_qp_setting():
    from codec.h264 import encode_intra

    image = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    low, high = (slice_qp(encode_intra(image, qp)) for qp in (20, 30))
    assert 0 <= low <= 51 and high - low == 10


# ---------------------------------------------------------------- NOTE packets

AU = sps() + pps(init_qp=24) + idr(3)


def note_stream(notes_first=({"writer": "test 1", "crop": None},)) -> bytes:
    """A 1.1 stream: NOTEs, then keyframe 0 after a reason NOTE, motion, keyframe 3 without one, motion, END."""
    sink = io.BytesIO()
    writer = StreamWriter(sink, HEADER, minor=1)
    encoder = MotionEncoder(HEADER)
    for fields in notes_first:
        writer.write(NotePacket.of(fields))
    for t in range(5):
        if t in (0, 3):
            if t == 0:
                writer.write(NotePacket.of({"keyframe_reason": "quality", "crop": [1, 2, 30]}))
            encoder.reset()
            writer.write(KeyframePacket(t, AU))
        else:
            writer.write(MotionPacket(t, encoder.encode({g.name: np.full((g.count, g.dims), t)
                                                         for g in HEADER.groups})[0]))
    writer.close()
    return sink.getvalue()


def test_notes_round_trip_in_a_1_1_stream_and_decoding_never_sees_them():
    data = note_stream()
    reader = StreamReader(data)
    assert reader.parser.version == (1, 1)
    notes = [r.packet for r in reader.records() if isinstance(r.packet, NotePacket)]
    assert [n.fields for n in notes] == [{"writer": "test 1", "crop": None},
                                        {"keyframe_reason": "quality", "crop": [1, 2, 30]}]
    assert not any(isinstance(p, NotePacket) for p in StreamReader(data))


def test_writers_refuse_notes_a_reader_would_refuse():
    with pytest.raises(BitstreamError, match="need version 1.1"):
        StreamWriter(io.BytesIO(), HEADER).write(NotePacket.of({"a": 1}))
    writer = StreamWriter(io.BytesIO(), HEADER, minor=1)
    with pytest.raises(BitstreamError, match="not a UTF-8 JSON object"):
        writer.write(NotePacket(b"[1]"))
    with pytest.raises(BitstreamError, match="exceeds the limit 4096"):
        writer.write(NotePacket(b'{"a":"' + b"x" * 4100 + b'"}'))
    with pytest.raises(BitstreamError, match="not an unknown type"):
        writer.write(UnknownPacket(PacketType.NOTE, b"{}"))
    for fields, problem in (({"a": float("nan")}, "not JSON"), ({"a": object()}, "not JSON"),
                            ({"\ud800": 1}, "surrogate"), ({1: 0, "1": 0}, "repeated member"),
                            ({"a": "x" * 5000}, "exceeds the limit 4096"), ([1], "not list")):
        with pytest.raises(SymbolError, match=problem):
            NotePacket.of(fields)
    nested = {}
    for _ in range(15):
        nested = {"a": nested}
    assert NotePacket.of(nested).fields == nested  # 16 levels with the top-level object
    with pytest.raises(SymbolError, match="deeper than 16"):
        NotePacket.of({"a": nested})


@pytest.mark.parametrize("body,problem", [
    (b"\xff{}", "not a UTF-8 JSON object"),
    (b"\xef\xbb\xbf{}", "not a UTF-8 JSON object"),
    (b'"text"', "not a UTF-8 JSON object"),
    (b'{"a":1,"a":2}', "repeated member name"),
    (b'{"a":NaN}', "not JSON compliant"),
    (b'{"a":-Infinity}', "not JSON compliant"),
    (b'{"a":1e400}', "not JSON compliant"),
    (b'{"a":"\\ud800"}', "surrogates not allowed"),
    (b'{"a":' + b"[" * 16 + b"]" * 16 + b"}", "deeper than 16"),
    (b"[" * 2000 + b"]" * 2000, "deeper than 16"),  # deeper than Python's recursion limit
])
def test_readers_refuse_a_bad_note_at_its_start_but_1_0_streams_skip_type_4(body, problem):
    head = HEADER.pack(1)
    packet = frame(PacketType.NOTE, body)
    with pytest.raises(BitstreamError, match=problem) as info:
        list(StreamReader(head + packet))
    assert (info.value.offset, info.value.packet) == (len(head), 0)
    # In a 1.0 stream type 4 is an unknown type: skipped whatever its body.
    head = HEADER.pack()
    end = frame(PacketType.END, bytes(3) + encode_varint(len(head) + len(packet)))
    assert [r.packet for r in StreamReader(head + packet + end).records()][0] == UnknownPacket(4, body)


def test_note_length_cap_applies_from_1_1_on():
    long = frame(PacketType.NOTE, b'{"a":"' + b"x" * 4100 + b'"}')
    with pytest.raises(BitstreamError, match="exceeds the limit 4096 for type 4"):
        list(StreamReader(HEADER.pack(1) + long))
    with pytest.raises(BitstreamError, match="without an END"):  # 1.0: an unknown type, up to 16 MiB
        list(StreamReader(HEADER.pack() + long))


# ---------------------------------------------------------------- summarize

def test_summary_lists_keyframes_with_qp_reason_and_the_merged_notes():
    data = note_stream(notes_first=({"writer": "test 1", "source": {"width": 640, "height": 480}},
                                    {"writer": "test 2"}))
    summary = summarize(data, packets=True)
    assert summary["version"] == "1.1" and summary["bytes"] == len(data) and summary["error"] is None
    assert summary["notes"] == {"writer": "test 2", "source": {"width": 640, "height": 480}, "crop": [1, 2, 30]}
    records = list(StreamReader(data).records())
    keyframes = [r for r in records if isinstance(r.packet, KeyframePacket)]
    assert summary["keyframe_list"] == [
        {"frame": 0, "offset": keyframes[0].offset, "bytes": keyframes[0].size, "qp": 27, "reason": "quality"},
        # No NOTE before keyframe 3: the last reason given holds (spec §4.4).
        {"frame": 3, "offset": keyframes[1].offset, "bytes": keyframes[1].size, "qp": 27, "reason": "quality"}]
    assert summary["packets"] == [{"index": r.index, "type": t, "frame": getattr(r.packet, "frame_index", None),
                                   "offset": r.offset, "bytes": r.size}
                                  for r, t in zip(records, ["note", "note", "note", "keyframe", "motion", "motion",
                                                            "keyframe", "motion", "end"])]
    assert summary["note_packets"] == 3 and summary["bytes_by_type"]["note"] == sum(
        r.size for r in records if isinstance(r.packet, NotePacket))
    assert "packets" not in summarize(data)


def test_summary_of_a_damaged_stream_covers_the_part_before_the_damage():
    data = note_stream()
    records = list(StreamReader(data).records())
    broken = records[4]  # the motion packet of frame 2
    assert isinstance(broken.packet, MotionPacket) and broken.packet.frame_index == 2
    bad = bytearray(data)
    bad[broken.offset + broken.size - 6] ^= 0x80
    summary = summarize(bytes(bad))
    assert summary["error"] == {"message": summary["error"]["message"], "offset": broken.offset, "packet": 4}
    assert "CRC mismatch" in summary["error"]["message"]
    assert summary["frames"] == 2 and summary["keyframes"] == 1 and summary["motion_packets"] == 1
    assert summary["bytes"] == broken.offset
    with pytest.raises(BitstreamError, match="header CRC"):
        summarize(bytes(bad[:20]) + bytes([bad[20] ^ 1]) + bytes(bad[21:]))


# ---------------------------------------------------------------- the encoder's NOTEs

def test_encoded_clips_carry_writer_source_crop_and_keyframe_reasons(tmp_path):
    import codec
    from codec.encoder import EncodedClip, EncodeStats, EncoderConfig, KeyframeReason
    from codec.errors import InputError

    config = EncoderConfig(width=64, height=48, fps=Fraction(25),
                           note={"source": {"width": 1280, "height": 720}, "crop": [100, 50, 512]})
    encoder = MotionEncoder(HEADER)
    motion = MotionPacket(1, encoder.encode({g.name: np.ones((g.count, g.dims), int) for g in HEADER.groups})[0])
    stats = EncodeStats(frames=3, keyframe_log={0: KeyframeReason.FIRST, 2: KeyframeReason.QUALITY})
    clip = EncodedClip(HEADER, [KeyframePacket(0, AU), motion, KeyframePacket(2, AU)], stats, config, {})
    clip.write(tmp_path / "c.fvc")
    data = clip.to_bytes()
    assert (tmp_path / "c.fvc").read_bytes() == data
    summary = summarize(data)
    assert summary["version"] == "1.1"
    assert summary["notes"] == {"writer": f"fvc {codec.__version__}", "source": {"width": 1280, "height": 720},
                                "crop": [100, 50, 512]}
    assert [(k["frame"], k["reason"]) for k in summary["keyframe_list"]] == [(0, "first"), (2, "quality")]
    with pytest.raises(InputError, match="encoder note"):
        EncoderConfig(width=64, height=48, fps=Fraction(25), note={"crop": object()})


def test_a_keyframe_reason_note_is_written_only_where_the_reason_changes():
    from codec.encoder import EncodedClip, EncodeStats, EncoderConfig, KeyframeReason

    reasons = [KeyframeReason.FIRST, *[KeyframeReason.QUALITY] * 3, KeyframeReason.MAX_GOP, KeyframeReason.QUALITY]
    stats = EncodeStats(frames=len(reasons), keyframe_log=dict(enumerate(reasons)))
    clip = EncodedClip(HEADER, [KeyframePacket(i, AU) for i in range(len(reasons))], stats,
                       EncoderConfig(width=64, height=48, fps=Fraction(25)), {})
    data = clip.to_bytes()
    notes = [r.packet.fields for r in StreamReader(data).records() if isinstance(r.packet, NotePacket)]
    # The writer's NOTE, then one per change of reason: 4, not 6, and ~31 bytes saved per repeated one.
    assert [n.get("keyframe_reason") for n in notes] == [None, "first", "quality", "max_gop", "quality"]
    assert [k["reason"] for k in summarize(data)["keyframe_list"]] == [r.value for r in reasons]


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=4))
def test_summarize_of_any_damage_returns_a_summary_or_a_header_error(flips):
    data = bytearray(note_stream())
    for pos, xor in flips:
        data[pos % len(data)] ^= xor
    try:
        summary = summarize(bytes(data))
    except BitstreamError as exc:
        assert exc.packet is None  # only damage to the header stops the summary
        return
    assert summary["bytes"] <= len(data) and all(k["qp"] is None or -12 <= k["qp"] <= 51
                                                 for k in summary["keyframe_list"])
