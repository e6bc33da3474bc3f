"""benchmarks/rate_control.py on a tiny clip: each row is the search's nearest pass, and out of reach is said so."""
import math
import sys
from pathlib import Path

import pandas as pd

from codec.coding_defaults import QUALITY_MIN

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import rate_control  # noqa: E402

FRAMES, SIZE = 12, 64


def test_rate_control_rows(tmp_path, clip_folder):
    data = clip_folder(FRAMES)
    out = tmp_path / "out"
    args = ["--data", str(data), "--out", str(out), "--model", "untrained-test-image", "--size", str(SIZE),
            "--frames", str(FRAMES), "--targets", "27,5000", "--stride", "4"]
    assert rate_control.main(args) == 0
    table = pd.read_csv(out / "rate.csv")
    assert list(table.columns) == rate_control.COLUMNS and len(table) == 2
    for _, row in table.iterrows():
        passes = {float(q): float(r) for q, r in (p.split(":") for p in row.pass_kbps.split())}
        assert len(passes) == row.passes and passes[row.quality] == round(row.kbps, 1)
        # the row is the pass nearest the target in ln rate, and its error is against the target
        assert row.quality == min(passes, key=lambda q: abs(math.log(passes[q] / row.target_kbps)))
        assert math.isclose(row.error_pct, 100 * (row.kbps / row.target_kbps - 1), abs_tol=0.05)  # kbps is rounded
        assert row.within == (abs(row.error_pct) <= 100 * rate_control.RATE_TOLERANCE)
        assert 0 < row.lpips < 1 and row.keyframes >= 1 and row.start == rate_control.START
    near, far = table.set_index("target_kbps").loc[27.0], table.set_index("target_kbps").loc[5000.0]
    assert near.within == 1 and abs(near.error_pct) <= 10
    # 5000 kbps is beyond every frame coded at 64²: the search ends at the finest Q and says it missed
    assert far.within == 0 and far.quality == QUALITY_MIN and far.keyframes == FRAMES and far.kbps < 5000
    assert rate_control.main(args) == 0 and len(pd.read_csv(out / "rate.csv")) == 2  # resumed: nothing twice
    assert "| 27 | 1 | 1 |" in rate_control.summary(table.to_dict("records"))


def test_rate_control_refuses_bad_input(tmp_path, capsys):
    assert rate_control.main(["--data", str(tmp_path), "--out", str(tmp_path / "out"), "--start", "60"]) == 1
    assert "--start within" in capsys.readouterr().err
