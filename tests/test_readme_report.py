"""benchmarks/report.py: the README's "Measured so far" tables are its output, from the committed CSVs."""
import json
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import report  # noqa: E402

ID_A, ID_B = "a" * 32, "b" * 32
SUMMARY = "method,point,clips,bpp,kbps,lpips,psnr,ssim,akd,akd_lips,face_found,temporal,encode_fps,decode_fps,weights"


@pytest.fixture(scope="module")
def section() -> str:
    return report.build()


def test_readme_tables_are_the_reports_output(section):
    """Fails when README.md's tables differ from what report.py writes: run `python benchmarks/report.py --write`."""
    diff = report.differences(report.README.read_text(), section)
    assert not diff, diff


def test_one_changed_number_in_the_readme_is_caught(section):
    readme = report.README.read_text()
    start, end = report.readme_section(readme)
    number = re.search(r"\d\.\d+", readme[start:end].splitlines()[3].split(" | ")[1])  # the first row's number
    start += readme[start:end].index(number.group())
    edited = readme[:start] + str(round(float(number.group()) + 0.001, 3)) + readme[start + len(number.group()):]
    diff = report.differences(edited, section)
    assert diff.startswith("README.md's measured tables differ") and "\n" not in diff


def test_check_exits_1_with_a_one_line_summary(tmp_path, capsys):
    readme = report.README.read_text()
    start, end = report.readme_section(readme)
    path = tmp_path / "README.md"
    path.write_text(readme[:start] + readme[start:end].replace("on 9 of 9 clips", "on 8 of 9 clips", 1) + readme[end:])
    assert report.main(["--check", "--readme", str(path)]) == 1
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "report.py --write" in out
    assert report.main(["--write", "--readme", str(path)]) == 0
    assert path.read_text() == readme
    assert report.main(["--check", "--readme", str(path)]) == 0


def test_the_drift_issue_28_named_is_generated_away(section):
    """The README's motion and rate numbers at LPIPS 0.20 are the headline folder's quality.csv, not a hand copy."""
    folder = "bench512-motion-step"
    fvc = report.pick(report.read_csv(report.RESULTS / folder / "quality.csv"), folder, method="fvc")
    bpp, run = report.num(fvc["bpp_for_lpips_0.20"]), report.read_run(report.RESULTS / folder)
    motion = next(line for line in section.splitlines() if line.startswith("| motion fidelity"))
    assert (f"fvc (at {report.sig(bpp)} bpp) AKD {report.num(fvc['akd_at_lpips_0.20']):.2f} px, "
            f"temporal {report.num(fvc['temporal_at_lpips_0.20']):.2f}") in motion
    rate = next(line for line in section.splitlines() if line.startswith("| rate for LPIPS 0.20"))
    assert f"fvc {report.sig(bpp)} bpp ({report.kbps(bpp, run):.1f} kbps)" in rate


def test_every_row_names_its_weights_and_source(section):
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| what |"):
            cells = line.strip("|").split(" | ")
            assert len(cells) == 4 and cells[2].strip() and cells[3].strip(), line
            assert "(" in cells[2] or cells[2] == "none (no motion model)", line


def _fake_folder(root: Path, name: str, weights: str, columns: dict[str, str] | None = None) -> None:
    """A results folder with one fvc point and a hold point on two clips, as rd_curve.py writes it."""
    folder = root / name
    folder.mkdir(parents=True)
    extra = columns or {}
    head = ",".join([SUMMARY, *extra])
    tail = "".join(f",{v}" for v in extra.values())
    (folder / "summary.csv").write_text(
        f"{head}\nfvc,qp24-refresh0,2,0.0033,21.8,0.17,22.0,0.76,2.4,2.4,1,5.3,30,28,w.pt ({weights}){tail}\n"
        f"hold,qp24-every250,2,0.0025,16.6,0.27,18.3,0.68,28.9,31.2,1,3.97,1e4,5e3,-{tail}\n")
    (folder / "rd.csv").write_text(
        "clip,method,point,lpips,weights\n"
        f"c1,fvc,qp24-refresh0,0.10,w.pt ({weights})\nc2,fvc,qp24-refresh0,0.30,w.pt ({weights})\n"
        "c1,hold,qp24-every250,0.20,-\nc2,hold,qp24-every250,0.25,-\n")
    (folder / "run.json").write_text(json.dumps({"size": 512, "fps": 25.0, "frames": 250, "data": "/x/bench512"}))


def _hand(tmp_path: Path, rows: str = "") -> Path:
    path = tmp_path / "rows.md"
    path.write_text("| what | number | model id | source |\n|---|---|---|---|\n" + rows
                    + "\n| model id | name |\n|---|---|\n| bbbbbbbb | older weights |\n")
    return path


def test_rows_of_weights_that_do_not_ship_go_to_the_history_table(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    _fake_folder(tmp_path, "new", ID_A)
    _fake_folder(tmp_path, "old", ID_B)
    rows = [report.rd_headline("new"), report.rd_headline("old")]
    hand = _hand(tmp_path, "| speed | 9 fps | bbbbbbbb | hand: a stopwatch |\n| keyframe | 4 KB | - | hand: x |\n")
    text = report.build(rows, hand, shipped={ID_A: "`fv2v-new`, shipped"})
    current, history = text.split(report.HISTORY_INTRO)
    assert "`fv2v-new`, shipped (aaaaaaaa)" in current and "| keyframe | 4 KB | none (no motion model)" in current
    assert "bbbbbbbb" not in current
    assert "older weights (bbbbbbbb)" in history and "| speed | 9 fps |" in history
    assert "fvc below it on 1 of 2 clips" in current
    # Ship the other weights: the rows swap tables by themselves.
    text = report.build(rows, hand, shipped={ID_B: "`fv2v-old`, shipped"})
    current, history = text.split(report.HISTORY_INTRO)
    assert "`fv2v-old`, shipped (bbbbbbbb)" in current and "| speed | 9 fps |" in current
    assert "(aaaaaaaa)" in history


def test_an_equal_budget_comparison_stays_current_whatever_ships(tmp_path):
    recipe = report.Row("fomm against fvc on equal terms", "LPIPS 0.20", (ID_A, ID_B), "x", always_current=True)
    plain = report.Row("fvc alone", "LPIPS 0.21", (ID_B,), "y")
    current, history = report.build([recipe, plain], _hand(tmp_path, ""), shipped={ID_A: "`a`, shipped"}).split(
        report.HISTORY_INTRO)
    assert "fomm against fvc on equal terms" in current and "fvc alone" in history


def test_a_live_call_row_gives_each_methods_rate_loss_rise_freeze_and_latency(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    folder = tmp_path / "live"
    folder.mkdir()
    head = ("date,commit,weights,clip,method,condition,nack,qp,lpips,bytes,longest_run_ms,latency_median_ms")
    line = "d,c,{w},{clip},{m},{cond},on,{qp},{lp},{b},{run},{lat}\n"
    rows = [("a", "fvc", "loss0", 30, 0.10, 12500, 0, 60), ("a", "fvc", "loss3", 30, 0.13, 13000, 720, 70),
            ("b", "fvc", "loss0", 30, 0.20, 12500, 0, 80), ("b", "fvc", "loss3", 30, 0.21, 13000, 0, 90),
            ("a", "x264", "loss0", 42, 0.09, 75000, 0, 9), ("a", "x264", "loss3", 42, 0.30, 76000, 1200, 9)]
    (folder / "loss.csv").write_text(head + "\n" + "".join(
        line.format(w=f"w.pt ({ID_A})" if m == "fvc" else "-", clip=c, m=m, cond=k, qp=q, lp=lp, b=b, run=r, lat=lat)
        for c, m, k, q, lp, b, r, lat in rows))
    (folder / "run.json").write_text(json.dumps({"args": {"size": "512", "frames": "250"}}))
    made = report.live_loss("live")
    assert made.number == ("fvc 10.0 kbps, LPIPS 0.150, loss3 0.170 (+0.020), longest run of repeated frames 720 ms, "
                           "latency median 70 ms; x264 (QP 42) 60.0 kbps, LPIPS 0.090, loss3 0.300 (+0.210), longest "
                           "run of repeated frames 1200 ms, latency median 9 ms")
    assert "2 clips, 512², first 250 frames" in made.what and made.models == (ID_A,)


def test_an_equal_budget_row_gives_motion_bytes_beyond_the_lone_keyframe(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    folder = tmp_path / "eq"
    folder.mkdir()
    row = "{m},{p},9,0.002,{kbps},{lpips},21,0.7,{akd},{akd},1,5,30,28,{w}\n"
    (folder / "summary.csv").write_text(
        SUMMARY + "\n" + row.format(m="fvc", p="qp24-refresh0", kbps=21.0, lpips=0.198, akd=2.9, w=f"a.pt ({ID_A})")
        + row.format(m="fomm", p="qp24-refresh0", kbps=20.0, lpips=0.188, akd=8.9, w=f"b.pt ({ID_B})")
        + row.format(m="hold", p="qp24-every250", kbps=16.02, lpips=0.27, akd=29, w="-"))
    (folder / "run.json").write_text(json.dumps({"size": 512, "fps": 25.0, "frames": 250, "data": "/x/bench512"}))
    made = report.equal_budget("eq")
    # (21.0 - 16.02) kbps over 249 of 250 frames at 25 fps: 24.998 B a frame.
    assert made.number == ("keyframe QP 24: fvc 25.0 B/frame of motion, LPIPS 0.198, AKD 2.90 px, fomm 20.0 B/frame "
                           "of motion, LPIPS 0.188, AKD 8.90 px")
    assert made.models == (ID_A, ID_B) and made.always_current


def test_csvs_with_or_without_the_new_metric_columns(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    _fake_folder(tmp_path, "plain", ID_A)
    _fake_folder(tmp_path, "more", ID_A, {"lpips_vgg": "0.31", "dists": "0.12", "mouth_lpips": "0.2"})
    assert "LPIPS-VGG" not in report.rd_headline("plain").number
    number = report.rd_headline("more").number
    assert "LPIPS-VGG 0.310" in number and "DISTS 0.120" in number
    quality = ("method,lowest_bpp,lpips_at_lowest_bpp,bpp_for_lpips_0.20,bpp_for_lpips_0.15,akd_at_lpips_0.20,"
               "temporal_at_lpips_0.20{}\nfvc,0.001,0.22,0.0019215,not reached,2.48,5.061{}\n")
    (tmp_path / "plain" / "quality.csv").write_text(quality.format("", ""))
    (tmp_path / "more" / "quality.csv").write_text(quality.format(",temporal_face_at_lpips_0.20", ",4.2"))
    assert report.rd_motion("plain").number == "fvc (at 0.00192 bpp) AKD 2.48 px, temporal 5.06"
    assert report.rd_motion("more").number.endswith("temporal 5.06, temporal (face) 4.20")
    assert "fvc 0.00192 bpp (12.6 kbps)" in report.rd_rates("plain").number


def test_the_shipped_weights_come_from_the_motion_model_registry(tmp_path, monkeypatch):
    import codec.motion_model as mm

    weights = tmp_path / "fv2v-next.pt"
    weights.write_bytes(b"not really weights")
    (tmp_path / "fv2v-next.json").write_text(json.dumps({"model_id": ID_B, "steps": 7}))
    monkeypatch.setattr(mm, "shipped_weights", lambda kind: [weights] if kind == "fv2v" else [])
    assert report.shipped_models() == {ID_B: "`fv2v-next` step 7, shipped"}


def test_hand_rows_must_say_where_their_number_came_from(tmp_path):
    with pytest.raises(report.ReportError, match="where its number came from"):
        report.read_hand_rows(_hand(tmp_path, "| speed | 9 fps | bbbbbbbb |  |\n"))
    with pytest.raises(report.ReportError, match="not 8-32 hex digits"):
        report.read_hand_rows(_hand(tmp_path, "| speed | 9 fps | step 8029 | hand |\n"))


def test_a_quality_sweep_row_counts_the_anchor_points_it_matches(tmp_path, monkeypatch):
    """An x264 point is matched when one fvc-q point has no more bytes and no higher LPIPS (and, in the second
    count, an AKD at most 10 % above)."""
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    folder = tmp_path / "q"
    folder.mkdir()
    row = "{m},{p},2,{bpp},{kbps},{lpips},30,0.9,{akd},{akd},1,3,30,28,{w}\n"
    (folder / "summary.csv").write_text(
        SUMMARY + "\n"
        + row.format(m="fvc-q", p="q51", bpp=0.002, kbps=13, lpips=0.18, akd=2.4, w=f"w.pt ({ID_A})")
        + row.format(m="fvc-q", p="q39", bpp=0.012, kbps=79, lpips=0.10, akd=1.6, w=f"w.pt ({ID_A})")
        + row.format(m="x264", p="crf51", bpp=0.005, kbps=33, lpips=0.36, akd=3.9, w="-")  # beaten by q51
        + row.format(m="x264", p="crf40", bpp=0.012, kbps=79, lpips=0.15, akd=1.34, w="-")  # on LPIPS only
        + row.format(m="x264", p="crf32", bpp=0.030, kbps=197, lpips=0.067, akd=0.74, w="-"))  # not at all
    (folder / "run.json").write_text(json.dumps({"size": 512, "fps": 25.0, "frames": 250, "data": "/x/bench512"}))
    made = report.rd_quality("q")
    assert "2 points from 13.0 kbps (LPIPS 0.180)" in made.number
    assert "2 of 3 x264 points have a fvc-q point with no more bytes, no higher LPIPS (not: crf32)" in made.number
    assert "1 of 3 x264 points have a fvc-q point with no more bytes, no higher LPIPS and AKD at most 10 % above " \
           "(not: crf40, crf32)" in made.number
    assert made.models == (ID_A,)


def test_a_rate_control_row_counts_the_runs_within_tolerance_and_names_the_worst(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path)
    folder = tmp_path / "rc"
    folder.mkdir()
    head = "date,commit,weights,clip,target_kbps,start,quality,kbps,error_pct,within,passes,pass_kbps,keyframes,lpips,seconds"
    line = "2026-12-07,abc,w.pt ({id}),{clip},{t},40,33,{k},{e},{w},{p},40:11,1,0.1,9\n"
    (folder / "rate.csv").write_text(
        head + "\n" + line.format(id=ID_A, clip="X__cnn2_25fps", t=100.0, k=115.7, e=15.7, w=0, p=8)
        + line.format(id=ID_A, clip="X__french", t=100.0, k=98.5, e=-1.5, w=1, p=6)
        + line.format(id=ID_A, clip="X__french", t=10.0, k=9.5, e=-4.9, w=1, p=3))
    (folder / "run.json").write_text(json.dumps({"args": {"size": "512", "frames": "250"}}))
    made = report.rate_control("rc")
    assert made.number == ("2 of 3 clip × target runs within ±10 %; worst +15.7 % (cnn2 at 100 kbps); "
                           "5.7 passes on average, at most 8")
    assert "2 clips, 512², first 250 frames; T = 10, 100 kbps" in made.what and made.models == (ID_A,)
