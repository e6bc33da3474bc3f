"""Symbol layout, quantiser, integer frequency tables, header packing, torch-free import."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitstream import (GroupParams, MotionKind, StreamHeader, SymbolError, default_header, dequantize, layout,
                       parse_header, quantize)
from bitstream.constants import NUM_KEYPOINTS_FOMM, NUM_KEYPOINTS_FV2V, QUANT_MAX
from bitstream.freqtable import binary_table, residual_table

REPO = Path(__file__).resolve().parents[1]


def test_import_is_torch_free():
    code = "import sys, bitstream, bitstream.synthetic; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_layout_matches_design():
    assert layout(MotionKind.FV2V) == (("rotation", 1, 3, False), ("translation", 1, 3, False),
                                       ("expression", NUM_KEYPOINTS_FV2V, 3, True))
    assert layout(MotionKind.FOMM) == (("keypoints", NUM_KEYPOINTS_FOMM, 2, False),
                                       ("jacobians", NUM_KEYPOINTS_FOMM, 4, False))
    assert layout(MotionKind.FV2V, 7)[2].count == 7
    with pytest.raises(SymbolError, match="keypoints"):
        layout(MotionKind.FV2V, 0)


@settings(max_examples=60, deadline=None)
@given(radius=st.integers(1, 4096), decay=st.integers(0, 65535), escape=st.integers(1, 65535))
def test_residual_table_is_exact_symmetric_and_peaked(radius, decay, escape):
    t = residual_table(radius, decay, escape)
    assert len(t) == 2 * radius + 2 and sum(t) == 1 << 24 and min(t) >= 1 and t[-1] == escape
    body = t[:-1]
    assert body == body[::-1]
    assert all(body[i] <= body[i + 1] for i in range(radius))


def test_residual_table_rejects_bad_parameters():
    for args in [(0, 100, 1), (4097, 100, 1), (4, 65536, 1), (4, 100, 0)]:
        with pytest.raises(ValueError):
            residual_table(*args)
    assert binary_table(32768) == (1 << 23, 1 << 23)
    with pytest.raises(ValueError):
        binary_table(0)


def test_scaled_params_scale_the_steps_and_keep_the_residual_models_shape():
    from bitstream import default_params, scaled_params

    for kind in (MotionKind.FV2V, MotionKind.FOMM):
        assert scaled_params(kind, 1.0) == default_params(kind)
        for scale in (0.25, 0.5, 2.0):
            for d, p in zip(default_params(kind), scaled_params(kind, scale), strict=True):
                assert p.step == np.float32(d.step * scale)
                # The weight ratio per step, raised to the steps per default step, is the default's ratio.
                assert abs((p.decay / 65536) ** (1 / scale) - d.decay / 65536) < 1e-3
                assert (p.radius, p.escape_freq, p.mask_freq) == (d.radius, d.escape_freq, d.mask_freq)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(SymbolError, match="step scale"):
            scaled_params(MotionKind.FV2V, bad)


def test_quantize_dequantize_round_trip_and_errors():
    h = default_header(MotionKind.FV2V, 256, 256, 25, bytes(16), num_keypoints=4)
    motion = {"rotation": np.array([[10.26, -0.24, 0.25]], np.float32),
              "translation": np.array([[0.012, 0.0, -0.05]], np.float32),
              "expression": np.linspace(-0.1, 0.1, 12, dtype=np.float32).reshape(4, 3)}
    q = quantize(motion, h)
    assert q["rotation"].dtype == np.int32 and q["rotation"].tolist() == [[21, 0, 0]]  # ties round to even
    back = dequantize(q, h)
    for g, p in zip(h.groups, h.params):
        assert back[g.name].dtype == np.float32
        assert np.abs(back[g.name] - motion[g.name]).max() <= p.step / 2 + 1e-6
    batched = quantize({k: v[None] for k, v in motion.items()}, h)
    assert all(np.array_equal(batched[k], q[k]) for k in q)
    assert quantize({**motion, "rotation": np.array([[1e12, 0, 0]])}, h)["rotation"][0, 0] == QUANT_MAX
    with pytest.raises(SymbolError, match="NaN"):
        quantize({**motion, "rotation": np.array([[np.nan, 0, 0]])}, h)
    with pytest.raises(SymbolError, match="shape"):
        quantize({**motion, "expression": np.zeros((5, 3))}, h)
    with pytest.raises(SymbolError, match="groups"):
        quantize({"rotation": motion["rotation"]}, h)


def test_header_round_trip_and_validation():
    h = default_header(MotionKind.FOMM, 512, 288, 30000 / 1001, bytes(range(16)), frame_count=250)
    assert (h.fps_num, h.fps_den) == (30000, 1001)
    parsed, size, version = parse_header(h.pack() + b"rest")
    assert parsed == h and size == len(h.pack()) and version == (1, 0)
    with pytest.raises(SymbolError, match="model_id"):
        default_header(MotionKind.FV2V, 256, 256, 25, bytes(15))
    with pytest.raises(SymbolError, match="width"):
        default_header(MotionKind.FV2V, 0, 256, 25, bytes(16))
    with pytest.raises(SymbolError, match="fps"):
        default_header(MotionKind.FV2V, 256, 256, 0, bytes(16))
    bad = GroupParams(0.1, 4, 100, 10, mask_freq=5)
    with pytest.raises(SymbolError, match="mask_freq"):
        StreamHeader(256, 256, 25, 1, 0, MotionKind.FOMM, 10, bytes(16), (bad, bad))
    with pytest.raises(SymbolError, match="step"):
        StreamHeader(256, 256, 25, 1, 0, MotionKind.FOMM, 10, bytes(16),
                     (GroupParams(float("nan"), 4, 1, 1), GroupParams(1.0, 4, 1, 1)))
