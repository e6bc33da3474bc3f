"""MotionEncoder/MotionDecoder: closed-loop round trips, escapes, masks, minimal payloads, bad input."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitstream import BitstreamError, MotionDecoder, MotionEncoder, MotionKind, SymbolError, default_header
from bitstream.constants import QUANT_MAX


def random_frame(rng, header, scale):
    out = {}
    for g in header.groups:
        values = rng.integers(-scale, scale + 1, (g.count, g.dims))
        extreme = rng.random((g.count, g.dims)) < 0.05
        values[extreme] = rng.choice([-QUANT_MAX, QUANT_MAX, 0], extreme.sum())
        out[g.name] = values.astype(np.int32)
    return out


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(list(MotionKind)), k=st.integers(1, 24), seed=st.integers(0, 2**32 - 1),
       frames=st.integers(1, 8), threshold=st.integers(-1, 3), scale=st.sampled_from([0, 1, 3, 70, 2**20]))
def test_round_trip_closed_loop(kind, k, seed, frames, threshold, scale):
    header = default_header(kind, 64, 64, 25, bytes(16), num_keypoints=k)
    encoder, decoder = MotionEncoder(header), MotionDecoder(header)
    rng = np.random.default_rng(seed)
    previous = {g.name: np.zeros((g.count, g.dims), np.int64) for g in header.groups}
    for t in range(frames):
        if rng.random() < 0.2:
            encoder.reset()
            decoder.reset()
            previous = {k: np.zeros_like(v) for k, v in previous.items()}
        ints = random_frame(rng, header, scale)
        if t and rng.random() < 0.5:  # some rows keep their value, as still keypoints do
            for g in header.groups:
                still = rng.random(g.count) < 0.5
                ints[g.name][still] = previous[g.name][still]
        payload, expected = encoder.encode(ints, mask_threshold=threshold)
        got = decoder.decode(payload)
        for g in header.groups:
            assert got[g.name].dtype == np.int32
            assert np.array_equal(got[g.name], expected[g.name])
            error = np.abs(expected[g.name].astype(np.int64) - ints[g.name])
            if g.maskable and threshold > 0:
                assert error.max(initial=0) <= threshold
            else:
                assert error.max(initial=0) == 0
        previous = {k: v.astype(np.int64) for k, v in expected.items()}


def test_mask_threshold_semantics():
    header = default_header(MotionKind.FV2V, 64, 64, 25, bytes(16), num_keypoints=4)
    frame = {"rotation": np.zeros((1, 3), int), "translation": np.zeros((1, 3), int),
             "expression": np.array([[0, 0, 0], [1, -1, 0], [2, 0, 0], [5, 5, 5]])}
    encoder = MotionEncoder(header)
    _, sent = encoder.encode(frame, mask_threshold=1)
    assert sent["expression"].tolist() == [[0, 0, 0], [0, 0, 0], [2, 0, 0], [5, 5, 5]]
    encoder.reset()
    _, sent = encoder.encode(frame, mask_threshold=-1)
    assert sent["expression"].tolist() == frame["expression"].tolist()
    # Rows whose residual is 0 cost only their mask bit ("not sent").
    encoder.encode(frame)
    p_sent = header.params_of("expression").mask_freq / 65536
    assert encoder.last_group_bits["expression"] == pytest.approx(-4 * np.log2(1 - p_sent))


def test_payload_is_shortest_and_matches_ideal_length():
    header = default_header(MotionKind.FV2V, 64, 64, 25, bytes(16))
    rng = np.random.default_rng(7)
    for _ in range(20):
        encoder, decoder = MotionEncoder(header), MotionDecoder(header)
        ints = random_frame(rng, header, 3)
        payload, expected = encoder.encode(ints, mask_threshold=-1)
        ideal = sum(encoder.last_group_bits.values()) / 8
        assert ideal - 1 <= len(payload) <= ideal + 2
        if payload:
            shorter = payload[:-1]
            try:
                got = decoder.decode(shorter)
                assert any(not np.array_equal(got[k], expected[k]) for k in got)
            except BitstreamError:
                pass


def test_bad_symbols_are_refused():
    header = default_header(MotionKind.FOMM, 64, 64, 25, bytes(16))
    encoder = MotionEncoder(header)
    good = {"keypoints": np.zeros((10, 2), np.int32), "jacobians": np.zeros((10, 4), np.int32)}
    for bad, match in [({"keypoints": good["keypoints"]}, "groups"),
                       ({**good, "jacobians": np.zeros((10, 3), np.int32)}, "shape"),
                       ({**good, "jacobians": np.zeros((10, 4), np.float32)}, "dtype"),
                       ({**good, "keypoints": np.full((10, 2), QUANT_MAX + 1)}, "exceeds")]:
        with pytest.raises(SymbolError, match=match):
            encoder.encode(bad)
    with pytest.raises(SymbolError, match="mask_threshold"):
        encoder.encode(good, mask_threshold=-2)


def test_invalid_payloads_raise_bitstream_error():
    header = default_header(MotionKind.FV2V, 64, 64, 25, bytes(16))
    decoder = MotionDecoder(header)
    # point = 2**64 - 1 lies above scale * 2**24 on the first symbol: quantile >= 2**24.
    with pytest.raises(BitstreamError, match="invalid range-coded") as info:
        decoder.decode(b"\xff" * 8, offset=1234)
    assert info.value.offset == 1234
    # An escape whose value leaves ±QUANT_MAX.
    encoder = MotionEncoder(header)
    far = {"rotation": np.array([[QUANT_MAX, 0, 0]]), "translation": np.zeros((1, 3), int),
           "expression": np.zeros((20, 3), int)}
    payload, _ = encoder.encode(far)
    decoder.reset()
    decoder.decode(payload)
    with pytest.raises(BitstreamError, match="exceeds"):
        decoder.decode(payload)
    with pytest.raises(BitstreamError, match="longer"):
        decoder.decode(bytes(65537))


def test_empty_payload_decodes_and_zero_frame_is_cheap():
    header = default_header(MotionKind.FOMM, 64, 64, 25, bytes(16), num_keypoints=1)
    zeros = {g.name: np.zeros((g.count, g.dims), np.int32) for g in header.groups}
    payload, _ = MotionEncoder(header).encode(zeros)
    assert len(payload) <= 1
    got = MotionDecoder(header).decode(payload)
    assert all(not v.any() for v in got.values())
    assert set(MotionDecoder(header).decode(b"")) == set(zeros)
