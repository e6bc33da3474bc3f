"""Reference slots (bitstream 2.0): writer and reader rules, the decoder's per-slot state, the encoder's switches."""
import io
import json
import struct
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from bitstream import (BitstreamError, KeyframePacket, MotionEncoder, MotionKind, MotionPacket, NotePacket,
                       StreamReader, StreamWriter, UseSlotPacket, default_header, summarize)
from bitstream.varint import decode_varint
from codec.cli import build_parser, main
from codec.coding_defaults import SearchConfig
from codec.decoder import Decoder
from codec.encoder import EncoderConfig, KeyframeReason, encode_clip, luma_psnr
from codec.errors import InputError
from codec.h264 import encode_intra
from codec.motion_search import MotionSearch
from codec.video import VideoWriter

VECTORS = Path(__file__).resolve().parents[1] / "spec" / "vectors"
SIZE = 64
# The shipped weights render a frame from its own picture at 21-29 dB and from one of the others at 12 dB
# or less, so a threshold between them codes a keyframe exactly when no held keyframe shows the frame.
THRESHOLD = 18.0


def clip_of(stills, letters: str) -> list[np.ndarray]:
    return [stills[c] for c in letters]


def config(**kw) -> EncoderConfig:
    # Intra keyframes: these tests are about the slots of a 2.0 stream (test_predicted_keyframes has 3.0).
    return EncoderConfig(**{"width": SIZE, "height": SIZE, "fps": Fraction(25), "refresh_threshold": THRESHOLD,
                            "predict_keyframes": False, **kw})


def decode_all(model, data: bytes) -> list[np.ndarray]:
    reader = StreamReader(data)
    decoder = Decoder(model, reader.header)
    return [f for packet in reader for f in decoder.push(packet)]


def keyframe_slots(clip) -> list[tuple[int, int]]:
    return [(p.frame_index, p.slot) for p in clip.packets if isinstance(p, KeyframePacket)]


# ---------------------------------------------------------------- bitstream

HEADER = default_header(MotionKind.FV2V, 64, 64, 25, bytes(16), num_keypoints=2, ref_slots=3)
AU = b"\0\0\0\1\x67\x42\xc0\x1e" + b"\0\0\1\x65\x88\x84"


def test_a_slotted_stream_is_version_2_0_and_reads_back_packet_for_packet():
    sink = io.BytesIO()
    writer = StreamWriter(sink, HEADER, minor=1)
    motion = MotionEncoder(HEADER)
    ints = {g.name: np.ones((g.count, g.dims), np.int32) for g in HEADER.groups}
    packets = [NotePacket.of({"writer": "test"}), KeyframePacket(0, AU, 2), MotionPacket(1, motion.encode(ints)[0]),
               KeyframePacket(2, AU, 0), UseSlotPacket(2), MotionPacket(3, motion.encode(ints)[0])]
    for packet in packets:
        writer.write(packet)
    writer.close()
    reader = StreamReader(sink.getvalue())
    assert reader.parser.version == (2, 0) and reader.header == HEADER and reader.header.ref_slots == 3
    assert [r.packet for r in reader.records()][:-1] == packets
    # One byte each: the header's ref_slots and the keyframe's slot; a USE_SLOT costs 7 bytes in all.
    assert len(HEADER.pack()) == len(default_header(MotionKind.FV2V, 64, 64, 25, bytes(16), num_keypoints=2).pack()) + 1
    assert writer.packet_sizes[4] == 7


def test_writers_refuse_what_readers_refuse():
    one_slot = default_header(MotionKind.FV2V, 64, 64, 25, bytes(16), num_keypoints=2)
    writer = StreamWriter(io.BytesIO(), one_slot, minor=1)
    writer.write(KeyframePacket(0, AU))
    with pytest.raises(BitstreamError, match="USE_SLOT packets need version 2.0"):
        writer.write(UseSlotPacket(0))
    with pytest.raises(BitstreamError, match="slot 1 outside the 1 reference slot of the header"):
        writer.write(KeyframePacket(1, AU, 1))
    writer = StreamWriter(io.BytesIO(), HEADER)
    with pytest.raises(BitstreamError, match="slot 300 outside the 3 reference slots"):
        writer.write(KeyframePacket(0, AU, 300))
    writer.write(KeyframePacket(0, AU, 1))
    with pytest.raises(BitstreamError, match="slot 0, which no keyframe has filled"):
        writer.write(UseSlotPacket(0))


@pytest.mark.parametrize("value", [0, 9])
def test_a_header_with_ref_slots_outside_1_to_8_fails_at_that_byte(value):
    head = bytearray(HEADER.pack()[:-4])
    at = 12 + 35 + 12 * len(HEADER.params)
    assert head[at] == 3 and len(head) == at + 1
    head[at] = value
    with pytest.raises(BitstreamError, match="ref_slots") as info:
        StreamReader(bytes(head) + struct.pack("<I", zlib.crc32(head)))
    assert info.value.offset == at


def test_summary_counts_slots_and_switches():
    summary = summarize(VECTORS / "fv2v_slots.fvc", packets=True)
    assert summary["version"] == "2.0" and summary["ref_slots"] == 3 and summary["slot_switches"] == 4
    assert [k["slot"] for k in summary["keyframe_list"]] == [0, 1, 2, 0]
    assert [p["slot"] for p in summary["packets"] if p["type"] == "use_slot"] == [0, 1, 2, 0]
    assert "slot" not in summarize(VECTORS / "tiny.fvc")["keyframe_list"][0]


# ---------------------------------------------------------------- decoder and encoder

def test_a_stream_that_returns_to_an_earlier_picture_reuses_its_slot(trained, stills):
    model, ident = trained
    frames = clip_of(stills, "AAABBBAAA")
    single = encode_clip(frames, model, config(), ident)
    double = encode_clip(frames, model, config(refs=2), ident)
    assert keyframe_slots(single) == [(0, 0), (3, 0), (6, 0)]
    assert keyframe_slots(double) == [(0, 0), (3, 1)]
    assert double.stats.keyframe_reasons == {KeyframeReason.FIRST: 1, KeyframeReason.QUALITY: 1}
    assert [p for p in double.packets if isinstance(p, UseSlotPacket)] == [UseSlotPacket(0)]
    assert double.stats.slot_switches == 1 and double.stats.keyframe_bytes < single.stats.keyframe_bytes
    data = double.to_bytes()
    assert StreamReader(data).parser.version == (2, 0) and len(data) < len(single.to_bytes())
    # The decoder shows exactly what the encoder reconstructed, the switched frames included.
    decoded = decode_all(model, data)
    assert double.stats.proxy_db == [luma_psnr(d, f, model.analysis_size) for d, f in zip(decoded, frames, strict=True)]
    assert min(double.stats.proxy_db) >= THRESHOLD


def test_a_new_keyframe_evicts_the_least_recently_used_slot(trained, stills):
    model, ident = trained
    # A into 0, B into 1, A again from 0; C evicts B (last used at frame 3, A at frame 5); B then evicts A.
    clip = encode_clip(clip_of(stills, "AABBAACCB"), model, config(refs=2), ident)
    assert keyframe_slots(clip) == [(0, 0), (2, 1), (6, 1), (8, 0)]
    assert clip.stats.slot_switches == 1
    # With a third slot nothing is evicted and B is shown from its keyframe again.
    clip = encode_clip(clip_of(stills, "AABBAACCB"), model, config(refs=3), ident)
    assert keyframe_slots(clip) == [(0, 0), (2, 1), (6, 2)]
    assert [p.slot for p in clip.packets if isinstance(p, UseSlotPacket)] == [0, 1]


def test_one_slot_is_todays_1_1_stream_and_renders_nothing_more(trained, stills, monkeypatch):
    model, ident = trained
    frames = clip_of(stills, "AAABBBAAA")
    renders = []
    render = model.render
    monkeypatch.setattr(model, "render", lambda *a: renders.append(1) or render(*a))
    clip = encode_clip(frames, model, config(refs=1), ident)
    assert keyframe_slots(clip) == [(0, 0), (3, 0), (6, 0)]
    assert len(renders) == len(frames) - 1  # one per motion frame, the refreshed ones included
    data = clip.to_bytes()
    reader = StreamReader(data)
    assert reader.parser.version == (1, 1) and reader.header.ref_slots == 1
    assert data[10:12] == struct.pack("<H", 35 + 12 * 3)  # the 1.0 header layout
    for record in reader.records():
        if isinstance(record.packet, KeyframePacket):  # frame index, then the access unit: no slot byte
            _, body = decode_varint(data, record.offset + 1)
            assert data[body:body + 5] == bytes([record.packet.frame_index]) + b"\0\0\0\1"


def test_a_switch_reuses_the_slots_analysis_and_resets_the_search_to_it(trained, stills, monkeypatch):
    model, ident = trained
    analysed, resets = [], []
    analyze, reset = model.analyze_keyframe, MotionSearch.reset
    monkeypatch.setattr(model, "analyze_keyframe", lambda image: analysed.append(analyze(image)) or analysed[-1])
    monkeypatch.setattr(MotionSearch, "reset", lambda self, state: resets.append(state) or reset(self, state))
    frames = clip_of(stills, "AAABBBAAA")
    # Reuse margin 0 would also analyse a keyframe of frame 6 to compare with; 'any' leaves the switch alone.
    clip = encode_clip(frames, model, config(refs=2, search=SearchConfig(steps=2), reuse_margin=None), ident)
    assert clip.stats.slot_switches == 1 and len(analysed) == 2
    assert len(resets) == 3 and resets[2] is resets[0] is analysed[0]
    decoded = decode_all(model, clip.to_bytes())
    assert clip.stats.proxy_db == [luma_psnr(d, f, model.analysis_size) for d, f in zip(decoded, frames, strict=True)]


def test_the_decoder_refuses_a_switch_to_an_empty_slot(trained):
    model, ident = trained
    header = default_header(MotionKind.FV2V, SIZE, SIZE, 25, ident, num_keypoints=model.num_keypoints, ref_slots=2)
    decoder = Decoder(model, header)
    decoder.push(KeyframePacket(0, encode_intra(np.zeros((SIZE, SIZE, 3), np.uint8), 30), 1))
    with pytest.raises(BitstreamError, match="slot 0, which no keyframe has filled") as info:
        decoder.push(UseSlotPacket(0), offset=321)
    assert info.value.offset == 321 and decoder.slot == 1 and decoder.filled_slots == (1,)


def test_a_reuse_margin_keeps_a_true_return_and_refuses_a_slot_worse_than_a_new_keyframe(trained, stills):
    model, ident = trained
    a, b = stills["A"], stills["B"]
    brighter = np.clip(a.astype(int) + 16, 0, 255).astype(np.uint8)
    # The A slot renders the brighter A above the threshold (23.5 dB), a keyframe of it would give 31.3 dB.
    for frames, margin, switches in (([a, a, a, b, b, b, a, a, a], 1.0, 1), ([a, a, a, b, b, b, brighter], 1.0, 0),
                                     ([a, a, a, b, b, b, brighter], None, 1), ([a, a, a, b, b, b, brighter], 10.0, 1)):
        clip = encode_clip(frames, model, config(refs=2, reuse_margin=margin), ident)
        assert clip.stats.slot_switches == switches, (margin, len(frames))
        assert clip.stats.keyframes == 3 - switches
    with pytest.raises(InputError, match="--reuse-margin -1.0 must be >= 0 dB"):
        config(reuse_margin=-1.0)


def test_a_frame_moves_to_an_older_slot_that_renders_it_better_before_the_active_one_falls_below(trained, stills):
    model, ident = trained
    # max_gop 2 puts B in slot 1 although slot 0 (A) renders B above 10 dB; at frame 3 the B slot still shows
    # A above the threshold (12 dB) and the A slot shows it at 29.5 dB.
    frames = clip_of(stills, "AABA")
    for margin, switches in ((0.0, [UseSlotPacket(0)]), (5.0, [UseSlotPacket(0)]), (20.0, []), (None, [])):
        clip = encode_clip(frames, model, config(refs=2, refresh_threshold=10.0, max_gop=2, switch_margin=margin),
                           ident)
        assert keyframe_slots(clip) == [(0, 0), (2, 1)]
        assert [p for p in clip.packets if isinstance(p, UseSlotPacket)] == switches, margin
        assert clip.stats.slot_switches == len(switches)
        decoded = decode_all(model, clip.to_bytes())
        assert clip.stats.proxy_db == [luma_psnr(d, f, model.analysis_size) for d, f in zip(decoded, frames, strict=True)]
        assert (clip.stats.proxy_db[3] > 25) == bool(switches)
    with pytest.raises(InputError, match="--switch-margin -1.0 must be >= 0 dB"):
        config(switch_margin=-1.0)


def test_a_better_slot_shown_for_a_frame_does_not_postpone_the_refresh_the_keyframes_slot_asks_for(trained, stills):
    model, ident = trained
    a, b = stills["A"], stills["B"]
    # At 13 dB: B is a keyframe (slot 1). The A/B blend renders at 17.5 dB from A's slot, 15.2 from B's, so
    # margin 0 shows it from A's; A + 32 is 10.8 dB from B's, 17.7 from A's, far below a keyframe of it.
    blend, brighter = (0.6 * a + 0.4 * b).round().astype(np.uint8), np.clip(a.astype(int) + 32, 0, 255).astype(np.uint8)
    frames = [a, a, a, b, blend, brighter]
    runs = {(reuse, switch): encode_clip(frames, model, config(refs=2, refresh_threshold=13.0, reuse_margin=reuse,
                                                                switch_margin=switch), ident)
            for reuse in (None, 1.0) for switch in (0.0, None)}
    # The keyframes follow the slot of the last keyframe or reuse, whichever slot shows the frames; the
    # third one evicts the slot that did not show frame 4.
    assert keyframe_slots(runs[1.0, 0.0]) == [(0, 0), (3, 1), (5, 1)]
    assert keyframe_slots(runs[1.0, None]) == [(0, 0), (3, 1), (5, 0)]
    assert keyframe_slots(runs[None, 0.0]) == keyframe_slots(runs[None, None]) == [(0, 0), (3, 1)]
    assert [p.slot for p in runs[1.0, 0.0].packets if isinstance(p, UseSlotPacket)] == [0]
    assert [p.slot for p in runs[1.0, None].packets if isinstance(p, UseSlotPacket)] == []
    assert [(c.stats.slot_reuses, c.stats.slot_switches) for c in runs.values()] == [(1, 1), (1, 1), (0, 1), (0, 0)]
    for clip in runs.values():
        decoded = decode_all(model, clip.to_bytes())
        assert clip.stats.proxy_db == [luma_psnr(d, f, model.analysis_size) for d, f in zip(decoded, frames, strict=True)]


def test_config_refuses_refs_outside_1_to_8():
    for refs in (0, 9):
        with pytest.raises(InputError, match=f"--refs {refs} outside 1..8"):
            config(refs=refs)


# ---------------------------------------------------------------- command line

def test_fvc_encode_refs_end_to_end(stills, tmp_path, capsys):
    video, stream = tmp_path / "in.mp4", tmp_path / "out.fvc"
    with VideoWriter(video, fps=25, crf=0) as writer:
        for frame in clip_of(stills, "AAABBBAAA"):
            writer.write(frame)
    argv = ["encode", video, stream, "--size", SIZE, "--refresh-threshold", THRESHOLD, "--refs", 2,
            "--no-predict-keyframes", "--force"]
    assert main([str(a) for a in argv]) == 0
    assert ("reference slots: 2; 1 refresh answered by an older keyframe instead of a new one, 1 switch (USE_SLOT)"
            in capsys.readouterr().out)
    assert main(["info", str(stream), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["version"], info["ref_slots"], info["slot_switches"], info["keyframes"]) == ("2.0", 2, 1, 2)
    assert main(["info", str(stream)]) == 0
    assert "reference slots: 2, 1 switch to a stored keyframe (USE_SLOT)" in capsys.readouterr().out
    assert main(["decode", str(stream), str(tmp_path / "png"), "--format", "png", "--quiet"]) == 0
    assert len(list((tmp_path / "png").glob("*.png"))) == 9


def test_switch_margin_takes_decibels_or_off_and_reuse_margin_decibels_or_any(capsys):
    parse = build_parser().parse_args
    assert parse(["encode", "a.mp4", "b.fvc"]).switch_margin == 1.0
    assert parse(["encode", "a.mp4", "b.fvc", "--switch-margin", "1.5"]).switch_margin == 1.5
    assert parse(["encode", "a.mp4", "b.fvc", "--switch-margin", "off"]).switch_margin is None
    with pytest.raises(SystemExit):
        parse(["encode", "a.mp4", "b.fvc", "--switch-margin", "never"])
    assert "'never' is neither a number of dB nor 'off'" in capsys.readouterr().err
    assert parse(["encode", "a.mp4", "b.fvc"]).reuse_margin == 0.0
    assert parse(["encode", "a.mp4", "b.fvc", "--reuse-margin", "any"]).reuse_margin is None
    assert parse(["encode", "a.mp4", "b.fvc", "--reuse-margin", "2"]).reuse_margin == 2.0
    with pytest.raises(SystemExit):
        parse(["encode", "a.mp4", "b.fvc", "--reuse-margin", "off"])
    assert "'off' is neither a number of dB nor 'any'" in capsys.readouterr().err
