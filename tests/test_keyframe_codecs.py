"""benchmarks/keyframe_codecs.py: every codec codes a small picture alone and decodes it back at its size, with
fewer bytes at a coarser quality value, and the comparison helper says which codec needs fewer bytes."""
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from codec.demo import DemoClipConfig, astronaut_frames

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import keyframe_codecs as kc  # noqa: E402

SIZE = 64


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    return next(astronaut_frames(DemoClipConfig(seconds=0.04, size=SIZE)))


@pytest.mark.parametrize("name", list(kc.codecs()))
def test_each_codec_decodes_one_picture_and_bytes_fall_as_qp_rises(picture, name):
    codec = kc.codecs()[name]
    fine, coarse = codec.qualities[2], codec.qualities[-1]
    sizes = []
    for quality in (fine, coarse):
        data = codec.encode(picture, quality)
        decoded = codec.decode(data)
        assert decoded.shape == picture.shape and decoded.dtype == np.uint8
        sizes.append(len(data))
    assert sizes[1] < sizes[0], f"{name}: {sizes}"
    m = kc.measure(codec, picture, fine)
    assert m["bytes"] == sizes[0] and 0 < m["lpips"] < 0.5 and m["psnr"] > 20


def test_h264_is_fvc_keyframe_path(picture):
    from codec.h264 import encode_intra

    assert kc.codecs()["h264"].encode(picture, 30) == encode_intra(picture, 30)


def _curve(scale: float) -> "kc.Curve":
    qualities = list(range(18, 52, 3))
    lpips = [0.01 * math.exp(0.09 * (q - 18)) for q in qualities]  # LPIPS rises with QP
    rates = [scale * 20000 * math.exp(-0.11 * (q - 18)) for q in qualities]
    return kc.Curve(qualities, rates, lpips, [50 - 0.5 * (q - 18) for q in qualities])


def test_a_codec_needing_fewer_bytes_for_the_same_lpips_scores_negative():
    anchor, cheaper, dearer = _curve(1.0), _curve(0.6), _curve(1.25)
    better = kc.compare(anchor, cheaper)
    for key in ("bd_lpips", "bd_lpips_fvc_range", "bd_psnr", "change_at_0.10", "change_at_0.15", "change_at_qp30"):
        assert better[key] == pytest.approx(-40.0, abs=0.01), key
    assert better["bytes_at_0.10"] == pytest.approx(0.6 * better["anchor_bytes_at_0.10"])
    assert kc.compare(anchor, dearer)["bd_lpips"] == pytest.approx(25.0, abs=0.01)
    assert kc.compare(anchor, anchor)["bd_lpips_fvc_range"] == 0


def test_summary_means_over_clips_and_bounds_a_curve_that_stops_short():
    rows = []
    for clip, scale in (("a", 0.5), ("b", 0.7)):
        for codec, curve in (("h264", _curve(1.0)), ("x265", _curve(scale))):
            for q, r, l, p in zip(curve.qualities, curve.bytes, curve.lpips, curve.psnr):
                rows.append({"clip": clip, "frame": 0, "codec": codec, "quality": q, "bytes": r, "lpips": l, "psnr": p,
                             "encode_ms": 1.0, "decode_ms": 1.0})
    per_clip, summary = kc.summarize(rows)
    x265 = next(s for s in summary if s["codec"] == "x265")
    assert x265["clips"] == 2 and x265["bd_lpips"] == pytest.approx(-40.0, abs=0.01)
    assert x265["change_at_0.10"] == pytest.approx(-40.0, abs=0.01) and x265["bound_at_0.10"] == 0
    short = kc.Curve(*(values[:7] for values in (lambda c: (c.qualities, c.bytes, c.lpips, c.psnr))(_curve(0.5))))
    assert max(short.lpips) < 0.15
    assert kc.bytes_at_lpips(short, 0.15) == (short.bytes[-1], "bound")
    assert kc.bytes_at_lpips(short, 0.005)[1] == "not-reached"
