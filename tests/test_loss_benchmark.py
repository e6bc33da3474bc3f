"""benchmarks/loss.py on a tiny clip: a loopback call without loss conceals nothing, one with a burst conceals."""
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
                      "--frames", str(FRAMES), "--conditions", "loss0,burst3", "--nack", "off"]) == 0
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
                      "--frames", str(FRAMES), "--conditions", "loss0,burst3", "--nack", "off"]) == 0
    assert len(pd.read_csv(out / "loss.csv")) == 2  # resumed: nothing measured twice


def test_loss_benchmark_refuses_bad_input(tmp_path, capsys):
    assert loss.main(["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 1
    assert "does not exist" in capsys.readouterr().err
