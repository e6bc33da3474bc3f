"""The reenactment benchmark: pose and expression targets, masks, resumable rows and tiny runs of every task."""
from __future__ import annotations

import csv
import json
import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from codec.data.cache import CacheIndex, ClipRecord
from codec.data.face_track import MESH_POINTS
from codec.decoder import DecoderOptions
from codec.demo import DemoClipConfig, astronaut_frames
from codec.metrics import AKD_POINTS
from codec.video import VideoWriter

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import reenactment as re_bench  # noqa: E402
from rd_curve import NO_AKD, Metrics  # noqa: E402

SIZE = 128


def write_clip(path: Path, frames: np.ndarray) -> None:
    with VideoWriter(path, fps=25, crf=10) as writer:
        for frame in frames:
            writer.write(np.ascontiguousarray(frame))


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return np.stack(list(astronaut_frames(DemoClipConfig(seconds=0.24, size=SIZE))))  # 6 frames


@pytest.fixture(scope="module")
def clips(tmp_path_factory, astronaut) -> Path:
    """Two 6-frame clips, the astronaut and her mirror image: two identities for the benchmark."""
    folder = tmp_path_factory.mktemp("clips")
    write_clip(folder / "a.mp4", astronaut)
    write_clip(folder / "b.mp4", astronaut[:, :, ::-1])
    return folder


@pytest.fixture(scope="module")
def cache(tmp_path_factory, astronaut) -> Path:
    """A prepared cache of three 64² clips: two of held-out identities (val), one of a training identity."""
    folder = tmp_path_factory.mktemp("cache")
    (folder / "clips").mkdir()
    records = []
    for name, identity, split, frames in (("v1", "p1", "val", astronaut), ("v2", "p2", "val", astronaut[::-1]),
                                          ("t1", "p3", "train", astronaut)):
        write_clip(folder / "clips" / f"{name}.mp4", frames[:, ::2, ::2])
        records.append(ClipRecord(id=name, source=f"{name}.mp4", identity=identity, set="train", split=split,
                                  frames=len(frames), fps=25.0, size=SIZE // 2, source_size=(SIZE, SIZE),
                                  box=(0, 0, SIZE), crop="centre"))
    CacheIndex(size=SIZE // 2, fps=25.0, crf=20, clips=records).save(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, clips, cache):
    """Every task with the untrained "test" models, without MediaPipe, --data at 96², the cache at its 64²:
    scored frames 2 and 4."""
    out = tmp_path_factory.mktemp("run") / "tiny"
    argv = ["--data", str(clips), "--cache", str(cache), "--out", str(out), "--size", "96", "--frames", "5",
            "--stride", "2", "--model", "untrained-test", "--fomm-model", "untrained-test", "--no-akd"]
    assert re_bench.main(argv) == 0
    return out, argv


def test_every_task_writes_its_rows_and_the_reports(tiny_run, clips, cache):
    out, _ = tiny_run
    datasets = {clips.name: ("a", "b"), f"{cache.name}-val": ("v1", "v2")}  # t1 is a training identity
    reconstruction = read_csv(out / "reconstruction.csv")
    assert list(reconstruction[0]) == re_bench.columns("reconstruction")
    assert {(r["dataset"], r["source"], r["driving"], r["method"]) for r in reconstruction} == {
        (d, c, c, m) for d, names in datasets.items() for c in names for m in re_bench.METHODS}
    cross = read_csv(out / "cross_identity.csv")
    assert {(r["dataset"], r["source"], r["driving"], r["method"]) for r in cross} == {
        (d, s, t, m) for d, (x, y) in datasets.items() for s, t in ((x, y), (y, x)) for m in re_bench.METHODS}
    for row in reconstruction + cross:
        assert row["frames"] == "2" and row["view"] == re_bench.NO_VIEW and float(row["seconds"]) >= 0
        assert row["width"] == row["height"] == ("96" if row["dataset"] == clips.name else "64")
        assert ("UNTRAINED" in row["weights"]) == (row["method"] != "hold")
        assert row["date"].endswith("Z") and len(row["commit"].split("+")[0]) == 12
    for row in reconstruction:
        assert 0 <= float(row["l1"]) < 1 and 5 < float(row["psnr"]) < 99 and 0 < float(row["lpips"]) < 1
        assert all(row[c] == "nan" for c in ("akd", "akd_lips", "face_found"))  # --no-akd: not measured
    for row in cross:
        assert float(row["identity_lpips"]) == 0 if row["method"] == "hold" else float(row["identity_lpips"]) > 0
        assert all(row[c] == "nan" for c in ("expression_akd", *re_bench.POSE_COLUMNS, "face_found"))
    assert not (out / "free_view.csv").exists()  # it measures nothing without MediaPipe
    info = json.loads((out / "run.json").read_text())
    assert info["akd"] == NO_AKD
    assert not Path(info["data"]).is_absolute() and not Path(info["cache"]).is_absolute()  # no machine paths
    summary = read_csv(out / "cross_identity_summary.csv")
    assert {(r["dataset"], r["method"], r["units"]) for r in summary} == {
        (d, m, "2") for d in datasets for m in re_bench.METHODS}
    markdown = (out / "summary.md").read_text()
    assert "## reconstruction" in markdown and "## cross_identity" in markdown and "## free_view" not in markdown
    for task in ("reconstruction", "cross_identity"):
        assert (out / f"{task}.png").stat().st_size > 0
    assert (out / "tiles" / "cross_identity" / f"{clips.name}__a__b__fomm.png").exists()


def test_resume_skips_done_rows_redoes_a_cut_row_and_refuses_other_settings(tiny_run, tmp_path, capsys):
    done, argv = tiny_run
    out = tmp_path / "run"
    shutil.copytree(done, out)
    argv = list(argv)
    argv[argv.index("--out") + 1] = str(out)
    capsys.readouterr()
    before = {task: (out / f"{task}.csv").read_text() for task in ("reconstruction", "cross_identity")}
    assert re_bench.main(argv) == 0
    err = capsys.readouterr().err
    assert "reconstruction: 12 rows already" in err and "cross_identity: 12 rows already" in err
    assert err.count(", 0 to run") == 2
    assert all((out / f"{task}.csv").read_text() == text for task, text in before.items())

    cut = before["cross_identity"][: before["cross_identity"].rstrip("\n").rfind(",")]  # the last row cut short
    (out / "cross_identity.csv").write_text(cut)
    assert re_bench.main(argv) == 0
    assert "cross_identity: 11 rows already" in capsys.readouterr().err
    rows = read_csv(out / "cross_identity.csv")
    assert len(rows) == 12 and all(r["weights"] for r in rows)

    at = argv.index("--cache")
    assert re_bench.main(argv[:at] + argv[at + 2:]) == 0  # a run may leave a dataset out
    assert "no --cache" in capsys.readouterr().err
    assert re_bench.main([*argv, "--stride", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("reenactment: error:") and "other stride" in err and "\n" not in err


def test_hold_scores_zero_on_the_source_frame(astronaut):
    source = astronaut[0]
    scores = re_bench.score_reconstruction(Metrics("cpu", 1), source[None], re_bench.hold(source, source[None]), None)
    assert (scores["l1"], scores["lpips"], scores["psnr"], scores["ssim"]) == (0, 0, Metrics.PSNR_CAP, 1)
    assert math.isnan(scores["akd"]) and "temporal" not in scores


def test_cross_identity_pairs_clips_of_other_identities():
    clips = [re_bench.Clip("d", name, identity, Path(name), 64)
             for name, identity in (("a", "x"), ("b", "x"), ("c", "y"), ("d", "z"))]
    other = [re_bench.Clip("e", "e", "w", Path("e"), 64)]  # alone in its dataset: no pair
    pairs = [(s.name, d.name) for s, d in re_bench.units("cross_identity", clips + other, None)]
    assert pairs == [("a", "c"), ("b", "c"), ("c", "d"), ("d", "a")]
    assert len(re_bench.units("cross_identity", clips, 2)) == 2
    assert [(s.name, d.name) for s, d in re_bench.units("reconstruction", clips[:2], 1)] == [("a", "a"), ("b", "b")]


def mesh(seed: int) -> np.ndarray:
    """Face-mesh-like points (478, 2): random, in a 40-pixel box around (60, 60)."""
    return 40 + 40 * np.random.default_rng(seed).random((MESH_POINTS, 2))


def similarity(points: np.ndarray, degrees: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return points @ np.array([[c, s], [-s, c]]) * scale + shift


def faces(*pairs) -> re_bench.Faces:
    points = np.stack([p for p, _ in pairs])
    return re_bench.Faces(points, np.array([pose for _, pose in pairs], np.float64), np.zeros(points.shape[:2]))


def test_alignment_removes_shift_roll_and_scale_but_not_expression():
    points = mesh(0)
    moved = similarity(points, 12, 1.3, (5, -7))
    assert np.allclose(re_bench.align(moved, points), points)
    mouth = moved.copy()
    mouth[list(re_bench.AKD_POINTS[:40])] += (0, 2)  # the lips move; the rigid points do not
    assert re_bench.expression_distance(mouth, points, points, points) > 0.5
    assert re_bench.expression_distance(mouth, points, mouth, moved) == pytest.approx(0, abs=1e-9)


def test_transfer_targets_are_the_source_moved_as_the_driving_face_moved():
    source, first = mesh(1), similarity(mesh(2), -5, 0.8, (3, 3))  # two people, posed differently
    opened = first.copy()
    opened[list(AKD_POINTS[:20])] += (0, 3)  # the driving face opens its mouth, turns and nods
    copied = source.copy()
    copied[list(AKD_POINTS[:20])] += re_bench.align(opened, source)[list(AKD_POINTS[:20])] - \
        re_bench.align(first, source)[list(AKD_POINTS[:20])]
    src, driving = faces((source, (10, 0, 0))), faces((first, (0, 5, 0)), (opened, (20, 5, 3)), (opened, (np.nan,) * 3))
    perfect = re_bench.transfer_scores(src, driving, faces((copied, (30, 0, 3)), (copied, (30, 0, 3))))
    assert perfect["expression_akd"] == pytest.approx(0, abs=1e-9)
    assert (perfect["pose_error"], perfect["face_found"]) == (0, 1)  # the frame without a driving face not counted
    held = re_bench.transfer_scores(src, driving, faces((source, (10, 0, 0)), (source, (10, 0, 0))))
    assert held["expression_akd"] > 0.1
    assert (held["yaw_error"], held["pitch_error"], held["roll_error"]) == (20, 0, 3)
    assert held["pose_error"] == pytest.approx(23 / 3)
    lost = re_bench.transfer_scores(src, driving, faces(*[(np.full_like(source, np.nan), (np.nan,) * 3)] * 2))
    assert lost["face_found"] == 0 and math.isnan(lost["expression_akd"]) and math.isnan(lost["pose_error"])


def test_free_view_asks_for_the_offset_and_compares_only_outside_the_face():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (2, 64, 64, 3), np.uint8)
    angle = rng.random(MESH_POINTS) * 2 * math.pi
    points = 32 + 8 * np.stack([np.cos(angle), np.sin(angle)], -1) * np.sqrt(rng.random((MESH_POINTS, 1)))
    base_faces = faces((points, (5, -4, 2)), (points, (5, -4, 2)))
    unchanged = re_bench.view_scores(base, base_faces, base, base_faces, DecoderOptions(yaw=15), "cpu")
    assert (unchanged["yaw_error"], unchanged["pitch_error"], unchanged["roll_error"]) == (15, 0, 0)
    assert unchanged["pose_error"] == 5 and unchanged["face_found"] == 1 and unchanged["background_lpips"] == 0
    frontal = re_bench.view_scores(base, base_faces, base, base_faces, DecoderOptions(frontalize=True), "cpu")
    assert frontal["pose_error"] == pytest.approx(11 / 3)  # the base pose's size: 0 was asked
    region = re_bench.face_region((64, 64), points)
    assert region[32, 32] and region[32, 32 + 8 + 2] and not region[32, 32 + 8 + 6]  # margin 0.25 x 16 px
    inside = np.where(region[..., None], 255 - base, base)
    assert re_bench.view_scores(base, base_faces, inside, base_faces, DecoderOptions(yaw=15), "cpu")[
        "background_lpips"] == 0
    outside = np.where(region[..., None], base, 255 - base)
    assert re_bench.view_scores(base, base_faces, outside, base_faces, DecoderOptions(yaw=15), "cpu")[
        "background_lpips"] > 0.05
    no_face = faces(*[(np.full_like(points, np.nan), (np.nan,) * 3)] * 2)
    lost = re_bench.view_scores(base, base_faces, base, no_face, DecoderOptions(yaw=15), "cpu")
    assert lost["face_found"] == 0 and math.isnan(lost["pose_error"]) and lost["background_lpips"] == 0


def test_without_mediapipe_a_run_refuses_in_one_line(clips, tmp_path, capsys, monkeypatch):
    from codec.data import face_track

    monkeypatch.setattr(face_track, "mediapipe_available", lambda: False)
    out = tmp_path / "run"
    assert re_bench.main(["--data", str(clips), "--out", str(out), "--size", "64", "--model", "untrained-test",
                          "--fomm-model", "untrained-test"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("reenactment: error: AKD needs") and "mediapipe is not installed" in err and "--no-akd" in err
    assert not out.exists()


def test_every_task_with_mediapipe_and_the_shipped_weights(clips, tmp_path):
    """Faces are found in every output of the trained models: every MediaPipe column is measured."""
    pytest.importorskip("mediapipe")  # optional: the `prepare` extra
    from codec.data.prepare import landmarker_path
    from codec.motion_model import default_weights

    if not landmarker_path(None).is_file():
        pytest.skip(f"no face landmarker model at {landmarker_path(None)}")
    assert default_weights("fv2v") and default_weights("fomm"), "the fv2v and FOMM weights ship with the repo"
    out = tmp_path / "run"
    assert re_bench.main(["--data", str(clips), "--out", str(out), "--size", str(SIZE), "--frames", "5",
                          "--stride", "2"]) == 0
    reconstruction = read_csv(out / "reconstruction.csv")
    assert len(reconstruction) == 6 and all(float(r["face_found"]) == 1 for r in reconstruction)
    assert all(0 <= float(r["akd"]) < 10 and math.isfinite(float(r["akd_lips"])) for r in reconstruction)
    cross = read_csv(out / "cross_identity.csv")
    assert len(cross) == 6
    for row in cross:
        assert float(row["face_found"]) == 1
        assert all(0 <= float(row[c]) < 30 for c in ("expression_akd", *re_bench.POSE_COLUMNS))
    free = read_csv(out / "free_view.csv")
    assert {(r["source"], r["method"], r["view"]) for r in free} == {
        (c, "fv2v", v) for c in "ab" for v in re_bench.VIEWS}
    for row in free:
        assert float(row["face_found"]) > 0 and 0 < float(row["background_lpips"]) < 1
        assert all(math.isfinite(float(row[c])) for c in re_bench.POSE_COLUMNS)
    assert json.loads((out / "run.json").read_text())["akd"].startswith("mediapipe ")
    assert "## free_view" in (out / "summary.md").read_text()
    assert all((out / f"{task}.png").stat().st_size > 0 for task in re_bench.TASKS)


def test_turn_error_is_zero_for_a_rigid_turn_and_sees_a_shift_that_does_not_turn():
    import torch

    from codec.models.keypoint_transform import rotation_matrix

    rng = np.random.default_rng(1)
    points = 32 + 8 * rng.standard_normal((MESH_POINTS, 2))
    depth = 6 * rng.standard_normal(MESH_POINTS)  # a nose in front, cheeks behind
    base_pose, asked = np.array([5.0, -4.0, 2.0]), np.array([20.0, -4.0, 2.0])
    turn = (lambda r: r[0] @ r[1].T)(rotation_matrix(torch.tensor(np.stack([asked, base_pose]))).numpy())
    mesh = np.concatenate([points, depth[:, None]], 1)
    turned = ((mesh - mesh.mean(0)) @ turn.T)[:, :2] + (7.0, -3.0)  # wherever the renderer put the head
    assert re_bench.turn_error(points, depth, base_pose, asked, turned) == pytest.approx(0, abs=1e-9)
    shifted = points + (-2.0, 0.0)  # the whole face shifted the way a turn goes, as a flat warp does
    assert re_bench.turn_error(points, depth, base_pose, asked, shifted) > 1.0
    assert re_bench.turn_error(points, depth, base_pose, base_pose, shifted) == pytest.approx(0, abs=1e-9)
