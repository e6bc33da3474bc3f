"""benchmarks/loss.py on a tiny clip: a loopback call without loss conceals nothing, one with a burst conceals; x264
through the same transport codes every frame and freezes until the IDR its keyframe request brings."""
import sys
from pathlib import Path

import pandas as pd


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import loss  # noqa: E402

FRAMES, SIZE = 12, 64


def test_loss_benchmark_rows(tmp_path, clip_folder):
    data = clip_folder(FRAMES)
    out = tmp_path / "out"
    assert loss.main(["--data", str(data), "--out", str(out), "--model", "untrained-test-image", "--size", str(SIZE),
                      "--frames", str(FRAMES), "--methods", "fvc", "--conditions", "loss0,burst3", "--nack", "off"]) == 0
    rows = pd.read_csv(out / "loss.csv").set_index("condition")
    assert list(pd.read_csv(out / "loss.csv").columns) == loss.COLUMNS
    clean, burst = rows.loc["loss0"], rows.loc["burst3"]
    assert clean.concealed == 0 and clean.unshown == 0 and clean.longest_run_frames == 0 and clean.dropped == 0
    assert clean.decoded == FRAMES and clean.latency_median_ms > 0 and "test-image" in clean.weights
    # The burst takes the MOTION datagrams of frames 6-8; with no RESYNC before frame 26 the rest is concealed.
    assert burst.dropped == loss.BURST and burst.concealed == FRAMES - 6 == burst.longest_run_frames
    # An untrained model's concealed frames need not score worse than its decoded ones (a CI run saw 0.0329
    # against 0.0336), only differently: what is shown changed.
    assert burst.longest_run_ms == (FRAMES - 6) * 40 and burst.lpips != clean.lpips
    assert rows.nack.eq("off").all() and rows.commit.str.len().ge(12).all()
    assert loss.main(["--data", str(data), "--out", str(out), "--model", "untrained-test-image", "--size", str(SIZE),
                      "--frames", str(FRAMES), "--methods", "fvc", "--conditions", "loss0,burst3", "--nack", "off"]) == 0
    assert len(pd.read_csv(out / "loss.csv")) == 2  # resumed: nothing measured twice


def test_x264_through_the_same_transport_freezes_until_the_requested_idr(tmp_path, clip_folder):
    frames = 40
    out = tmp_path / "out"
    assert loss.main(["--data", str(clip_folder(frames)), "--out", str(out), "--model", "untrained-test-image",
                      "--size", str(SIZE), "--frames", str(frames), "--methods", "x264", "--x264-qp", "36",
                      "--conditions", "loss0,burst3", "--nack", "off"]) == 0
    rows = pd.read_csv(out / "loss.csv").set_index("condition")
    clean, burst = rows.loc["loss0"], rows.loc["burst3"]
    assert (rows.method == "x264").all() and (rows.qp == 36).all()
    # Every frame is an H.264 picture, one IDR: no motion, no keyframe request without loss.
    assert clean.keyframes == frames == clean.decoded and clean.plis == 0 and clean.concealed == 0
    # A lost P picture breaks the chain: frames repeat until the IDR asked for, after which all decode again.
    assert burst.dropped == loss.BURST and burst.plis >= 1 and 0 < burst.concealed == burst.longest_run_frames
    assert burst.decoded + burst.concealed == frames and burst.longest_run_frames < frames // 2


def test_loss_benchmark_refuses_bad_input(tmp_path, capsys):
    assert loss.main(["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert loss.main(["--data", str(tmp_path), "--out", str(tmp_path / "out"), "--x264-qp", "60"]) == 1
    assert "60" in capsys.readouterr().err
