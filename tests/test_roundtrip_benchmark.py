"""benchmarks/roundtrip.py on a tiny clip: the user's encode → info → decode path and its checks."""
import sys
from pathlib import Path

import pandas as pd


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import roundtrip  # noqa: E402

FRAMES, SIZE = 8, 64


def test_roundtrip_reports_the_stream_it_wrote(tmp_path, clip_folder):
    data = clip_folder(FRAMES)
    out = tmp_path / "out"
    assert roundtrip.main(["--data", str(data), "--out", str(out), "--model", "untrained-test", "--size", str(SIZE),
                           "--metric-stride", "2", "--", "--max-gop", "3", "--refresh-threshold", "0"]) == 0
    row = pd.read_csv(out / "roundtrip.csv").iloc[0]
    assert row.frames == FRAMES and row.fps == 25
    assert row.keyframes == 3 and row.motion_packets == FRAMES - 3  # keyframes at 0, 3, 6 (max-gop 3)
    assert row.bpp == row.bytes * 8 / (SIZE * SIZE * FRAMES)
    assert 0 < row.motion_bytes_per_frame < 40
    assert 0 <= row.lpips < 1 and row.psnr > 10
    readme = (out / "README.md").read_text()
    assert "| talk |" in readme
    assert f"--data {data}" not in readme and "--data ../" in readme  # relative to the repository, as results are


def test_roundtrip_names_a_missing_folder(tmp_path, capsys):
    assert roundtrip.main(["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_every_bench512_clip_round_trips_through_the_cli(shared_dir, tmp_path):
    data = shared_dir / "data" / "bench512"
    clips = sorted(data.glob("*.mp4"))
    assert clips, f"no clips in {data}"
    out = tmp_path / "out"
    # roundtrip.main fails (exit 1) on any frame-count, fps or info-bpp mismatch.
    assert roundtrip.main(["--data", str(data), "--out", str(out), "--model", "untrained-test", "--size", "64",
                           "--frames", "5", "--metric-stride", "5"]) == 0
    table = pd.read_csv(out / "roundtrip.csv")
    assert sorted(table["clip"]) == [c.stem for c in clips]
    assert (table.frames == 5).all() and set(table.fps) <= {25.0, 30.0}
    assert (table.bpp == table.bytes * 8 / (64 * 64 * 5)).all()
