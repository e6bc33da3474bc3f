"""The rate-distortion benchmark: BD-rate maths, x264 byte accounting, rd.csv schema and a tiny run."""
from __future__ import annotations

import csv
import json
import math
import os
import re
import shlex
import sys
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest

from bitstream.constants import FVC_MAGIC
from codec.video import read_frames

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

from bd_rate import CurveError, bd_metric, bd_rate, pareto_front, rate_for_quality  # noqa: E402
from rdcodecs import X264, X264Settings  # noqa: E402
from rdcodecs.fvc import Fvc  # noqa: E402
from rdcodecs.x264 import decode_annexb  # noqa: E402

import rd_curve  # noqa: E402

RATES = np.array([0.01, 0.02, 0.05, 0.1, 0.2])
LPIPS = np.array([0.40, 0.31, 0.22, 0.16, 0.11])


def test_half_the_rate_is_minus_50_percent():
    assert bd_rate(RATES, LPIPS, RATES / 2, LPIPS, higher_is_better=False) == pytest.approx(-50.0, abs=1e-9)
    assert bd_rate(RATES, LPIPS, RATES * 2, LPIPS, higher_is_better=False) == pytest.approx(100.0, abs=1e-9)


def test_direction_of_lpips_and_psnr():
    # Same rates, lower LPIPS (better) -> fewer bits for the same quality -> negative BD-rate.
    assert bd_rate(RATES, LPIPS, RATES, LPIPS - 0.02, higher_is_better=False) < 0
    psnr = np.array([28.0, 30.0, 33.0, 35.0, 37.0])
    assert bd_rate(RATES, psnr, RATES, psnr + 1.0, higher_is_better=True) < 0
    # Treating LPIPS as higher-is-better would flip which points form the front; the test must notice.
    assert bd_metric(RATES, LPIPS, RATES, LPIPS - 0.02, higher_is_better=False) == pytest.approx(-0.02, abs=1e-9)


def test_pareto_front_drops_dominated_points():
    rates, metric = pareto_front([0.1, 0.05, 0.2, 0.3], [0.2, 0.25, 0.21, 0.1], higher_is_better=False)
    assert rates.tolist() == [0.05, 0.1, 0.3]
    assert metric.tolist() == [0.25, 0.2, 0.1]


def test_disjoint_curves_and_bad_input():
    assert math.isnan(bd_rate(RATES, LPIPS, RATES, LPIPS - 1.0, higher_is_better=False))
    with pytest.raises(CurveError, match="at least 2"):
        bd_rate([0.1, 0.2], [0.3, 0.3], RATES, LPIPS, higher_is_better=False)
    with pytest.raises(CurveError, match="positive"):
        bd_rate([0.0, 0.2], [0.3, 0.2], RATES, LPIPS, higher_is_better=False)


def test_rate_for_quality():
    bpp, how = rate_for_quality(RATES, LPIPS, 0.22, higher_is_better=False)
    assert (bpp, how) == (pytest.approx(0.05), "interpolated")
    assert rate_for_quality(RATES, LPIPS, 0.05, higher_is_better=False)[1] == "not-reached"
    assert rate_for_quality(RATES, LPIPS, 0.50, higher_is_better=False) == (0.01, "below-range")
    bpp, _ = rate_for_quality(RATES, LPIPS, 0.18, higher_is_better=False)
    assert 0.05 < bpp < 0.1


def moving_clip(n: int = 8, size: int = 64) -> np.ndarray:
    """A smooth colour pattern drifting right: compressible, so CRF changes the size."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return np.stack([np.stack([128 + 100 * np.sin((x + 2 * i) / 7), 128 + 90 * np.cos(y / 9),
                               128 + 60 * np.sin((x + y + i) / 11)], -1) for i in range(n)]).astype(np.uint8)


def nal_types(stream: bytes) -> list[int]:
    types, pos = [], 0
    while (pos := stream.find(b"\0\0\1", pos)) >= 0:
        types.append(stream[pos + 3] & 0x1F)
        pos += 3
    return types


def test_x264_stream_is_complete_and_decodes_to_what_is_measured():
    frames = moving_clip()
    for codec in (X264(), X264(X264Settings(tune="zerolatency"))):
        coded = codec.code(frames, 25, "crf28")
        types = nal_types(coded.stream)
        assert types[:2] == [7, 8] and 5 in types and 6 not in types  # SPS, PPS, IDR; no SEI
        assert types.count(5) + types.count(1) == len(frames)
        assert coded.frames.shape == frames.shape and coded.frames.dtype == np.uint8
        assert np.array_equal(np.stack(list(decode_annexb(coded.stream))), coded.frames)
        assert np.abs(coded.frames.astype(int) - frames).mean() < 8
    low = X264().code(frames, 25, "crf51").stream
    assert len(low) < len(X264().code(frames, 25, "crf20").stream)


def test_x264_refuses_a_bad_point():
    with pytest.raises(rd_curve.BenchmarkError, match="crf0..crf51"):
        X264().code(moving_clip(2), 25, "qp30")


def packets_before_the_next_frame(codec, frames: np.ndarray) -> list[int]:
    """How many packets the codec's encoder returns right after each frame, before the next is given."""
    from fractions import Fraction

    from codec.video import rgb_to_yuv420p

    encoder = av.CodecContext.create(codec.ENCODER, "w")
    encoder.width, encoder.height, encoder.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
    encoder.time_base, encoder.framerate = Fraction(1, 25), Fraction(25)
    encoder.options = codec.encoder_options(30)
    counts = []
    for i, rgb in enumerate(frames):
        picture = rgb_to_yuv420p(rgb)
        picture.pts = i
        counts.append(len(encoder.encode(picture)))
    return counts


def test_low_delay_methods_send_each_frame_before_the_next_arrives():
    """No B-frames and no look-ahead: each frame's packet leaves the encoder before the next frame is given,
    as a call needs. x264's own defaults (40 frames of look-ahead) hold the frames back: the test can tell."""
    frames = moving_clip(6)
    low_delay = [rd_curve.build_codec(name, None) for name in ("x264-lowdelay", "x264-zerolatency", "x265", "svtav1")]
    for codec in low_delay:
        assert packets_before_the_next_frame(codec, frames) == [1] * 6, codec.name
        assert rd_curve.build_codec(codec.name, None).settings() == codec.settings()
    assert packets_before_the_next_frame(X264(), frames)[0] == 0
    assert all("no look-ahead" in c.settings()["delay"] for c in low_delay if c.name != "x264-zerolatency")


def test_x265_and_svtav1_streams_are_complete_and_decode_to_what_is_measured():
    from rdcodecs import X265, SvtAv1
    from rdcodecs.constant_quality import decode_packets

    frames = moving_clip()
    for codec, start in ((X265(), b"\0\0\0\1\x40\x01"), (SvtAv1(), b"\x12\x00")):  # HEVC VPS; AV1 temporal delimiter
        points = codec.operating_points()
        high, low = (codec.code(frames, 25, point) for point in (points[0], points[-1]))
        for coded in (high, low):
            assert coded.stream.startswith(start) and coded.frames.shape == frames.shape
        assert len(low.stream) < len(high.stream)
        error = lambda coded: np.abs(coded.frames.astype(int) - frames).mean()
        assert error(high) < error(low) and error(high) < 8
        assert b"x265" not in high.stream and b"SVT" not in high.stream  # no encoder version SEI/metadata
        assert len(codec.operating_points()) == 9
        with pytest.raises(rd_curve.BenchmarkError, match=f"crf{codec.QUALITY_RANGE[0]}..crf{codec.QUALITY_RANGE[1]}"):
            codec.code(frames, 25, "crf99")
    # The x265 stream is one Annex-B stream: FFmpeg's parser finds the same pictures in the bytes that count.
    coded = X265().code(frames, 25, "crf28")
    parser = av.CodecContext.create("hevc", "r")
    packets = [bytes(p) for p in [*parser.parse(coded.stream), *parser.parse(None)]]
    assert np.array_equal(np.stack(list(decode_packets(packets, "hevc"))), coded.frames)


def test_x264_lowdelay_codes_what_x264_zerolatency_codes():
    """x265's and svtav1's low-delay settings on x264 give x264-zerolatency's streams: its committed rows are x264
    run the same way."""
    frames = moving_clip()
    lowdelay, zerolatency = (rd_curve.build_codec(name, None) for name in ("x264-lowdelay", "x264-zerolatency"))
    for point in ("crf24", "crf44"):
        assert lowdelay.code(frames, 25, point).stream == zerolatency.code(frames, 25, point).stream
    assert X264().code(frames, 25, "crf24").stream != lowdelay.code(frames, 25, "crf24").stream


def test_hold_shows_each_keyframe_until_the_next_and_counts_a_whole_fvc_stream():
    from bitstream import KeyframePacket, StreamReader
    from codec.h264 import decode_intra
    from rdcodecs.hold import Hold

    frames = moving_clip(60)
    coded = Hold().code(frames, 25, "qp30-every25")
    packets = list(StreamReader(coded.stream))
    keyframes = [p for p in packets if isinstance(p, KeyframePacket)]
    assert [p.frame_index for p in keyframes] == [0, 25, 50]
    assert sum(len(p.annexb) for p in keyframes) < len(coded.stream)
    for packet in keyframes:
        shown = coded.frames[packet.frame_index:packet.frame_index + 25]
        assert all(np.array_equal(f, decode_intra(packet.annexb)) for f in shown)
    assert len(Hold().code(frames, 25, "qp40-every25").stream) < len(coded.stream)
    with pytest.raises(rd_curve.BenchmarkError, match="no operating point"):
        Hold().code(frames, 25, "crf20")


def test_point_pattern_picks_operating_points_by_label():
    assert rd_curve.chosen_points(X264(), "crf2*") == ["crf20", "crf24", "crf28"]
    assert rd_curve.chosen_points(X264(), None) == X264().operating_points()
    assert rd_curve.chosen_points(X264(), "*-refresh0") == []
    assert rd_curve.chosen_points(X264(), "crf20, crf5*") == ["crf20", "crf51"]


def write_clip(path: Path, frames: np.ndarray, fps: int = 25) -> None:
    """A near-lossless mp4 (libx264 qp 0) as the benchmark's source clip."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"qp": "0"})
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv444p"
        for rgb in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """rd_curve on two generated 8-frame 64x64 clips, x264 at 2 points; returns (run folder, source frames)."""
    data = tmp_path_factory.mktemp("clips")
    frames = moving_clip()
    write_clip(data / "a.mp4", frames)
    write_clip(data / "b.mp4", frames[:, ::-1].copy())
    out = tmp_path_factory.mktemp("run") / "tiny"
    argv = ["--data", str(data), "--out", str(out), "--methods", "x264,x264-zerolatency", "--size", "64",
            "--points", "2", "--metric-stride", "2", "--no-akd"]
    assert rd_curve.main(argv) == 0
    return out, argv, data


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_rd_csv_schema_and_bpp_accounting(tiny_run):
    out, _, data = tiny_run
    rows = read_csv(out / "rd.csv")
    assert list(rows[0]) == rd_curve.RD_COLUMNS
    assert {(r["clip"], r["method"], r["point"]) for r in rows} == {
        (c, m, p) for c in "ab" for m in ("x264", "x264-zerolatency") for p in ("crf20", "crf51")}
    source = np.stack(list(read_frames(data / "a.mp4", size=64, fps=25)))
    expected = len(X264().code(source, 25.0, "crf20").stream)
    row = next(r for r in rows if (r["clip"], r["method"], r["point"]) == ("a", "x264", "crf20"))
    assert (int(row["frames"]), int(row["width"]), int(row["height"])) == (8, 64, 64)
    assert int(row["bytes"]) == expected
    assert float(row["bpp"]) == pytest.approx(expected * 8 / (64 * 64 * 8), rel=1e-5)
    assert float(row["kbps"]) == pytest.approx(expected * 8 / (8 / 25) / 1000, rel=1e-5)
    for r in rows:
        assert 0 <= float(r["lpips"]) < 1 and 10 < float(r["psnr"]) < 99 and 0 < float(r["ssim"]) <= 1
        assert r["weights"] == "-" and r["device"]


def test_reports(tiny_run):
    out, _, _ = tiny_run
    summary = read_csv(out / "summary.csv")
    assert {(r["method"], r["point"]) for r in summary} == {
        (m, p) for m in ("x264", "x264-zerolatency") for p in ("crf20", "crf51")}
    assert all(r["clips"] == "2" for r in summary)
    low, high = (next(r for r in summary if r["method"] == "x264" and r["point"] == p) for p in ("crf51", "crf20"))
    assert float(low["bpp"]) < float(high["bpp"]) and float(low["lpips"]) > float(high["lpips"])
    quality = read_csv(out / "quality.csv")
    assert [r["method"] for r in quality] == ["x264", "x264-zerolatency"]
    for name in ("rd_lpips.png", "rd_psnr.png", "bd_rate.csv", "run.json"):
        assert (out / name).stat().st_size > 0


def test_resume_skips_done_rows_and_refuses_other_settings(tiny_run, capsys):
    out, argv, _ = tiny_run
    before = (out / "rd.csv").read_text()
    assert rd_curve.main(argv) == 0
    assert "8 rows already" in capsys.readouterr().err
    assert (out / "rd.csv").read_text() == before
    assert rd_curve.main([*argv, "--frames", "4"]) == 2
    assert "other frames" in capsys.readouterr().err
    assert (out / "rd.csv").read_text() == before


def test_fvc_with_the_untrained_test_model(tmp_path, capsys):
    """The neural path end to end: .fvc bytes counted in full, weights named loudly in output and CSV."""
    write_clip(tmp_path / "a.mp4", moving_clip())
    out = tmp_path / "run"
    argv = ["--data", str(tmp_path), "--out", str(out), "--methods", "x264,fvc", "--size", "64", "--points", "2",
            "--frames", "4", "--model", "untrained-test", "--no-akd"]
    assert rd_curve.main(argv) == 0
    assert "!!! fvc runs with UNTRAINED" in capsys.readouterr().err
    rows = [r for r in read_csv(out / "rd.csv") if r["method"] == "fvc"]
    assert [r["point"] for r in rows] == ["qp24-refresh0", "qp40-refresh17"]
    assert all("UNTRAINED" in r["weights"] for r in rows)
    source = np.stack(list(read_frames(tmp_path / "a.mp4", size=64, fps=25)))[:4]
    stream = Fvc("untrained-test").code(source, 25.0, rows[0]["point"]).stream
    assert stream.startswith(FVC_MAGIC)
    assert int(rows[0]["bytes"]) == len(stream)
    assert float(rows[0]["bpp"]) == pytest.approx(len(stream) * 8 / (64 * 64 * 4), rel=1e-5)
    bd = read_csv(out / "bd_rate.csv")
    assert {(r["test"], r["anchor"], r["metric"]) for r in bd} == {
        ("fvc", "x264", metric) for metric in ("lpips", "psnr", "lpips_vgg", "dists")}


def test_fvc_hevc_writes_hevc_keyframes_at_the_same_points():
    import io

    from bitstream.constants import KeyframeCodec
    from bitstream.reader import StreamReader
    from rdcodecs.fvc import FvcHevc

    source = moving_clip(3)
    h264, hevc = Fvc("untrained-test"), FvcHevc("untrained-test")
    assert hevc.operating_points() == h264.operating_points() and hevc.settings()["keyframe_codec"] == "hevc"
    coded = hevc.code(source, 25.0, "qp32-refresh0")
    assert StreamReader(io.BytesIO(coded.stream)).header.keyframe_codec == KeyframeCodec.HEVC
    assert StreamReader(io.BytesIO(h264.code(source, 25.0, "qp32-refresh0").stream)).header.keyframe_codec \
        == KeyframeCodec.H264
    assert coded.frames.shape == source.shape


def test_missing_data_folder_is_one_line_error(tmp_path, capsys):
    assert rd_curve.main(["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--methods", "x264"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rd_curve: error:") and "--data" in err and "\n" not in err
    assert not (tmp_path / "o").exists()


def test_default_protocol_is_ten_seconds_at_metric_stride_ten_and_zero_frames_means_all(tmp_path):
    default = rd_curve.parse_args(["--data", str(tmp_path)])
    assert (default.frames, default.metric_stride) == (250, 10)
    assert rd_curve.parse_args(["--data", str(tmp_path), "--frames", "0"]).frames is None
    quick = rd_curve.parse_args(["--data", str(tmp_path), "--quick"])
    assert (quick.frames, quick.metric_stride, quick.clips) == (16, 2, ["1"])


def rd_row(clip: str, method: str, point: str, bpp: float, lpips: float, **columns) -> dict:
    """A synthetic rd.csv row: nothing is coded or measured."""
    return {"clip": clip, "method": method, "point": point, "frames": 8, "width": 64, "height": 64, "fps": 25.0,
            "bytes": round(bpp * 64 * 64 * 8 / 8), "bpp": bpp, "kbps": bpp * 64 * 64 * 25 / 1000, "lpips": lpips,
            "psnr": 30 - 10 * lpips, "ssim": 0.9, "lpips_vgg": 1.2 * lpips, "dists": lpips / 2, "akd": 2.0,
            "akd_lips": 2.5, "face_found": 1.0, "temporal": 3.0, "temporal_face": 4.0, "temporal_rest": 2.5,
            "source_change_face": 3.0, "source_change_rest": 1.0, "face_area": 0.3, "mouth_lpips": lpips,
            "mouth_lpips_p95": 1.5 * lpips, "encode_fps": 10, "decode_fps": 10, "date": "2026-12-07T00:00:00Z",
            "commit": "0123456789ab", "device": "CPU x2", "weights": "-", **columns}


def test_reports_refuse_to_average_rows_of_other_weights_or_devices(tmp_path):
    shipped = "fv2v-warp128.pt (8d1596d6432b45e442f2e5ae8dc994e1)"
    rows = [rd_row(clip, method, point, bpp, lpips, weights=shipped if method == "fvc" else "-")
            for clip in "ab" for method, points in (("fvc", ("qp24", "qp40")), ("x264", ("crf40", "crf51")))
            for point, bpp, lpips in zip(points, (0.004, 0.002), (0.2, 0.3))]
    rows[1]["weights"] = "/elsewhere/" + shipped  # the same file copied elsewhere: the same weights
    rd_curve.rd_table(tmp_path).write(rows)
    rd_curve.write_reports(tmp_path)
    for column, value, named in (("weights", "fv2v-cpu128.pt (b107e6f28b8c73195da03d203de638bd)",
                                  f"fvc weights {shipped} vs fv2v-cpu128.pt"),
                                 ("device", "Intel Xeon x2", "fvc device CPU x2 vs Intel Xeon x2")):
        mixed = [dict(r) for r in rows]
        mixed[5][column] = value  # b, fvc, qp40
        rd_curve.rd_table(tmp_path).write(mixed)
        with pytest.raises(rd_curve.BenchmarkError, match=f"averaged across {re.escape(named)}") as refused:
            rd_curve.write_reports(tmp_path)
        assert "--allow-mixed" in str(refused.value) and "x264" not in str(refused.value)
        rd_curve.write_reports(tmp_path, allow_mixed=True)
    summary = read_csv(tmp_path / "summary.csv")
    assert {r["weights"] for r in summary if r["method"] == "fvc"} == {shipped, f"/elsewhere/{shipped} + {shipped}"}


def test_a_run_refuses_another_device_or_data_folder_before_coding(tmp_path, capsys):
    data, out = tmp_path / "clips", tmp_path / "run"
    data.mkdir()
    (data / "a.mp4").write_bytes(b"")  # never read: every refusal comes before coding
    out.mkdir()
    rows = [rd_row("a", "x264", "crf20", 0.02, 0.1), rd_row("a", "x264", "crf51", 0.01, 0.3)]
    rd_curve.rd_table(out).write([{**r, "device": "Other CPU x8"} for r in rows])
    argv = ["--data", str(data), "--out", str(out), "--methods", "x264", "--size", "64", "--points", "2", "--no-akd"]
    assert rd_curve.main(argv) == 0  # every row done: the reports alone
    before = (out / "rd.csv").read_text()
    assert rd_curve.main([*argv, "--points", "3"]) == 2  # one more point, coded on this machine
    err = capsys.readouterr().err
    assert "x264 device Other CPU x8 vs " in err and "--allow-mixed" in err
    other = tmp_path / "other"
    data.rename(other)
    assert rd_curve.main([*argv, "--data", str(other)]) == 2
    assert "other data; " in capsys.readouterr().err
    assert rd_curve.main([*argv, "--data", str(other), "--allow-mixed"]) == 0
    assert (out / "rd.csv").read_text() == before


def test_temporal_error_pairs_each_scored_frame_with_the_one_before():
    """Stride 2 scores frames 0, 2, 4, 6 and pairs (1, 2), (3, 4), (5, 6): only a change inside a pair counts."""
    metrics = rd_curve.Metrics("cpu", stride=2)
    for jump_after, expected in ((3, 40 / 3), (2, 0.0)):
        source = np.stack([np.full((64, 64, 3), 50 if i <= jump_after else 90, np.uint8) for i in range(7)])
        frozen = np.repeat(source[:1], 7, axis=0)
        scores = metrics(source, frozen, None)
        assert scores["temporal"] == pytest.approx(expected)
        assert np.isnan(scores["akd"]) and np.isnan(scores["face_found"])  # no landmarker: not measured
        assert metrics(source, source, None)["temporal"] == 0


def circle_mesh(frames: int, centre=(32.0, 32.0), radius: float = 10.0) -> np.ndarray:
    """(frames, 478, 2) synthetic face-mesh points on a circle, the lip points in a cluster 8 px below its centre."""
    from codec.metrics import AKD_LIPS

    angles = np.linspace(0, 2 * np.pi, 478, endpoint=False)
    mesh = np.stack([centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles)], axis=1)
    mesh[list(AKD_LIPS)] = [centre[0], centre[1] + 8] + np.stack([np.linspace(-3, 3, 40), np.tile([-1, 1], 20)], 1)
    return np.repeat(mesh[None], frames, axis=0)


def test_face_split_and_mouth_see_every_frame_whatever_the_metric_stride():
    """Stride 10 scores frames 0, 10, 20 (temporal pairs (9, 10), (19, 20)); the wall behind the face brightens
    between frames 3 and 4, and the decoded mouth is wrong on frames 3 and 7 alone."""
    from codec.metrics import TEMPORAL_FACE_MARGIN, face_region, mouth_boxes

    rng = np.random.default_rng(1)
    still = moving_clip(1)[0]
    points = circle_mesh(21)
    y, x = np.mgrid[0:64, 0:64] + 0.5
    wall = np.hypot(x - 32, y - 32) > 16
    source = np.stack([np.where(wall[..., None] & (t >= 4), still // 2 + 20, still // 2) for t in range(21)])
    decoded = np.repeat(source[:1], 21, axis=0)  # frozen: costs the source's change
    rest = ~face_region((64, 64), points[0], margin=TEMPORAL_FACE_MARGIN)
    top, left, side = mouth_boxes(points[:1], shape=(64, 64))[0]
    mouth = np.zeros((64, 64), bool)
    mouth[top:top + side, left:left + side] = True
    mouth &= ~rest  # the crop's corners reach beyond the face region
    for t in (3, 7):
        decoded[t, mouth] = rng.integers(0, 256, (mouth.sum(), 3))
    scores = rd_curve.Metrics("cpu", stride=10)(source, decoded, points)
    assert scores["temporal"] == 0  # neither the source nor the decoded clip changes in the scored pairs
    expected_rest = 20 * wall.sum() / rest.sum() / 20  # one pair of 20 changes, on the wall's pixels
    assert scores["source_change_rest"] == pytest.approx(expected_rest, rel=1e-6)
    # The decoded mouth's noise changes twice per wrong frame (in, then out) inside the face region.
    assert scores["temporal_rest"] == pytest.approx(expected_rest, rel=1e-6)
    assert scores["source_change_face"] == 0 and scores["temporal_face"] > 0
    assert scores["face_area"] == pytest.approx(1 - rest.mean())
    assert 0 < scores["mouth_lpips"] < scores["mouth_lpips_p95"]  # 2 wrong of 21: the 95th percentile sees them
    assert np.isnan(scores["lpips_vgg"]) and np.isnan(scores["dists"])  # not asked for
    unmeasured = rd_curve.Metrics("cpu", stride=10)(source, decoded, None)
    assert all(np.isnan(unmeasured[c]) for c in [*rd_curve.REGION_COLUMNS, *rd_curve.MOUTH_COLUMNS])


def test_perceptual_metrics_see_frames_resized_to_the_perceptual_size():
    from codec.metrics import dists, lpips_vgg_distance, resize_shorter_side

    clip = moving_clip(3)
    noisy = np.clip(clip + np.random.default_rng(0).normal(0, 20, clip.shape), 0, 255).astype(np.uint8)
    measure = lambda **kwargs: rd_curve.Metrics("cpu", 1, perceptual=True, **kwargs)(clip, noisy, None)
    full = measure(perceptual_size=None, perceptual_stride=1)
    assert full["lpips_vgg"] == pytest.approx(lpips_vgg_distance(clip, noisy).mean(), rel=1e-5)
    assert full["dists"] == pytest.approx(dists(clip, noisy).mean(), rel=1e-5)
    half = measure(perceptual_size=32, perceptual_stride=1)
    small = [resize_shorter_side(x, 32) for x in (clip, noisy)]
    assert small[0].shape == (3, 3, 32, 32)
    assert half["dists"] == pytest.approx(dists(*small).mean(), rel=1e-5) != pytest.approx(full["dists"], rel=1e-3)
    assert half["lpips_vgg"] == pytest.approx(lpips_vgg_distance(*small).mean(), rel=1e-5)
    assert measure(perceptual_size=64, perceptual_stride=1)["dists"] == full["dists"]
    # Frames 0 and 2 at stride 2, frame 0 alone at the default stride of 50.
    assert measure(perceptual_size=None, perceptual_stride=2)["dists"] == pytest.approx(
        dists(clip[::2], noisy[::2]).mean(), rel=1e-5)
    first = lpips_vgg_distance(clip[0], noisy[0])[0]
    assert measure(perceptual_size=None)["lpips_vgg"] == pytest.approx(first, rel=1e-5)


def test_rows_say_when_on_which_commit_and_write_no_machine_path(tiny_run):
    out, _, data = tiny_run
    rows = read_csv(out / "rd.csv")
    for row in rows:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", row["date"])
        assert re.fullmatch(r"[0-9a-f]{12}(\+dirty)?", row["commit"])
        assert 0 < float(row["lpips_vgg"]) < 1 and 0 < float(row["dists"]) < 1
        assert all(row[c] == "nan" for c in [*rd_curve.REGION_COLUMNS, *rd_curve.MOUTH_COLUMNS])  # --no-akd
    info = json.loads((out / "run.json").read_text())
    assert info["data"] == os.path.relpath(data, rd_curve.REPO) and info["perceptual"].startswith("lpips_vgg vgg-v0.1")
    def strings(value):
        if isinstance(value, dict):
            return [s for v in value.values() for s in strings(v)]
        return [s for v in value for s in strings(v)] if isinstance(value, list) else [str(value)]

    words = [w for s in strings(info) for w in shlex.split(s) for w in w.split("=")]
    words += [v for name in ("rd.csv", "summary.csv") for r in read_csv(out / name) for v in r.values()]
    assert not [w for w in words if os.path.isabs(w)]
    quality = read_csv(out / "quality.csv")
    assert all(re.fullmatch(r"[\d.e-]+|-", r["dists_at_lpips_0.20"]) for r in quality)
    assert {r["mouth_lpips_p95_at_lpips_0.20"] for r in quality} == {"not measured"}
    for name in ("rd_perceptual.png", "rd_regions.png"):
        assert (out / name).stat().st_size > 0


def test_results_table_reads_older_headers_and_refuses_others(tmp_path):
    from results_folder import Table

    path = tmp_path / "t.csv"
    path.write_text("a,b\n1,2\n3,")  # the last row cut short
    table = Table(path, ["a", "x", "b", "y"], {"x": "nan", "y": "-"})
    assert table.read() == [{"a": "1", "x": "nan", "b": "2", "y": "-"}]
    assert path.read_text() == "a,x,b,y\n1,nan,2,-\n"  # ready for rows of the current header
    table.append({"a": "5", "x": "6", "b": "7", "y": "8"})
    assert [r["a"] for r in table.read()] == ["1", "5"]
    path.write_text("a,c\n1,2\n")
    with pytest.raises(rd_curve.BenchmarkError, match="has columns"):
        table.read()
    path.write_text("b,a\n1,2\n")  # the known columns in another order
    with pytest.raises(rd_curve.BenchmarkError, match="has columns"):
        table.read()


def test_no_akd_rows_read_nan_and_the_reports_say_not_measured(tiny_run, capsys):
    out, _, data = tiny_run
    rows = read_csv(out / "rd.csv")
    assert all(r[c] == "nan" for r in rows for c in ("akd", "akd_lips", "face_found"))
    assert all(0 <= float(r["temporal"]) < 255 for r in rows)
    assert json.loads((out / "run.json").read_text())["akd"] == rd_curve.NO_AKD
    quality = read_csv(out / "quality.csv")
    assert {r["akd_at_lpips_0.20"] for r in quality} == {r[rd_curve.JOINT_COLUMN] for r in quality} == {
        "not measured"}
    assert (out / "rd_motion.png").stat().st_size > 0
    rd_curve.write_reports(out)
    assert "AKD not measured (NaN) on points of x264, x264-zerolatency" in capsys.readouterr().out
    # Rows with AKD would not compare with these: a resume that measures it is refused.
    measuring = {**json.loads((out / "run.json").read_text()), "akd": "mediapipe 1.2.3, face_landmarker.task"}
    with pytest.raises(rd_curve.BenchmarkError, match="other akd"):
        rd_curve.check_resume(rd_curve.BenchConfig(data=data, out=out, methods=[]), measuring, [])


def test_without_mediapipe_or_its_model_a_run_refuses_in_one_line(tmp_path, capsys, monkeypatch):
    from codec.data import face_track

    write_clip(tmp_path / "a.mp4", moving_clip(4))
    out = tmp_path / "run"
    argv = ["--data", str(tmp_path), "--out", str(out), "--methods", "x264", "--size", "64", "--points", "2"]
    monkeypatch.setattr(face_track, "mediapipe_available", lambda: False)
    assert rd_curve.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rd_curve: error: AKD needs") and "mediapipe is not installed" in err
    assert "--no-akd" in err and "\n" not in err
    monkeypatch.setattr(face_track, "mediapipe_available", lambda: True)  # the model file is checked first
    assert rd_curve.main([*argv, "--landmarker", str(tmp_path / "none.task")]) == 2
    err = capsys.readouterr().err.strip()
    assert f"model not found: {tmp_path / 'none.task'}" in err and "--no-akd" in err and "\n" not in err
    assert not out.exists()


def test_rows_from_before_the_motion_columns_still_report(tmp_path, capsys):
    legacy = [{k: v for k, v in rd_row(clip, "x264", point, bpp, lpips).items() if k in rd_curve.LEGACY_COLUMNS}
              for clip in "ab" for point, bpp, lpips in (("crf40", 0.01, 0.15), ("crf51", 0.005, 0.3))]
    with open(tmp_path / "rd.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=rd_curve.LEGACY_COLUMNS)
        writer.writeheader()
        writer.writerows(legacy)
    rd_curve.write_reports(tmp_path)
    printed = capsys.readouterr().out
    for what in ("AKD", "temporal error", "LPIPS-vgg and DISTS", "temporal error by region and mouth LPIPS"):
        assert f"{what} not measured (NaN)" in printed
    summary = read_csv(tmp_path / "summary.csv")
    assert all(r[c] == "nan" for r in summary for c in rd_curve.OLDER_COLUMNS if c in r)
    quality = read_csv(tmp_path / "quality.csv")
    assert quality[0]["bpp_for_lpips_0.20"] != "not measured"
    assert {quality[0][f"{c}_at_lpips_0.20"] for c in rd_curve.AT_JOINT} == {"not measured"}
    # A resumed run reads them as not measured, of unknown date and commit, and rewrites the file its way.
    assert all(r["akd"] == r["temporal"] == r["dists"] == "nan" and r["commit"] == "-"
               for r in rd_curve.rd_table(tmp_path).read())
    assert read_csv(tmp_path / "rd.csv")[0]["mouth_lpips_p95"] == "nan"
    committed = Path(rd_curve.RESULTS) / "bench512" / "rd.csv"
    if committed.exists():  # the committed results, whatever their columns, report without error
        (tmp_path / "committed").mkdir()
        (tmp_path / "committed" / "rd.csv").write_bytes(committed.read_bytes())
        rd_curve.write_reports(tmp_path / "committed")


def test_a_point_has_akd_and_temporal_error_only_when_every_clip_was_measured():
    rows = [rd_row(clip, "fvc", point, 0.004, 0.2, akd=akd, face_found=found, temporal=temporal)
            for clip, point, akd, found, temporal in (
                ("a", "p1", 2.0, 1.0, 3.0), ("b", "p1", np.nan, 0.0, 5.0),  # b: no face in any decoded frame
                ("a", "p2", 2.0, 1.0, 3.0), ("b", "p2", np.nan, np.nan, np.nan))]  # b: not measured
    summary = rd_curve.summarize(pd.DataFrame(rows)).set_index("point")
    assert summary.loc["p1", ["akd", "face_found", "temporal"]].tolist() == [2.0, 0.5, 4.0]
    assert summary.loc["p2", rd_curve.MOTION_COLUMNS].isna().all()


def curve(method: str, points: list[tuple[float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame([{"method": method, "point": f"p{i}", "bpp": bpp, "lpips": lpips, "akd": akd,
                          "temporal": 1.0} for i, (bpp, lpips, akd) in enumerate(points)])


def test_quality_needs_lpips_020_and_akd_at_most_x264s_at_that_rate():
    # x264 reaches LPIPS 0.20 at 0.005 * 2^(2/3) bpp (two points: linear in log bpp), with AKD 4 - 2 * 2/3 there.
    x264 = curve("x264", [(0.005, 0.30, 4.0), (0.01, 0.15, 2.0)])
    good = curve("good", [(0.002, 0.25, 4.0), (0.004, 0.15, 2.0)])  # LPIPS 0.20 at 0.002 * 2^(1/2)
    slide = curve("slide", [(0.002, 0.25, 6.0), (0.004, 0.15, 5.0)])  # LPIPS as good, motion never
    quality = rd_curve.quality_table(pd.concat([x264, good, slide])).set_index("method")
    assert quality.loc["x264", "akd_at_lpips_0.20"] == f"{4 - 4 / 3:.4g}"
    assert float(quality.loc["x264", rd_curve.JOINT_COLUMN]) == pytest.approx(0.005 * 2 ** (2 / 3), rel=1e-4)
    assert float(quality.loc["good", "bpp_for_lpips_0.20"]) == pytest.approx(0.002 * 2 ** 0.5, rel=1e-4)
    # max(LPIPS / 0.20, AKD / 2.667) goes 1.5 -> 0.75: AKD binds, 1 is reached 2/3 of the way in log bpp.
    assert float(quality.loc["good", rd_curve.JOINT_COLUMN]) == pytest.approx(0.002 * 2 ** (2 / 3), rel=1e-4)
    assert quality.loc["slide", rd_curve.JOINT_COLUMN] == "not reached"
    without_anchor = rd_curve.quality_table(pd.concat([good, slide]))
    assert set(without_anchor[rd_curve.JOINT_COLUMN]) == {"no x264 AKD at LPIPS 0.20"}


def test_akd_and_temporal_error_of_a_face_clip_end_to_end(tmp_path):
    """The astronaut portrait moving (codec.demo): x264 at a high rate follows it, the slideshow does not."""
    pytest.importorskip("mediapipe")  # optional: the `prepare` extra
    from codec.data.prepare import landmarker_path
    from codec.demo import DemoClipConfig, astronaut_frames

    if not landmarker_path(None).is_file():
        pytest.skip(f"no face landmarker model at {landmarker_path(None)}")
    write_clip(tmp_path / "astronaut.mp4", np.stack(list(astronaut_frames(DemoClipConfig(seconds=0.4, size=128)))))
    out = tmp_path / "run"
    assert rd_curve.main(["--data", str(tmp_path), "--out", str(out), "--methods", "x264,hold", "--size", "128",
                          "--point-pattern", "crf20,qp24-every25", "--metric-stride", "2",
                          "--perceptual-stride", "2"]) == 0
    x264, hold = ({k: float(v) for k, v in r.items() if k in rd_curve.MEASURED_COLUMNS}
                  for r in sorted(read_csv(out / "rd.csv"), key=lambda r: r["method"] != "x264"))
    assert x264["face_found"] == hold["face_found"] == 1
    assert x264["akd"] < 1 < hold["akd"] and x264["akd_lips"] < hold["akd_lips"]
    assert 0 < x264["temporal"] < hold["temporal"]
    # A frozen picture's frame-to-frame error is the source's own change, in each region.
    assert hold["temporal_face"] == pytest.approx(hold["source_change_face"], rel=1e-6)
    assert hold["temporal_rest"] == pytest.approx(hold["source_change_rest"], rel=1e-6)
    assert x264["source_change_face"] == hold["source_change_face"] > 0 and 0 < x264["face_area"] < 1
    assert 0 < x264["temporal_face"] < hold["temporal_face"] and x264["temporal_rest"] < hold["temporal_rest"]
    assert 0 < x264["mouth_lpips"] <= x264["mouth_lpips_p95"] and x264["mouth_lpips_p95"] < hold["mouth_lpips_p95"]
    assert x264["lpips_vgg"] < hold["lpips_vgg"] and x264["dists"] < hold["dists"]
    assert json.loads((out / "run.json").read_text())["akd"].startswith("mediapipe ")
    summary = read_csv(out / "summary.csv")
    assert all(r[c] != "nan" for r in summary for c in rd_curve.MEASURED_COLUMNS)


def test_keyframe_refs_counts_idr_predicted_and_switched_keyframes_and_resumes(tmp_path, stills, capsys):
    import keyframe_refs

    write_clip(tmp_path / "aba.mp4", np.stack([stills[c] for c in "AAABBBAAA"]))
    out = tmp_path / "run"
    argv = ["--data", str(tmp_path), "--out", str(out), "--size", "64", "--refresh", "18", "--stride", "1",
            "--qp", "30,40"]
    assert keyframe_refs.main(argv) == 0
    table = read_csv(out / "keyframes.csv")
    assert [(r["setting"], r["qp"]) for r in table[:6]] == [(s, "30") for s in keyframe_refs.SETTINGS]
    rows = {r["setting"]: r for r in table if r["qp"] == "30"}
    counts = {s: (int(r["keyframes"]), int(r["idr"]), int(r["predicted"]), int(r["switches"]))
              for s, r in rows.items()}
    # A, B, A: refs 1 codes three keyframes, refs 4 switches back to the first A; prediction keeps one IDR.
    # A true return renders as well as a new keyframe, so the default reuse margin (0 dB) reuses it as -any does.
    assert counts == {"refs1": (3, 3, 0, 0), "refs4": (2, 2, 0, 1), "refs1-pred": (3, 1, 2, 0),
                      "refs4-pred": (2, 1, 1, 1), "refs4-pred-refresh": (2, 1, 1, 1), "refs4-pred-any": (2, 1, 1, 1)}
    assert int(rows["refs1-pred"]["keyframe_bytes"]) < int(rows["refs1"]["keyframe_bytes"])
    saving = int(rows["refs4-pred"]["keyframe_bytes"]) / int(rows["refs1-pred"]["keyframe_bytes"]) - 1
    printed = capsys.readouterr().out
    assert "| aba | refs1-pred | 30 | 3 (1 + 2) | 0 |" in printed
    assert f"| aba | refs4-pred | 30 | 2 (1 + 1) | 1 | {int(rows['refs4-pred']['keyframe_bytes']):,} | {saving:+.1%} |" \
        in printed
    assert "Keyframe bytes against refs 1 at equal LPIPS" in printed
    assert sum(line.startswith("| aba | refs4") and line.count("|") == 4 for line in printed.splitlines()) == 4
    assert keyframe_refs.main(argv) == 0  # resumed: every row is there, nothing is coded again
    assert read_csv(out / "keyframes.csv") == table
    assert keyframe_refs.main([*argv, "--settings", "refs2"]) == 1
    assert capsys.readouterr().err.strip() == "keyframe_refs: error: unknown setting(s) refs2; choose from " \
                                              "refs1, refs4, refs1-pred, refs4-pred, refs4-pred-refresh, refs4-pred-any"


def test_heldout_val_scores_each_export_on_the_same_pairs(tmp_path, capsys):
    import heldout_val
    from codec.data.prepare import main as prepare_main
    from codec.motion_model import build_untrained, save_weights

    clips = tmp_path / "clips"
    clips.mkdir()
    yy, xx = np.mgrid[:64, :64]
    for name in ("ann", "bob"):
        blobs = [np.exp(-((xx - 30 - 3 * t) ** 2 + (yy - 32) ** 2) / 200.0) * 255 for t in range(4)]
        write_clip(clips / f"{name}.mp4", np.stack([np.stack([b, b * 0.5, np.full_like(b, 90)], -1) for b in blobs])
                   .astype(np.uint8))
    cache = tmp_path / "cache"
    assert prepare_main([str(clips), str(cache), "--size", "64", "--centre-crop"]) == 0
    weights = []
    for seed in (0, 1):
        weights.append(tmp_path / f"seed{seed}.pt")
        save_weights(build_untrained("fv2v", "test", seed), weights[-1], {"note": "untrained"})
    argv = ["--cache", str(cache), "--split", "train", "--pairs", "16", *map(str, weights)]
    assert heldout_val.main(argv) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines() if line.startswith("| seed")]
    assert [r[0] for r in rows] == ["| seed0.pt", "| seed1.pt"]
    scores = [(float(r[1]), float(r[2])) for r in rows]
    assert all(0 < l1 < 1 and 0 < lp < 1 for l1, lp in scores) and scores[0] != scores[1]
    assert rows[0][3].startswith("nan")  # a --centre-crop cache has no landmark labels
    assert heldout_val.main(argv) == 0  # the same pairs again: the same numbers
    assert [(float(r[1]), float(r[2])) for r in (line.split(" | ") for line in capsys.readouterr().out.splitlines()
                                                 if line.startswith("| seed"))] == scores
    assert heldout_val.main(["--cache", str(cache), str(tmp_path / "none.pt")]) == 1
    assert f"heldout_val: error: no weights at {tmp_path / 'none.pt'}" in capsys.readouterr().err


def test_code_version_is_dirty_for_changed_code_not_for_changed_results(tmp_path, monkeypatch):
    """A benchmark row says +dirty when code differs from its commit; results written beside it are no code."""
    import subprocess

    import results_folder

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    for path in ("benchmarks/rd_curve.py", "benchmarks/results/a/rd.csv", "codec/x.py"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x\n")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "c")
    monkeypatch.setattr(results_folder, "REPO", tmp_path)
    clean = results_folder.code_version()
    assert re.fullmatch(r"[0-9a-f]{12}", clean)
    (tmp_path / "benchmarks/results/a/rd.csv").write_text("y\n")
    assert results_folder.code_version() == clean
    (tmp_path / "codec/x.py").write_text("y\n")
    assert results_folder.code_version() == clean + "+dirty"
