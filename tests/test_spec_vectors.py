"""Conformance vectors: the reference reader decodes them to the JSON, the JSON re-encodes to the bytes."""
from __future__ import annotations

import importlib.util
import json
import zlib
from pathlib import Path

import pytest

from bitstream import (BitstreamError, EndPacket, KeyframePacket, MotionDecoder, MotionPacket, NotePacket,
                       StreamReader, UnknownPacket, UseSlotPacket, summarize)
from bitstream.packets import PacketType, frame
from bitstream.varint import encode_varint

SPEC = Path(__file__).resolve().parents[1] / "spec"
NAMES = sorted(p.stem for p in (SPEC / "vectors").glob("*.fvc"))
# Every vector spec §11 lists, by name.
EXPECTED = {"tiny", "fv2v_single_keyframe", "fv2v_multi_keyframe", "fv2v_escapes", "fv2v_masked", "fomm",
            "live_future_minor", "fv2v_notes", "fv2v_slots", "fv2v_predicted", "fv2v_resync", "hevc_predicted"}


def load_make_vectors():
    spec = importlib.util.spec_from_file_location("make_vectors", SPEC / "make_vectors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def make_vectors():
    return load_make_vectors()


def test_every_kind_of_vector_is_present():
    assert set(NAMES) == EXPECTED
    assert all((SPEC / "vectors" / f"{name}.json").is_file() for name in EXPECTED)
    table = (SPEC / "bitstream.md").read_text().split("## 11. Conformance vectors")[1]
    assert all(f"| {name} |" in table for name in EXPECTED), "spec §11 lists every vector"
    # Each version this document defines has a vector, and 1.1's one addition, the NOTE, is in one.
    versions = {tuple(json.loads((SPEC / "vectors" / f"{n}.json").read_text())["header"]["version"]) for n in NAMES}
    assert {(1, 0), (1, 1), (2, 0), (3, 0), (4, 0), (5, 0)} <= versions
    assert any(p["type"] == "note" for n in NAMES
               for p in json.loads((SPEC / "vectors" / f"{n}.json").read_text())["packets"])


@pytest.mark.parametrize("name", NAMES)
def test_reader_decodes_vector_to_json(name, make_vectors):
    data = (SPEC / "vectors" / f"{name}.fvc").read_bytes()
    expected = json.loads((SPEC / "vectors" / f"{name}.json").read_text())
    reader = StreamReader(data)
    assert reader.header == make_vectors.header_from_json(expected["header"])
    assert list(reader.parser.version) == expected["header"]["version"]
    decoder = MotionDecoder(reader.header)
    records = list(reader.records())
    assert len(records) == len(expected["packets"])
    slots, active = {}, None  # slot -> frame index of its keyframe
    for record, e in zip(records, expected["packets"]):
        packet = record.packet
        assert (record.offset, record.size) == (e["offset"], e["size"])
        if e["type"] == "keyframe":
            assert packet == KeyframePacket(e["frame_index"], bytes.fromhex(e["annexb_hex"]), e.get("slot", 0),
                                            reader.header.keyframe_codec)
            if "predicted" in e:  # 3.x and later: IDR or predicted, read from the codec's own NAL unit types
                assert packet.intra != e["predicted"]
            slots[packet.slot], active = packet.frame_index, packet.slot
            decoder.reset()
        elif e["type"] == "use_slot":
            assert packet == UseSlotPacket(e["slot"])
            active = packet.slot  # the motion state stays as it is
        elif e["type"] in ("motion", "resync"):
            assert isinstance(packet, MotionPacket) and packet.frame_index == e["frame_index"]
            assert packet.payload.hex() == e["payload_hex"]
            if "reference_frame" in e:  # 2.x vectors, and every RESYNC
                assert slots[active] == e["reference_frame"]
            if e["type"] == "resync":  # 4.x: coded against zeros, naming its keyframe
                assert packet.resync and packet.keyframe == e["reference_frame"]
                decoder.reset()
            else:
                assert not packet.resync
            got = decoder.decode(packet.payload)
            assert {k: v.tolist() for k, v in got.items()} == e["symbols"]
        elif e["type"] == "unknown":
            assert packet == UnknownPacket(e["packet_type"], bytes.fromhex(e["body_hex"]))
        elif e["type"] == "note":
            assert packet == NotePacket(e["text"].encode()) and isinstance(packet.fields, dict)
        else:
            assert packet == EndPacket(e["frame_count"], e["keyframe_count"], e["motion_count"], e["end_offset"])
    assert sum(r.size for r in records) + reader.parser.header_size == expected["file_size"]


@pytest.mark.parametrize("name", NAMES)
def test_json_reencodes_to_the_same_bytes(name, make_vectors):
    data = (SPEC / "vectors" / f"{name}.fvc").read_bytes()
    desc = json.loads((SPEC / "vectors" / f"{name}.json").read_text())
    assert make_vectors.encode_vector(desc) == data


def test_generator_reproduces_committed_vectors(make_vectors):
    for name, desc in make_vectors.build().items():
        committed = json.loads((SPEC / "vectors" / f"{name}.json").read_text())
        assert desc == committed, name


def test_vectors_exercise_escapes_masks_and_skips():
    escapes = json.loads((SPEC / "vectors" / "fv2v_escapes.json").read_text())
    values = [v for p in escapes["packets"] if p["type"] == "motion" for row in p["symbols"]["rotation"] for v in row]
    assert 2**30 - 1 in values and -(2**30 - 1) in values
    masked = json.loads((SPEC / "vectors" / "fv2v_masked.json").read_text())
    motion = [p for p in masked["packets"] if p["type"] == "motion"]
    # Static rows are never re-sent: packets after the first are much smaller than the first.
    assert max(p["size"] for p in motion[1:]) < motion[0]["size"] / 2
    multi = json.loads((SPEC / "vectors" / "fv2v_multi_keyframe.json").read_text())
    assert 5 not in [p.get("frame_index") for p in multi["packets"]]


def test_summarize_vector():
    info = summarize(SPEC / "vectors" / "fv2v_multi_keyframe.fvc")
    size = (SPEC / "vectors" / "fv2v_multi_keyframe.fvc").stat().st_size
    assert info["frames"] == 16 and info["keyframes"] == 2 and info["motion_packets"] == 13
    assert info["bytes"] == size == sum(info["bytes_by_type"].values())
    assert info["bits_per_pixel"] == pytest.approx(size * 8 / (512 * 512 * 16))
    assert info["kbps"] == pytest.approx(size * 8 / (16 / 25) / 1000)
    assert info["model_id"] == json.loads((SPEC / "vectors" / "tiny.json").read_text())["header"]["model_id"]
    live = summarize((SPEC / "vectors" / "live_future_minor.fvc").read_bytes())
    assert live["version"] == "1.1" and live["unknown_packets"] == 1
    assert live["bytes_by_type"]["unknown"] == 26


def test_slot_vector_switches_back_to_older_keyframes_at_lower_cost():
    slots = json.loads((SPEC / "vectors" / "fv2v_slots.json").read_text())
    assert slots["header"]["version"] == [2, 0] and slots["header"]["ref_slots"] == 3
    packets = slots["packets"]
    assert [p["slot"] for p in packets if p["type"] == "keyframe"] == [0, 1, 2, 0]
    switched = [p for before, p in zip(packets, packets[1:]) if before["type"] == "use_slot"]
    assert [p["reference_frame"] for p in switched] == [0, 3, 7, 10]
    # The motion state survives a switch: those packets cost about what the frames around them do,
    # far less than the first packet after a keyframe, whose residuals are against zeros.
    after_keyframe = [p for before, p in zip(packets, packets[1:]) if before["type"] == "keyframe"]
    assert max(p["size"] for p in switched) < min(p["size"] for p in after_keyframe)


def test_note_vector_is_1_1_and_a_1_0_reader_skips_its_notes_to_the_same_integers():
    notes = json.loads((SPEC / "vectors" / "fv2v_notes.json").read_text())
    assert notes["header"]["version"] == [1, 1]
    packets = notes["packets"]
    texts = [json.loads(p["text"]) for p in packets if p["type"] == "note"]
    assert texts[0]["writer"].startswith("fvc ") and {"source", "crop"} <= set(texts[0])
    # A keyframe_reason NOTE right before each KEYFRAME, as the reference encoder writes them (spec §4.4).
    reasons = [json.loads(p["text"])["keyframe_reason"] for p, after in zip(packets, packets[1:])
               if after["type"] == "keyframe"]
    assert reasons == ["first", "quality"]
    data = bytearray((SPEC / "vectors" / "fv2v_notes.fvc").read_bytes())
    header_size = StreamReader(bytes(data)).parser.header_size
    data[9] = 0  # the same stream declared 1.0: type 4 is unknown there (spec §4, §5.5)
    data[header_size - 4:header_size] = zlib.crc32(data[:header_size - 4]).to_bytes(4, "little")
    as_1_1 = [r.packet for r in StreamReader((SPEC / "vectors" / "fv2v_notes.fvc").read_bytes()).records()]
    as_1_0 = [r.packet for r in StreamReader(bytes(data)).records()]
    assert [type(p) for p in as_1_1].count(NotePacket) == 3
    assert [UnknownPacket(4, p.body) if isinstance(p, NotePacket) else p for p in as_1_1] == as_1_0


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("major", [0, 6, 255])
def test_the_reader_refuses_any_major_but_1_to_5_at_byte_8(name, major):
    data = bytearray((SPEC / "vectors" / f"{name}.fvc").read_bytes())
    assert data[8] in (1, 2, 3, 4, 5)
    data[8] = major
    with pytest.raises(BitstreamError, match=f"unsupported format version {major}\\.") as info:
        StreamReader(bytes(data))
    assert info.value.offset == 8


def _with_packet(data: bytes, before: int, packet: bytes) -> bytes:
    """`data` with `packet` inserted in front of packet number `before`, END's offset moved to match."""
    records = list(StreamReader(data).records())
    at, end = records[before].offset, records[-1]
    totals = (end.packet.frame_count, end.packet.keyframe_count, end.packet.motion_count, end.offset + len(packet))
    return (data[:at] + packet + data[at:end.offset]
            + frame(PacketType.END, b"".join(encode_varint(v) for v in totals)))


@pytest.mark.parametrize("before,slot,problem", [
    (2, 1, "slot 1, which no keyframe has filled"),  # after the first keyframe only slot 0 is filled
    (0, 0, "slot 0, which no keyframe has filled"),  # before any keyframe
    (2, 3, "slot 3 outside the 3 reference slots"),
])
def test_a_use_slot_naming_an_empty_or_missing_slot_fails_at_its_first_byte(before, slot, problem):
    data = (SPEC / "vectors" / "fv2v_slots.fvc").read_bytes()
    records = list(StreamReader(data).records())
    bad = _with_packet(data, before, frame(PacketType.USE_SLOT, bytes([slot])))
    with pytest.raises(BitstreamError, match=problem) as info:
        list(StreamReader(bad).records())
    assert (info.value.offset, info.value.packet) == (records[before].offset, before)


def test_a_keyframe_naming_a_slot_beyond_the_header_fails_at_its_first_byte():
    data = (SPEC / "vectors" / "fv2v_slots.fvc").read_bytes()
    key = list(StreamReader(data).records())[3]
    body = data[key.offset + 2:key.offset + key.size - 4]  # after the type and the one-byte length
    assert body[0] == key.packet.slot == 1
    bad = data[:key.offset] + frame(PacketType.KEYFRAME, b"\x03" + body[1:]) + data[key.offset + key.size:]
    with pytest.raises(BitstreamError, match="slot 3 outside the 3 reference slots") as info:
        list(StreamReader(bad).records())
    assert (info.value.offset, info.value.packet) == (key.offset, 3)


def test_type_5_is_unknown_in_a_1_x_stream_and_version_6_is_refused():
    tiny = (SPEC / "vectors" / "tiny.fvc").read_bytes()
    skipped = _with_packet(tiny, 1, frame(PacketType.USE_SLOT, b"\x07"))
    assert UnknownPacket(5, b"\x07") in [r.packet for r in StreamReader(skipped).records()]
    slots = bytearray((SPEC / "vectors" / "fv2v_slots.fvc").read_bytes())
    slots[8] = 6
    with pytest.raises(BitstreamError, match="unsupported format version 6.0") as info:
        StreamReader(bytes(slots))
    assert info.value.offset == 8


def test_resync_vector_decodes_from_any_resync_without_the_packets_before_it():
    """Spec §4.6, §5.8: a RESYNC decodes from the header alone (its keyframe is only rendered from), and the MOTION
    packets after it need nothing before it; its keyframe is the active slot's, checked at its first byte."""
    data = (SPEC / "vectors" / "fv2v_resync.fvc").read_bytes()
    desc = json.loads((SPEC / "vectors" / "fv2v_resync.json").read_text())
    reader = StreamReader(data)
    records = [r for r in reader.records() if isinstance(r.packet, MotionPacket)]
    expected = [p for p in desc["packets"] if p["type"] in ("motion", "resync")]
    for start, record in enumerate(records):
        if not record.packet.resync:
            continue
        fresh = MotionDecoder(reader.header)  # holds nothing of the stream before this RESYNC
        for later, e in zip(records[start:], expected[start:]):
            if later.packet.resync and later is not record:
                break
            got = fresh.decode(later.packet.payload)
            assert {k: v.tolist() for k, v in got.items()} == e["symbols"]
    # The RESYNC after the USE_SLOT names the older keyframe (frame 0); naming the other slot's is refused.
    resync = next(r for r in reader.parser.records if isinstance(r.packet, MotionPacket) and r.packet.frame_index == 10)
    assert resync.packet.keyframe == 0
    body = data[resync.offset + 2:resync.offset + resync.size - 4]
    assert body[1] == 10  # keyframe distance: frame 10 - frame 0
    bad = data[:resync.offset] + frame(PacketType.RESYNC, body[:1] + bytes([4]) + body[2:]) + \
        data[resync.offset + resync.size:]
    with pytest.raises(BitstreamError, match="names the keyframe of frame 6, but the active slot 0 holds the "
                                             "keyframe of frame 0") as info:
        list(StreamReader(bad).records())
    assert (info.value.offset, info.value.packet) == (resync.offset, resync.index)
    far = data[:resync.offset] + frame(PacketType.RESYNC, body[:1] + bytes([11]) + body[2:]) + \
        data[resync.offset + resync.size:]
    with pytest.raises(BitstreamError, match="keyframe distance 11 outside 1..10"):
        list(StreamReader(far).records())


def test_resync_is_unknown_before_4_0():
    """Type 6 is skipped as unknown in a 3.x stream (spec §4), and a 3.x writer refuses RESYNC packets."""
    from bitstream import KeyframePacket, StreamWriter, default_header
    from bitstream.constants import RESYNC_MAJOR

    tiny = (SPEC / "vectors" / "tiny.fvc").read_bytes()
    skipped = _with_packet(tiny, 2, frame(PacketType.RESYNC, b"\x01\x01"))
    assert UnknownPacket(6, b"\x01\x01") in [r.packet for r in StreamReader(skipped).records()]
    header = default_header(0, 64, 64, 25, bytes(16), num_keypoints=2, predicted_keyframes=True)
    import io
    writer = StreamWriter(io.BytesIO(), header)
    writer.write(KeyframePacket(0, bytes.fromhex(json.loads((SPEC / "vectors" / "tiny.json").read_text())
                                                 ["packets"][0]["annexb_hex"])))
    with pytest.raises(BitstreamError, match="RESYNC packets need version 4.0"):
        writer.write(MotionPacket(1, b"", keyframe=0))
    assert default_header(0, 64, 64, 25, bytes(16), resync=True).version() == (RESYNC_MAJOR, 0)
