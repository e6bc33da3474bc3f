"""Predicted keyframes (bitstream 3.0): the H.264 sequence coder, the format rules, the encoder and the CLI."""
import io
import json
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from bitstream import (BitstreamError, KeyframePacket, MotionKind, StreamReader, StreamWriter, default_header,
                       summarize)
from bitstream.packets import PacketType, frame, is_intra
from codec.cli import main
from codec.decoder import Decoder
from codec.encoder import EncoderConfig, KeyframeReason, encode_clip, encode_to_rate, luma_psnr
from codec.errors import InputError
from codec.h264 import H264Error, KeyframeDecoder, KeyframeEncoder, decode_intra, encode_intra
from codec.video import VideoWriter

SIZE = 64
THRESHOLD = 18.0  # between a frame rendered from its own picture and from another one (see test_ref_slots)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return 10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2))


def config(**kw) -> EncoderConfig:
    return EncoderConfig(**{"width": SIZE, "height": SIZE, "fps": Fraction(25), "refresh_threshold": THRESHOLD,
                            "predict_keyframes": True, **kw})


# ---------------------------------------------------------------- H.264

def test_a_keyframe_the_sequence_has_seen_costs_a_fraction_of_an_intra_one(stills):
    a, b = stills["A"], stills["B"]
    coder = KeyframeEncoder(30, predict=True)
    units = [coder.encode(a, intra=True), coder.encode(b, intra=False), coder.encode(a, intra=False)]
    assert [is_intra(u) for u in units] == [True, False, False]
    # The second A takes its blocks from the first (4 pictures back at most), so it is nearly free.
    assert len(units[2]) * 5 < len(units[0])
    decoder = KeyframeDecoder()
    pictures = [decoder.decode(u) for u in units]
    alone = decode_intra(encode_intra(a, 30))
    # One --keyframe-qp, one slice QP: the sequence's pictures are as close to the source as a lone IDR.
    for picture, source in zip(pictures, (a, b, a)):
        assert psnr(picture, source) > psnr(alone, a) - 1.0
    assert KeyframeEncoder(30).encode(a, intra=False) == encode_intra(a, 30)  # without predict: always a lone IDR


def test_a_predicted_picture_needs_the_intra_one_before_it(stills):
    with pytest.raises(H264Error, match="needs an intra keyframe before it"):
        KeyframeEncoder(30, predict=True).encode(stills["A"], intra=False)
    coder = KeyframeEncoder(30, predict=True)
    intra, predicted = coder.encode(stills["A"], True), coder.encode(stills["B"], False)
    with pytest.raises(H264Error, match="without an intra one before it"):
        KeyframeDecoder().decode(predicted)
    with pytest.raises(H264Error, match="without an intra one before it"):
        decode_intra(predicted)
    decoder = KeyframeDecoder()
    decoder.decode(intra)
    with pytest.raises(H264Error):
        decoder.decode(predicted[:len(predicted) // 2])
    # A damaged picture ends the sequence: nothing more is predicted from its references.
    with pytest.raises(H264Error, match="without an intra one before it"):
        decoder.decode(predicted)


def test_damaged_predicted_pictures_raise_h264error_or_decode_never_anything_else(stills):
    coder = KeyframeEncoder(30, predict=True)
    intra, predicted = coder.encode(stills["A"], True), coder.encode(stills["B"], False)
    rng = np.random.default_rng(0)
    outcomes = set()
    for _ in range(60):
        damaged = bytearray(predicted)
        for pos in rng.integers(4, len(damaged), size=rng.integers(1, 4)):
            damaged[pos] ^= int(rng.integers(1, 256))
        decoder = KeyframeDecoder()
        decoder.decode(intra)
        try:
            picture = decoder.decode(bytes(damaged))
            assert picture.shape == (SIZE, SIZE, 3) and picture.dtype == np.uint8
            outcomes.add("decoded")
        except H264Error:
            outcomes.add("refused")
    assert "refused" in outcomes  # the checks are on: some damage is caught, not concealed


# ---------------------------------------------------------------- bitstream

HEADER = default_header(MotionKind.FV2V, 64, 64, 25, bytes(16), num_keypoints=2, predicted_keyframes=True)
IDR = b"\0\0\0\1\x67\x42\xc0\x1e" + b"\0\0\1\x65\x88\x84"
P = b"\0\0\1\x41\x9a\x02"


def test_a_stream_with_predicted_keyframes_is_version_3_0_and_reads_back():
    sink = io.BytesIO()
    writer = StreamWriter(sink, HEADER)
    packets = [KeyframePacket(0, IDR), KeyframePacket(1, P), KeyframePacket(2, IDR)]
    for packet in packets:
        writer.write(packet)
    writer.close()
    reader = StreamReader(sink.getvalue())
    assert reader.parser.version == (3, 0) and reader.header == HEADER and reader.header.predicted_keyframes
    assert [r.packet for r in reader.records()][:-1] == packets
    assert [p.intra for p in packets] == [True, False, True]
    # The 2.x header layout: the ref_slots byte, nothing else.
    assert len(HEADER.pack()) == len(default_header(MotionKind.FV2V, 64, 64, 25, bytes(16), num_keypoints=2,
                                                    ref_slots=2).pack())


@pytest.mark.parametrize("header,units,problem", [
    (HEADER, [P], "predicted keyframe before any intra keyframe"),
    (HEADER, [IDR, IDR + P], "keyframe mixes IDR and predicted slices"),
    (HEADER, [b"\0\0\1\x67\x42"], "keyframe has no IDR or predicted slice"),
    (default_header(MotionKind.FV2V, 64, 64, 25, bytes(16), num_keypoints=2, ref_slots=2), [IDR, P],
     "keyframe has no IDR slice"),
])
def test_writers_and_readers_refuse_a_keyframe_the_version_does_not_allow(header, units, problem):
    writer = StreamWriter(io.BytesIO(), header)
    for index, unit in enumerate(units[:-1]):
        writer.write(KeyframePacket(index, unit))
    with pytest.raises(BitstreamError, match=problem):
        writer.write(KeyframePacket(len(units) - 1, units[-1]))
    # The same packet spliced into a stream is refused by the reader at that packet's first byte.
    sink = io.BytesIO()
    good = StreamWriter(sink, header)
    for index, unit in enumerate(units[:-1]):
        good.write(KeyframePacket(index, unit))
    offset = len(sink.getvalue())
    body = (b"\0" if header.ref_slots > 1 or header.predicted_keyframes else b"") + bytes([len(units) - 1]) + units[-1]
    with pytest.raises(BitstreamError, match=problem) as info:
        list(StreamReader(sink.getvalue() + frame(PacketType.KEYFRAME, body)).records())
    assert info.value.offset == offset


def test_version_3_names_predicted_keyframes_in_its_summary():
    header = bytearray(HEADER.pack()[:-4])
    assert header[8] == 3
    header[8] = 2  # the same header as 2.0: keyframes must be IDR again
    restamped = bytes(header) + struct.pack("<I", zlib.crc32(header))
    assert not StreamReader(restamped).header.predicted_keyframes
    summary = summarize(Path(__file__).resolve().parents[1] / "spec" / "vectors" / "fv2v_predicted.fvc")
    assert summary["version"] == "3.0"
    assert [k["predicted"] for k in summary["keyframe_list"]] == [False, True, True, False, True]
    assert [k["qp"] for k in summary["keyframe_list"]][1:3] == [None, None]


# ---------------------------------------------------------------- encoder and decoder

def test_quality_refreshes_are_predicted_and_decode_to_the_encoders_reconstruction(trained, stills):
    model, ident = trained
    frames = [stills[c] for c in "AAABBBAAA"]
    intra = encode_clip(frames, model, config(predict_keyframes=False), ident)
    predicted = encode_clip(frames, model, config(), ident)
    keyframes = [p for p in predicted.packets if isinstance(p, KeyframePacket)]
    assert [(p.frame_index, p.intra) for p in keyframes] == [(0, True), (3, False), (6, False)]
    assert predicted.stats.keyframe_reasons == {KeyframeReason.FIRST: 1, KeyframeReason.QUALITY: 2}
    # The second A keyframe is predicted from the first: the refreshes cost less than half as many bytes.
    sizes = [len(p.annexb) for p in keyframes]
    intra_sizes = [len(p.annexb) for p in intra.packets if isinstance(p, KeyframePacket)]
    assert sizes[2] * 4 < intra_sizes[2] and predicted.stats.keyframe_bytes < intra.stats.keyframe_bytes
    data = predicted.to_bytes()
    reader = StreamReader(data)
    assert reader.parser.version == (3, 0)
    decoder = Decoder(model, reader.header)
    decoded = [f for packet in reader for f in decoder.push(packet)]
    assert predicted.stats.proxy_db == [luma_psnr(d, f, model.analysis_size)
                                        for d, f in zip(decoded, frames, strict=True)]
    assert min(predicted.stats.proxy_db) >= THRESHOLD


def test_a_keyframe_idr_period_frames_after_the_last_idr_is_one_again(trained, stills):
    model, ident = trained
    clip = encode_clip([stills["A"]] * 9, model, config(max_gop=4), ident)
    assert [(p.frame_index, p.intra) for p in clip.packets if isinstance(p, KeyframePacket)] == [
        (0, True), (4, False), (8, False)]  # max_gop keyframes are predicted too, within the IDR period
    clip = encode_clip([stills["A"]] * 9, model, config(max_gop=2, idr_period=4), ident)
    assert [(p.frame_index, p.intra) for p in clip.packets if isinstance(p, KeyframePacket)] == [
        (0, True), (2, False), (4, True), (6, False), (8, True)]
    with pytest.raises(InputError, match="--idr-period 0 must be >= 1"):
        config(idr_period=0)


def test_rate_control_recodes_predicted_keyframes_as_predicted(trained, stills):
    model, ident = trained
    frames = [stills[c] for c in "AAABBBAAA"]
    clip, choice = encode_to_rate(lambda: iter(frames), model, config(), ident, target_kbps=60.0)
    keyframes = [p for p in clip.packets if isinstance(p, KeyframePacket)]
    assert [p.intra for p in keyframes] == [True, False, False]
    assert clip.stats.keyframe_bytes == sum(len(p.annexb) for p in keyframes)
    assert abs(choice.kbps - clip.kbps()) < 1e-9 and clip.config.keyframe_qp == choice.keyframe_qp


# ---------------------------------------------------------------- command line

def test_fvc_encode_predict_keyframes_end_to_end(stills, tmp_path, capsys):
    video, stream = tmp_path / "in.mp4", tmp_path / "out.fvc"
    with VideoWriter(video, fps=25, crf=0) as writer:
        for c in "AAABBBAAA":
            writer.write(stills[c])
    argv = ["encode", video, stream, "--size", SIZE, "--refresh-threshold", THRESHOLD, "--predict-keyframes",
            "--force"]
    assert main([str(a) for a in argv]) == 0
    assert "; 2 predicted" in capsys.readouterr().out
    assert main(["info", str(stream), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["version"] == "3.0" and [k["predicted"] for k in info["keyframe_list"]] == [False, True, True]
    assert main(["info", str(stream)]) == 0
    assert "keyframes: 3 (first 1, quality 2), 2 predicted" in capsys.readouterr().out
    assert main(["decode", str(stream), str(tmp_path / "png"), "--format", "png", "--quiet"]) == 0
    assert len(list((tmp_path / "png").glob("*.png"))) == 9
