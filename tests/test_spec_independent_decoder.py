"""A second .fvc decoder written from spec/bitstream.md alone (stdlib only, no `bitstream` import).

It decodes every conformance vector to the integers in the JSON beside it, which shows the
spec is precise enough and that constriction codes with exactly the spec's integer tables.
"""
from __future__ import annotations

import bisect
import json
import struct
import zlib
from pathlib import Path

import pytest

VECTORS = Path(__file__).resolve().parents[1] / "spec" / "vectors"
MAGIC = b"\x89FVC\r\n\x1a\n"
MASK64 = (1 << 64) - 1
QUANT_MAX = 2**30 - 1
LAYOUT = {0: [("rotation", "1", 3, False), ("translation", "1", 3, False), ("expression", "K", 3, True)],
          1: [("keypoints", "K", 2, False), ("jacobians", "K", 4, False)]}


class SpecError(Exception):
    def __init__(self, message: str, offset: int | None = None):
        super().__init__(message)
        self.offset = offset


def varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for i in range(5):
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            if (i and byte == 0) or value >= 2**32:
                raise SpecError("bad varint")
            return value, pos + i + 1
    raise SpecError("varint too long")


def residual_table(radius: int, decay: int, escape: int) -> list[int]:
    w = [1 << 24]
    for _ in range(radius):
        w.append(w[-1] * decay >> 16)
    weights = [w[abs(s - radius)] for s in range(2 * radius + 1)]
    free = (1 << 24) - escape - (2 * radius + 1)
    total = sum(weights)
    f = [1 + x * free // total for x in weights]
    f[radius] += (1 << 24) - escape - sum(f)
    return f + [escape]


class Table:
    def __init__(self, freqs: list[int]):
        assert sum(freqs) == 1 << 24 and min(freqs) >= 1
        self.f = freqs
        self.c = [0]
        for x in freqs[:-1]:
            self.c.append(self.c[-1] + x)


UNIFORM16 = Table([256] * 65536)


class RangeDecoder:
    def __init__(self, payload: bytes):
        padded = payload + b"\0" * (-len(payload) % 4)
        self.words = [int.from_bytes(padded[i:i + 4], "big") for i in range(0, len(padded), 4)]
        self.pos = 0
        self.point = (self.next_word() << 32) | self.next_word()
        self.lower, self.range = 0, MASK64

    def next_word(self) -> int:
        w = self.words[self.pos] if self.pos < len(self.words) else 0
        self.pos += 1
        return w

    def decode(self, t: Table) -> int:
        scale = self.range >> 24
        quantile = ((self.point - self.lower) & MASK64) // scale
        if quantile >= 1 << 24:
            raise SpecError("invalid payload")
        s = bisect.bisect_right(t.c, quantile) - 1
        self.lower = (self.lower + scale * t.c[s]) & MASK64
        self.range = scale * t.f[s]
        if self.range < 1 << 32:
            self.lower = (self.lower << 32) & MASK64
            self.range <<= 32
            self.point = ((self.point << 32) & MASK64) | self.next_word()
        return s


# HEVC NAL unit types a keyframe may hold (spec §5.9): TRAIL_N, TRAIL_R, IDR_W_RADL, IDR_N_LP, VPS, SPS, PPS, AUD and
# the two SEI types.
HEVC_KEYFRAME_TYPES = {0, 1, 19, 20, 32, 33, 34, 35, 39, 40}


def parse(data: bytes, majors: tuple[int, ...] = (1, 2, 3, 4, 5)) -> dict:
    """Header fields and packets (with decoded integers) of a whole stream, read as a decoder of the major
    versions `majors` reads it: (1,) is a 1.x decoder, which refuses a 2.0 or 3.0 stream at byte 8 (spec §5.5).

    From version 1.1 on type 4 is a NOTE, a JSON object (spec §4.4). From version 2 on keyframes name their
    slot and motion packets the keyframe they render from (spec §5.6); in version 3 keyframes say whether
    they are predicted (spec §5.7). From version 4 on type 6 is a RESYNC: a MOTION packet coded against zeros that
    names its keyframe, which must be the active slot's (spec §4.6). From version 5 on the header says whether
    keyframes are H.264 or HEVC, whose NAL units a keyframe holds (spec §5.9).
    """
    assert data[:8] == MAGIC
    major, minor, body_len = struct.unpack_from("<BBH", data, 8)
    if major not in majors:
        raise SpecError(f"unsupported version {major}.{minor}", 8)
    slotted = major >= 2
    (crc,) = struct.unpack_from("<I", data, 12 + body_len)
    assert crc == zlib.crc32(data[:12 + body_len])
    width, height, fps_num, fps_den, frame_count, kind, k = struct.unpack_from("<HHIIIBB", data, 12)
    model_id, ngroups = data[30:46], data[46]
    layout = LAYOUT[kind]
    assert ngroups == len(layout)
    groups = []
    for i, (name, count, dims, maskable) in enumerate(layout):
        step, radius, decay, escape, mask_freq = struct.unpack_from("<fHHHH", data, 47 + 12 * i)
        groups.append({"name": name, "count": k if count == "K" else 1, "dims": dims, "maskable": maskable,
                       "step": step, "radius": radius, "table": Table(residual_table(radius, decay, escape)),
                       "mask": Table([(1 << 24) - (mask_freq << 8), mask_freq << 8]) if maskable else None})
    header = {"version": [major, minor], "width": width, "height": height, "fps_num": fps_num, "fps_den": fps_den,
              "frame_count": frame_count, "motion_kind": kind, "num_keypoints": k, "model_id": model_id.hex()}
    n_slots = 1
    if slotted:
        assert body_len >= 36 + 12 * ngroups
        n_slots = header["ref_slots"] = data[47 + 12 * ngroups]
        assert 1 <= n_slots <= 8
    hevc = False
    if major >= 5:
        assert body_len >= 37 + 12 * ngroups
        header["keyframe_codec"] = data[48 + 12 * ngroups]
        if header["keyframe_codec"] not in (0, 1):
            raise SpecError(f"unknown keyframe_codec {header['keyframe_codec']}", 48 + 12 * ngroups)
        hevc = header["keyframe_codec"] == 1
    pos = 12 + body_len + 4
    packets, last, state, counts = [], -1, None, [0, 0]
    slots, active = {}, None  # slot -> frame index of the keyframe it holds
    intra_seen = False
    while True:
        start = pos
        ptype = data[pos]
        length, body_pos = varint(data, pos + 1)
        end = body_pos + length
        assert struct.unpack_from("<I", data, end)[0] == zlib.crc32(data[start:end])
        body = data[body_pos:end]
        pos = end + 4
        if ptype == 1:
            active = body[0] if slotted else 0
            index, p = varint(body, 1 if slotted else 0)
            assert index > last and active < n_slots
            au = body[p:]
            assert au.startswith(b"\0\0\1") or au.startswith(b"\0\0\0\1")
            units = [unit.rstrip(b"\0") for unit in au.split(b"\0\0\1")[1:]]
            if hevc:  # a 2-byte header: forbidden bit 0, type in bits 1-6, layer 0, temporal id plus 1 = 1
                for unit in units:
                    if len(unit) < 2 or unit[0] & 0x81 or unit[1] != 1 or unit[0] >> 1 not in HEVC_KEYFRAME_TYPES:
                        raise SpecError(f"HEVC NAL unit {unit[:2].hex()} not allowed in a keyframe")
                types = {unit[0] >> 1 for unit in units}
                intra, predicted = bool(types & {19, 20}), bool(types & {0, 1})
            else:  # nal_unit_type: the low 5 bits of the byte after each 00 00 01 start code
                types = {unit[0] & 31 for unit in units if unit}
                intra, predicted = 5 in types, 1 in types
            if major < 3:
                assert intra
            else:
                assert intra != predicted
                if predicted and not intra_seen:
                    raise SpecError("predicted keyframe before any intra keyframe")
            intra_seen = intra_seen or intra
            slots[active] = index
            packets.append({"type": "keyframe", **({"slot": active} if slotted else {}), "frame_index": index,
                            **({"predicted": predicted} if major >= 3 else {}), "annexb_hex": au.hex()})
            state = {g["name"]: [[0] * g["dims"] for _ in range(g["count"])] for g in groups}
            last, counts[0] = index, counts[0] + 1
        elif ptype == 2 or (ptype == 6 and major >= 4):
            delta, p = varint(body, 0)
            assert delta >= 1 and state is not None
            if ptype == 6:
                distance, p = varint(body, p)
                if not 1 <= distance <= last + delta or slots[active] != last + delta - distance:
                    raise SpecError(f"RESYNC names frame {last + delta - distance}, not the active keyframe")
                state = {g["name"]: [[0] * g["dims"] for _ in range(g["count"])] for g in groups}
            state = decode_motion(body[p:], groups, state)
            last, counts[1] = last + delta, counts[1] + 1
            packets.append({"type": "resync" if ptype == 6 else "motion", "frame_index": last, "symbols": state,
                            **({"reference_frame": slots[active]} if slotted or ptype == 6 else {})})
        elif ptype == 4 and (major, minor) >= (1, 1):
            text = body.decode("utf-8")
            assert isinstance(json.loads(text), dict)
            packets.append({"type": "note", "text": text})
        elif ptype == 5 and slotted:
            assert len(body) == 1
            if body[0] not in slots:  # never filled, or beyond ref_slots
                raise SpecError(f"USE_SLOT names empty slot {body[0]}")
            active = body[0]  # the motion state stays as it is
            packets.append({"type": "use_slot", "slot": active})
        elif ptype == 3:
            values, p = [], 0
            for _ in range(4):
                v, p = varint(body, p)
                values.append(v)
            assert values == [last + 1, counts[0], counts[1], start]
            packets.append({"type": "end", "frame_count": values[0], "keyframe_count": values[1],
                            "motion_count": values[2], "end_offset": values[3]})
            assert pos == len(data)
            return {"header": header, "groups": groups, "packets": packets}
        else:
            assert ptype >= 4
            packets.append({"type": "unknown", "packet_type": ptype, "body_hex": body.hex()})


def decode_motion(payload: bytes, groups: list[dict], prev: dict) -> dict:
    rc = RangeDecoder(payload)
    out = {}
    for g in groups:
        rows = [list(r) for r in prev[g["name"]]]
        sent = [rc.decode(g["mask"]) == 1 for _ in range(g["count"])] if g["maskable"] else [True] * g["count"]
        slots, residuals = [], []
        for j in range(g["count"]):
            if sent[j]:
                for d in range(g["dims"]):
                    residuals.append(rc.decode(g["table"]) - g["radius"])
                    slots.append((j, d))
        for i, r in enumerate(residuals):
            if r == g["radius"] + 1:  # symbol 2R+1: ESCAPE
                z = rc.decode(UNIFORM16) * 65536 + rc.decode(UNIFORM16)
                residuals[i] = z >> 1 if z % 2 == 0 else -(z >> 1) - 1
        for (j, d), r in zip(slots, residuals):
            rows[j][d] += r
            if abs(rows[j][d]) > QUANT_MAX:
                raise SpecError("value out of range")
        out[g["name"]] = rows
    return out


def test_use_slot_of_an_empty_slot_is_refused():
    data = bytearray((VECTORS / "fv2v_slots.fvc").read_bytes())
    use = next(p for p in json.loads((VECTORS / "fv2v_slots.json").read_text())["packets"] if p["type"] == "use_slot")
    assert data[use["offset"]:use["offset"] + 3] == bytes([5, 1, 0])  # type, length, slot 0
    data[use["offset"] + 2] = 2  # slot 2 is filled only later
    struct.pack_into("<I", data, use["offset"] + 3, zlib.crc32(data[use["offset"]:use["offset"] + 3]))
    with pytest.raises(SpecError, match="empty slot 2"):
        parse(bytes(data))


# Every conformance vector spec §11 lists, by name: this decoder must read each of them.
EXPECTED = ("tiny", "fv2v_single_keyframe", "fv2v_multi_keyframe", "fv2v_escapes", "fv2v_masked", "fomm",
            "live_future_minor", "fv2v_notes", "fv2v_slots", "fv2v_predicted", "fv2v_resync", "hevc_predicted")


def vector_names() -> list[str]:
    return sorted(p.stem for p in VECTORS.glob("*.fvc"))


def test_vectors_exist():
    assert vector_names() == sorted(EXPECTED)
    assert all((VECTORS / f"{name}.json").is_file() for name in EXPECTED)


@pytest.mark.parametrize("name", vector_names())
def test_independent_decoder_matches_vector_json(name):
    data = (VECTORS / f"{name}.fvc").read_bytes()
    expected = json.loads((VECTORS / f"{name}.json").read_text())
    got = parse(data)
    for key, value in got["header"].items():
        assert expected["header"][key] == value, key
    for g, eg in zip(got["groups"], expected["header"]["groups"]):
        assert struct.pack("<f", g["step"]).hex() == eg["step_f32_hex"]
    assert len(got["packets"]) == len(expected["packets"])
    for p, e in zip(got["packets"], expected["packets"]):
        assert p["type"] == e["type"]
        for key, value in p.items():
            assert e[key] == value, (name, e.get("frame_index"), key)


@pytest.mark.parametrize("name", EXPECTED)
def test_version_gate_on_every_vector(name):
    """Spec §5.5: a decoder of majors 1 … M reads a stream of major ≤ M and refuses any other at byte 8, before
    reading anything else: a 1.x decoder refuses 2.0 to 5.0, a 2.x decoder 3.0 to 5.0, a 3.x decoder 4.0 and 5.0, a
    4.x decoder 5.0 (an HEVC stream, which it would otherwise feed to an H.264 decoder); no decoder reads 0 or 6."""
    data = (VECTORS / f"{name}.fvc").read_bytes()
    major = json.loads((VECTORS / f"{name}.json").read_text())["header"]["version"][0]
    whole = parse(data)
    for newest in (1, 2, 3, 4, 5):
        majors = tuple(range(1, newest + 1))
        if major in majors:
            read = parse(data, majors)
            assert (read["header"], read["packets"]) == (whole["header"], whole["packets"])
        else:
            with pytest.raises(SpecError, match=f"unsupported version {major}\\.") as info:
                parse(data, majors)
            assert info.value.offset == 8
    for other in (0, 6, 255):
        changed = data[:8] + bytes([other]) + data[9:]
        with pytest.raises(SpecError, match="unsupported version") as info:
            parse(changed)
        assert info.value.offset == 8


def test_worked_example_tables():
    """The tables printed in spec §10."""
    assert residual_table(4, 27500, 4096) == [216572, 516119, 1229977, 2931190, 6985404, 2931190, 1229977,
                                              516119, 216572, 4096]
    assert residual_table(4, 11500, 4096)[4] == 11768640


def test_crc_check_value():
    assert zlib.crc32(b"123456789") == 0xCBF43926


def test_reference_encoder_uses_exactly_the_spec_tables():
    """Random parameters and symbols: what bitstream encodes, the spec decoder reads back."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    import numpy as np

    from bitstream import GroupParams, MotionEncoder, MotionKind, default_header, layout

    params = st.builds(lambda r, d, e, m: (r, d, e, m), st.integers(1, 4096), st.integers(0, 65535),
                       st.integers(1, 65535), st.integers(1, 65535))

    @hypothesis.settings(max_examples=40, deadline=None, derandomize=True)
    @hypothesis.given(kind=st.sampled_from([0, 1]), k=st.integers(1, 12), ps=st.lists(params, min_size=3, max_size=3),
                      seed=st.integers(0, 2**31), scale=st.sampled_from([1, 5, 100, 10**6]))
    def check(kind, k, ps, seed, scale):
        header = default_header(MotionKind(kind), 64, 64, 25, bytes(16), num_keypoints=k, params=[
            GroupParams(1.0, r, d, e, m if g.maskable else 0) for g, (r, d, e, m) in zip(layout(kind, k), ps)])
        groups = [{"name": g.name, "count": g.count, "dims": g.dims, "maskable": g.maskable, "radius": p.radius,
                   "table": Table(residual_table(p.radius, p.decay, p.escape_freq)),
                   "mask": Table([(1 << 24) - (p.mask_freq << 8), p.mask_freq << 8]) if g.maskable else None}
                  for g, p in zip(header.groups, header.params)]
        rng = np.random.default_rng(seed)
        encoder = MotionEncoder(header)
        prev = {g["name"]: [[0] * g["dims"] for _ in range(g["count"])] for g in groups}
        for _ in range(3):
            ints = {g.name: rng.integers(-scale, scale + 1, (g.count, g.dims)) * (rng.random((g.count, 1)) < 0.7)
                    for g in header.groups}
            payload, decoded = encoder.encode(ints, mask_threshold=int(rng.integers(-1, 2)))
            prev = decode_motion(payload, groups, prev)
            assert {k: np.array(v).tolist() for k, v in decoded.items()} == prev

    check()


def test_resync_naming_another_keyframe_is_refused():
    """Spec §4.6: the keyframe a RESYNC names is the one in the active slot."""
    data = bytearray((VECTORS / "fv2v_resync.fvc").read_bytes())
    desc = json.loads((VECTORS / "fv2v_resync.json").read_text())
    resync = next(p for p in desc["packets"] if p["type"] == "resync" and p["frame_index"] == 10)
    at = resync["offset"]
    assert data[at] == 6 and data[at + 3] == 10  # type, length, frame_index_delta, keyframe distance 10
    data[at + 3] = 4  # frame 6: the keyframe of the other slot
    end = at + resync["size"] - 4
    struct.pack_into("<I", data, end, zlib.crc32(data[at:end]))
    with pytest.raises(SpecError, match="RESYNC names frame 6"):
        parse(bytes(data))
