"""Conformance vectors: the reference reader decodes them to the JSON, the JSON re-encodes to the bytes."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from bitstream import (EndPacket, KeyframePacket, MotionDecoder, MotionPacket, StreamReader, UnknownPacket,
                       summarize)

SPEC = Path(__file__).resolve().parents[1] / "spec"
NAMES = sorted(p.stem for p in (SPEC / "vectors").glob("*.fvc"))


def load_make_vectors():
    spec = importlib.util.spec_from_file_location("make_vectors", SPEC / "make_vectors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def make_vectors():
    return load_make_vectors()


def test_every_kind_of_vector_is_present():
    assert {"tiny", "fv2v_single_keyframe", "fv2v_multi_keyframe", "fv2v_escapes", "fv2v_masked", "fomm",
            "live_future_minor"} <= set(NAMES)


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
    for record, e in zip(records, expected["packets"]):
        packet = record.packet
        assert (record.offset, record.size) == (e["offset"], e["size"])
        if e["type"] == "keyframe":
            assert packet == KeyframePacket(e["frame_index"], bytes.fromhex(e["annexb_hex"]))
            decoder.reset()
        elif e["type"] == "motion":
            assert isinstance(packet, MotionPacket) and packet.frame_index == e["frame_index"]
            assert packet.payload.hex() == e["payload_hex"]
            got = decoder.decode(packet.payload)
            assert {k: v.tolist() for k, v in got.items()} == e["symbols"]
        elif e["type"] == "unknown":
            assert packet == UnknownPacket(e["packet_type"], bytes.fromhex(e["body_hex"]))
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
