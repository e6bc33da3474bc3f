"""HEVC keyframes (bitstream 5.0, spec §5.9): the x265 coder, the format rules, the encoder, the decoder and the CLI."""
import io
import json
import re
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import bitstream.header
from bitstream import BitstreamError, KeyframePacket, MotionKind, StreamReader, StreamWriter, default_header
from bitstream.constants import KeyframeCodec
from bitstream.packets import PacketType, annexb_problem, frame, is_intra
from PIL import Image

from codec.cli import main
from codec.decoder import Decoder
from codec.encoder import EncoderConfig, encode_clip, luma_psnr
from codec.errors import InputError
from codec.h264 import H264Error, KeyframeDecoder, KeyframeEncoder, decode_intra, encode_intra
from codec.motion_model import build_untrained, for_inference, untrained_model_id
from codec.video import VideoWriter

SIZE = 64
HEVC = KeyframeCodec.HEVC
MODEL_ID = untrained_model_id("fv2v", "test", 0)  # the untrained_test_model fixture's
VECTOR = Path(__file__).resolve().parents[1] / "spec" / "vectors" / "hevc_predicted.fvc"


@pytest.fixture(scope="module")
def model(untrained_test_model):
    return untrained_test_model[0]


@pytest.fixture(scope="module")
def frames(astronaut8):
    return astronaut8


def config(**kw) -> EncoderConfig:
    return EncoderConfig(**{"width": SIZE, "height": SIZE, "fps": Fraction(25), "refresh_threshold": 1.0,
                            "max_gop": 3, "keyframe_codec": HEVC, **kw})


def hevc_types(au: bytes) -> list[int]:
    return [unit[0] >> 1 & 0x3F for unit in au.split(b"\0\0\1")[1:]]


# ---------------------------------------------------------------- the x265 coder

def test_an_hevc_sequence_is_one_idr_then_predicted_pictures_that_decode_in_order(frames):
    coder = KeyframeEncoder(30, predict=True, codec=HEVC)
    units = [coder.encode(f, intra=i == 0) for i, f in enumerate(frames[:3])]
    assert hevc_types(units[0]) == [32, 33, 34, 20]  # VPS, SPS, PPS, IDR_N_LP: no SEI
    assert [hevc_types(u) for u in units[1:]] == [[1], [1]]  # TRAIL_R
    assert [is_intra(u, HEVC) for u in units] == [True, False, False]
    assert [annexb_problem(u, True, HEVC) for u in units] == [None] * 3
    assert not is_intra(units[0])  # not an H.264 IDR: the codec decides how NAL units are read
    decoder = KeyframeDecoder(HEVC)
    pictures = [decoder.decode(u) for u in units]
    assert all(p.shape == (SIZE, SIZE, 3) and p.dtype == np.uint8 for p in pictures)
    assert all(luma_psnr(p, f, SIZE) > 25 for p, f in zip(pictures, frames))
    assert np.array_equal(pictures[0], decode_intra(encode_intra(frames[0], 30, HEVC), HEVC))
    again = KeyframeEncoder(30, predict=True, codec=HEVC)  # one thread: the same bytes every time
    assert [again.encode(f, intra=i == 0) for i, f in enumerate(frames[:3])] == units
    with pytest.raises(H264Error, match="predicted HEVC access unit .* without an intra one"):
        KeyframeDecoder(HEVC).decode(units[1])


def test_hevc_qp_means_what_it_means_for_h264(frames):
    """A lone IDR and a sequence's pictures at one --keyframe-qp are of one quality, and a higher QP costs fewer
    bytes, as with H.264."""
    sizes = [len(encode_intra(frames[0], qp, HEVC)) for qp in (20, 30, 40)]
    assert sizes[0] > sizes[1] > sizes[2]
    lone = decode_intra(encode_intra(frames[0], 30, HEVC), HEVC)
    first = KeyframeDecoder(HEVC).decode(KeyframeEncoder(30, predict=True, codec=HEVC).encode(frames[0]))
    assert np.array_equal(lone, first)  # same slice QP, same picture


# ---------------------------------------------------------------- format rules

def test_the_hevc_vector_is_5_0_and_declares_its_codec_after_ref_slots():
    data = VECTOR.read_bytes()
    reader = StreamReader(data)
    assert reader.parser.version == (5, 0) and reader.header.keyframe_codec == HEVC
    assert data[47 + 12 * 3] == 2 and data[48 + 12 * 3] == 1  # ref_slots, keyframe_codec
    keyframes = [p for p in reader if isinstance(p, KeyframePacket)]
    assert [p.intra for p in keyframes] == [True, False, False, True, False]
    assert all(p.codec == HEVC for p in keyframes)


def test_an_h264_stream_declares_no_new_version_and_no_codec_byte():
    h264 = default_header(MotionKind.FV2V, SIZE, SIZE, 25, MODEL_ID, ref_slots=2, resync=True)
    hevc = default_header(MotionKind.FV2V, SIZE, SIZE, 25, MODEL_ID, ref_slots=2, keyframe_codec=HEVC)
    assert h264.version() == (4, 0) and hevc.version() == (5, 0)
    assert len(hevc.pack()) == len(h264.pack()) + 1
    assert hevc.resync and hevc.predicted_keyframes  # 5.0 is 4.0 plus the field
    assert EncoderConfig(width=SIZE, height=SIZE, fps=Fraction(25)).keyframe_codec == KeyframeCodec.H264


def test_a_4_x_decoder_refuses_a_5_0_stream_at_byte_8(monkeypatch):
    monkeypatch.setattr(bitstream.header, "NEWEST_MAJOR", 4)
    with pytest.raises(BitstreamError) as info:
        StreamReader(VECTOR.read_bytes())
    assert info.value.offset == 8
    assert str(info.value) == "unsupported format version 5.0 (this decoder reads 1.x to 4.x) at byte 8"


def test_an_unknown_keyframe_codec_is_refused_at_its_byte():
    data = bytearray(VECTOR.read_bytes())
    at = 48 + 12 * 3
    data[at] = 2
    end = 12 + struct.unpack_from("<H", data, 10)[0]
    struct.pack_into("<I", data, end, zlib.crc32(data[:end]))
    with pytest.raises(BitstreamError, match="keyframe_codec 2 is not 0") as info:
        StreamReader(bytes(data))
    assert info.value.offset == at


def _records(data: bytes):
    return list(StreamReader(data).records())


def _replace_keyframe_unit(data: bytes, number: int, change) -> tuple[bytes, int]:
    """`data` with the access unit of its `number`-th KEYFRAME changed by `change`, CRC fixed; and its offset."""
    record = [r for r in _records(data) if isinstance(r.packet, KeyframePacket)][number]
    packet = record.packet
    body = bytes([packet.slot]) + bytes([packet.frame_index]) + change(packet.annexb)
    start, end = record.offset, record.offset + record.size
    return data[:start] + frame(PacketType.KEYFRAME, body) + data[end:], start


@pytest.mark.parametrize("change,problem", [
    (lambda au: au.replace(b"\0\0\1\x28\x01", b"\0\0\1\x2a\x01"), "HEVC NAL unit of type 21"),  # CRA
    (lambda au: au.replace(b"\0\0\1\x28\x01", b"\0\0\1\x28\x02"), "temporal id plus 1 = 2"),
    (lambda au: au.replace(b"\0\0\1\x28\x01", b"\0\0\1\x29\x01"), "layer 32"),
    (lambda au: au.replace(b"\0\0\1\x28\x01", b"\0\0\1\xa8\x01"), "forbidden_zero_bit"),
    (lambda au: au + b"\0\0\1\x4a\x01", "HEVC NAL unit of type 37"),  # end of bitstream
    (lambda au: au + b"\0\0\1\x02", "shorter than its 2-byte header"),
    (lambda au: au + b"\0\0\1\x02\x01\xd0", "mixes IDR and predicted slices"),
    (lambda au: au.split(b"\0\0\1\x28")[0], "no IDR or predicted slice (HEVC NAL type 19, 20, 1 or 0)"),
])
def test_a_broken_hevc_keyframe_is_a_one_line_error_at_its_packet(change, problem):
    bad, offset = _replace_keyframe_unit(VECTOR.read_bytes(), 0, change)
    with pytest.raises(BitstreamError, match=re.escape(problem)) as info:
        _records(bad)
    assert info.value.offset == offset and info.value.packet == 0
    assert "\n" not in str(info.value) and str(info.value).startswith(f"packet 0 at byte {offset}: keyframe")


def test_the_header_codec_decides_how_a_keyframe_is_read():
    """The HEVC vector's keyframes read as H.264 have no IDR or predicted slice; an H.264 keyframe cannot be
    written into an HEVC stream."""
    data = bytearray(VECTOR.read_bytes())
    data[48 + 12 * 3] = 0
    end = 12 + struct.unpack_from("<H", data, 10)[0]
    struct.pack_into("<I", data, end, zlib.crc32(data[:end]))
    with pytest.raises(BitstreamError, match=r"no IDR or predicted slice \(NAL type 5 or 1\)"):
        _records(bytes(data))
    header = default_header(MotionKind.FV2V, SIZE, SIZE, 25, MODEL_ID, keyframe_codec=HEVC)
    writer = StreamWriter(io.BytesIO(), header)
    with pytest.raises(BitstreamError, match="H264 keyframe in a stream of HEVC keyframes"):
        writer.write(KeyframePacket(0, b"\0\0\0\1\x65\x88"))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(number=st.integers(0, 4), at=st.integers(0, 40), value=st.integers(0, 255))
def test_any_byte_of_an_hevc_keyframe_changed_reads_or_fails_at_its_packet(number, at, value):
    """Fuzzing inside the access units (CRC fixed, so the HEVC checks are what answers): either the keyframe
    still follows spec §5.9, or a BitstreamError names the first byte of the first packet at fault."""
    def change(au):
        out = bytearray(au)
        out[at % len(out)] = value
        return bytes(out)

    bad, offset = _replace_keyframe_unit(VECTOR.read_bytes(), number, change)
    try:
        records = _records(bad)
    except BitstreamError as exc:
        assert exc.packet is not None and exc.offset <= offset and "\n" not in str(exc)
        return
    keyframes = [r.packet for r in records if isinstance(r.packet, KeyframePacket)]
    assert all(annexb_problem(k.annexb, True, HEVC) is None for k in keyframes)
    assert keyframes[0].intra


# ---------------------------------------------------------------- encoder, decoder and CLI

def _decode_all(model, data: bytes) -> list[np.ndarray]:
    reader = StreamReader(data)
    decoder = Decoder(model, reader.header)
    return [f for packet in reader for f in decoder.push(packet)]


@pytest.mark.parametrize("predict", [True, False])
def test_an_hevc_stream_decodes_to_the_encoders_reconstruction(model, frames, predict):
    clip = encode_clip(frames, model, config(predict_keyframes=predict), MODEL_ID)
    keyframes = [p for p in clip.packets if isinstance(p, KeyframePacket)]
    assert [(p.frame_index, p.intra, p.codec) for p in keyframes] == [
        (0, True, HEVC), (3, not predict, HEVC), (6, not predict, HEVC)]
    data = clip.to_bytes()
    reader = StreamReader(data)
    assert reader.parser.version == (5, 0) and reader.header.keyframe_codec == HEVC
    decoded = _decode_all(model, data)
    assert clip.stats.proxy_db == [luma_psnr(d, f, model.analysis_size) for d, f in zip(decoded, frames, strict=True)]
    # The keyframes shown are the HEVC pictures themselves.
    pictures = KeyframeDecoder(HEVC)
    for p in keyframes:
        assert np.array_equal(decoded[p.frame_index], pictures.decode(p.annexb))


def test_a_damaged_hevc_slice_is_a_one_line_decode_error_at_its_keyframe(model, frames):
    data = encode_clip(frames[:4], model, config(), MODEL_ID).to_bytes()
    def bad_pps(au: bytes) -> bytes:  # the slice header's first bits: first_slice_segment_in_pic_flag 1, PPS id 255+
        at = au.index(b"\0\0\1\x02\x01") + 5
        return au[:at] + b"\x80\x40" + au[at + 2:]

    damaged, offset = _replace_keyframe_unit(data, 1, bad_pps)  # the predicted keyframe of frame 3
    reader = StreamReader(damaged)
    decoder = Decoder(model, reader.header)
    with pytest.raises(BitstreamError) as info:
        for record in reader.records():
            decoder.push(record.packet, record.offset)
    assert info.value.offset == offset and "\n" not in str(info.value)
    assert "keyframe 3: " in str(info.value) and "HEVC access unit" in str(info.value)


def test_h264_streams_are_as_before(model, frames):
    default = encode_clip(frames, model, config(keyframe_codec=KeyframeCodec.H264), MODEL_ID)
    assert StreamReader(default.to_bytes()).parser.version == (3, 0)
    assert all(p.codec == KeyframeCodec.H264 for p in default.packets if isinstance(p, KeyframePacket))
    hevc = encode_clip(frames, model, config(), MODEL_ID)
    assert default.to_bytes() != hevc.to_bytes()


def test_fvc_encode_keyframe_codec_hevc_end_to_end(frames, tmp_path, capsys):
    video, stream = tmp_path / "in.mp4", tmp_path / "out.fvc"
    with VideoWriter(video, fps=25, crf=0) as writer:
        for f in frames:
            writer.write(f)
    argv = ["encode", video, stream, "--size", SIZE, "--model", "untrained-test", "--max-gop", 3,
            "--keyframe-codec", "hevc", "--force"]
    assert main([str(a) for a in argv]) == 0
    assert "at QP 30, HEVC" in capsys.readouterr().out
    assert main(["info", str(stream), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["version"] == "5.0" and info["keyframe_codec"] == "hevc"
    assert main(["info", str(stream)]) == 0
    assert "HEVC keyframes" in capsys.readouterr().out
    assert main(["decode", str(stream), str(tmp_path / "png"), "--format", "png", "--model", "untrained-test",
                 "--quiet"]) == 0
    shown = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((tmp_path / "png").glob("*.png"))]
    # The model as the CLI loads it (channels-last), so the pixels round the same way.
    decoded = _decode_all(for_inference(build_untrained("fv2v", "test", 0), torch.device("cpu")), stream.read_bytes())
    assert len(shown) == len(decoded) == len(frames)
    assert all(np.array_equal(a, b) for a, b in zip(shown, decoded))


def test_an_unknown_keyframe_codec_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["encode", "in.mp4", "out.fvc", "--keyframe-codec", "av1"])
    assert exit_info.value.code != 0
    assert "invalid choice: 'av1'" in capsys.readouterr().err
    with pytest.raises(InputError, match="--keyframe-codec 7 is not one of h264, hevc"):
        config(keyframe_codec=7)
