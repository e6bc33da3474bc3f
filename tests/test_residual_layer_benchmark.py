"""benchmarks/residual_layer.py on a tiny clip: coded, rendered and residual rows with their rates."""
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import residual_layer  # noqa: E402

FRAMES, SIZE = 6, 64


def test_residual_layer_rows(tmp_path, clip_folder):
    data = clip_folder(FRAMES)
    out = tmp_path / "out"
    args = ["--data", str(data), "--out", str(out), "--model", "untrained-test-image", "--size", str(SIZE),
            "--frames", str(FRAMES), "--stride", "2"]
    assert residual_layer.main(args) == 0
    table = pd.read_csv(out / "residual.csv")
    assert list(table.columns) == residual_layer.COLUMNS
    coded, residual = (table[table.layer == layer].set_index("qp") for layer in ("coded", "residual"))
    rendered = table[table.layer == "rendered"].iloc[0]
    assert list(coded.index) == list(residual.index) == list(residual_layer.QPS)
    # A finer QP costs more bytes and gets nearer the source, for frames and residuals alike.
    assert coded.kbps.is_monotonic_decreasing and coded.psnr.is_monotonic_decreasing
    assert residual.kbps.is_monotonic_decreasing
    # The residual layer's rate includes the .fvc stream it corrects, and correcting brings the frames nearer.
    assert (residual.kbps > rendered.kbps).all() and residual.psnr.iloc[0] > rendered.psnr
    assert residual_layer.main(args) == 0 and len(pd.read_csv(out / "residual.csv")) == len(table)  # resumed
