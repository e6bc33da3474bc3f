"""Rate sanity check on synthetic talking-head traces (benchmarks/bitstream_rate.py has the precise numbers)."""
from __future__ import annotations

import io

import numpy as np
import pytest

from bitstream import (KeyframePacket, MotionEncoder, MotionKind, MotionPacket, StreamReader, StreamWriter,
                       default_header, dequantize, quantize, summarize)
from bitstream.synthetic import FPS, trace

AU = b"\0\0\0\1\x65\x88\x84"


# fv2v K=20: its target, <= 30 B per MOTION packet (27.6 measured here, 27.5 in spec/bitstream.md).
# FOMM K=10 has no stated target: about 5 % above its measured 30.4 B. The traces are seeded, so the rate
# does not vary between runs: the bounds leave room for retuning the coder, and a coder a few percent
# worse fails (the former 34 and 38 B let an expression or Jacobian decay of 10000 pass).
@pytest.mark.parametrize("kind, bound", [(MotionKind.FV2V, 30.0), (MotionKind.FOMM, 32.0)])
def test_motion_packets_fit_the_rate_target(kind, bound):
    header = default_header(kind, 256, 256, FPS, bytes(16))
    motion = trace(kind, 250, seed=11)
    sink = io.BytesIO()
    writer = StreamWriter(sink, header)
    encoder = MotionEncoder(header)
    worst = 0.0
    for t, m in enumerate(motion):
        if t == 0:
            writer.write(KeyframePacket(0, AU))
            continue
        ints = quantize(m, header)
        payload, decoded = encoder.encode(ints)
        writer.write(MotionPacket(t, payload))
        back = dequantize(decoded, header)
        worst = max(worst, max(float(np.abs(back[k] - m[k]).max()) / header.params_of(k).step for k in m))
    writer.close()
    info = summarize(sink.getvalue())
    per_frame = info["bytes_by_type"]["motion"] / info["motion_packets"]
    assert per_frame <= bound
    assert worst <= 0.5 + 1e-4  # lossless beyond the quantiser at mask_threshold 0
    assert len(list(StreamReader(sink.getvalue()))) == 251


def test_synthetic_traces_have_the_intended_statistics():
    fv2v = trace(MotionKind.FV2V, 500, seed=0)
    yaw = np.array([m["rotation"][0, 0] for m in fv2v])
    expression = np.stack([m["expression"] for m in fv2v])
    assert 8 < np.abs(yaw).max() <= 21 and np.abs(np.diff(yaw)).mean() < 2
    assert 0.015 < expression.std() < 0.06 and expression.shape == (500, 20, 3)
    fomm = trace(MotionKind.FOMM, 500, seed=0)
    keypoints = np.stack([m["keypoints"] for m in fomm])
    assert np.abs(keypoints).max() <= 1 and 0.003 < np.abs(np.diff(keypoints, axis=0)).mean() < 0.02
