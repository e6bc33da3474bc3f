"""`fvc` end to end (in-process, tiny untrained model, 64² frames) and its one-line errors."""
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from codec.cli import EXIT_ERROR, main
from codec.demo import DemoClipConfig, astronaut_frames
from codec.video import VideoWriter, probe, read_frames

REPO = Path(__file__).resolve().parents[1]
SIZE = 64
FRAMES = 6
MODEL = ["--model", "untrained-test"]
FAST = ["--size", str(SIZE), *MODEL, "--refresh-threshold", "0", "--max-gop", "3", "--quiet"]


def run(argv, capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("clip") / "in.mp4"
    with VideoWriter(path, fps=25, crf=10) as writer:
        for frame in astronaut_frames(DemoClipConfig(seconds=FRAMES / 25, size=96)):
            writer.write(frame)
    return path


@pytest.fixture(scope="module")
def stream(clip, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("stream") / "out.fvc"
    assert main(["encode", str(clip), str(out), *FAST]) == 0
    return out


def assert_one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == EXIT_ERROR
    lines = [line for line in err.splitlines() if not line.startswith("WARNING")]
    assert len(lines) == 1 and lines[0].startswith("fvc: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("encode", "decode", "info", "animate", "demo", "prepare", "train"):
        assert f"    {command} " in out


def test_version_names_package_bitstream_and_every_shipped_weights_file(capsys):
    from codec.motion_model import WEIGHTS_DIR, model_id

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and out.startswith("fvc ") and "bitstream 1.0" in out
    for path in WEIGHTS_DIR.glob("*.pt"):
        assert f"{path.stem} ({model_id(path).hex()[:8]}…)" in out


def test_round_trip_keeps_frame_count_fps_and_size(stream, tmp_path, capsys):
    decoded = tmp_path / "dec.mp4"
    code, out, _ = run(["decode", stream, decoded, *MODEL], capsys)
    assert code == 0 and f"wrote {FRAMES} frames" in out
    info = probe(decoded)
    assert (info.width, info.height, info.fps) == (SIZE, SIZE, 25)
    assert len(list(read_frames(decoded, size=SIZE))) == FRAMES


def test_a_one_frame_clip_is_one_frame_not_one_frames(clip, tmp_path, capsys):
    code, out, err = run(["encode", clip, tmp_path / "one.fvc", *FAST[:-1], "--frames", "1"], capsys)
    assert code == 0 and ": 1 frame " in out + err
    code, out, err = run(["decode", tmp_path / "one.fvc", tmp_path / "one.mp4", *MODEL], capsys)
    assert code == 0 and "wrote 1 frame " in out + err


def test_encode_summary_reports_keyframe_reasons_rate_and_speed(clip, tmp_path, capsys):
    code, out, err = run(["encode", clip, tmp_path / "s.fvc", *FAST[:-1], "--kp-threshold", "3"], capsys)
    assert code == 0
    assert "keyframes: 2 (first 1, max_gop 1) at QP 30" in out
    assert "adaptive keypoints saved" in out and "bpp" in out and "kbps" in out and "fps" in out
    assert "UNTRAINED" in err and "NOT meaningful" in err


def test_info_bpp_is_file_bits_over_pixels(stream, capsys):
    code, out, _ = run(["info", stream, "--json"], capsys)
    summary = json.loads(out)
    assert code == 0 and summary["bytes"] == stream.stat().st_size
    assert summary["frames"] == FRAMES and summary["keyframes"] == 2
    assert summary["bits_per_pixel"] == pytest.approx(stream.stat().st_size * 8 / (SIZE * SIZE * FRAMES))
    code, text, _ = run(["info", stream], capsys)
    assert code == 0 and f"{SIZE}x{SIZE} at 25/1 fps, {FRAMES} frames" in text


def test_a_high_refresh_threshold_turns_frames_into_keyframes(clip, tmp_path, capsys):
    out = tmp_path / "r.fvc"
    args = [a for a in FAST if a not in ("--refresh-threshold", "0")]
    assert main(["encode", str(clip), str(out), *args, "--refresh-threshold", "60"]) == 0
    summary = json.loads(run(["info", out, "--json"], capsys)[1])
    assert summary["keyframes"] == FRAMES and summary["motion_packets"] == 0


def test_free_view_flags_change_the_decoded_frames(stream, capsysbinary):
    outputs = []
    for flags in ([], ["--yaw", "30"], ["--frontalize"]):
        assert main(["decode", str(stream), "-", *MODEL, "--quiet", *flags]) == 0
        outputs.append(capsysbinary.readouterr().out)
    assert all(len(o) == FRAMES * SIZE * SIZE * 3 for o in outputs)
    assert outputs[0] != outputs[1] and outputs[0] != outputs[2]


def test_kbps_rate_control_lands_near_the_target(clip, tmp_path, capsys):
    out = tmp_path / "k.fvc"
    code, text, _ = run(["encode", clip, out, *FAST[:-1], "--kbps", "150"], capsys)
    assert code == 0 and "rate control: target 150 kbps -> keyframe QP" in text
    assert json.loads(run(["info", out, "--json"], capsys)[1])["kbps"] == pytest.approx(150, rel=0.15)


def test_unreachable_kbps_fails_without_output(clip, tmp_path, capsys):
    out = tmp_path / "k.fvc"
    assert_one_line_error(*run(["encode", clip, out, *FAST, "--kbps", "0.5"], capsys)[::2], "out of reach")
    assert list(tmp_path.iterdir()) == []


def test_missing_input(tmp_path, capsys):
    assert_one_line_error(*run(["encode", tmp_path / "nope.mp4", tmp_path / "o.fvc", *FAST], capsys)[::2],
                          "nope.mp4: no such file")
    assert_one_line_error(*run(["decode", tmp_path / "nope.fvc", tmp_path / "o.mp4"], capsys)[::2],
                          "no such file")


def test_non_video_input(tmp_path, capsys):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    assert_one_line_error(*run(["encode", text, tmp_path / "o.fvc", *FAST], capsys)[::2], "not a video file")
    assert_one_line_error(*run(["decode", text, tmp_path / "o.mp4"], capsys)[::2], "not an .fvc stream", "byte 0")
    assert not (tmp_path / "o.fvc").exists() and not (tmp_path / "o.mp4").exists()


def test_unwritable_output(clip, stream, tmp_path, capsys):
    missing = tmp_path / "no" / "such" / "dir"
    assert_one_line_error(*run(["encode", clip, missing / "o.fvc", *FAST], capsys)[::2], "does not exist")
    assert_one_line_error(*run(["decode", stream, missing / "o.mp4", *MODEL], capsys)[::2], "does not exist")


def test_existing_output_needs_force(clip, tmp_path, capsys):
    out = tmp_path / "o.fvc"
    out.write_bytes(b"keep me")
    assert_one_line_error(*run(["encode", clip, out, *FAST], capsys)[::2], "exists", "--force")
    assert out.read_bytes() == b"keep me"
    assert run(["encode", clip, out, *FAST, "--force"], capsys)[0] == 0
    assert out.read_bytes()[:4] == b"\x89FVC"


def test_failed_encode_leaves_no_partial_output(clip, tmp_path, capsys):
    # An odd model size cannot be coded as yuv420p H.264: the first keyframe fails.
    code, _, err = run(["encode", clip, tmp_path / "o.fvc", *FAST, "--size", "63"], capsys)
    assert_one_line_error(code, err, "even")
    assert list(tmp_path.iterdir()) == []


def test_mismatched_model_id_names_both_ids(stream, tmp_path, capsys):
    from codec.motion_model import untrained_model_id

    code, _, err = run(["decode", stream, tmp_path / "o.mp4", "--model", "untrained-small"], capsys)
    assert_one_line_error(code, err, untrained_model_id("fv2v", "test").hex(),
                          untrained_model_id("fv2v", "small").hex())
    assert not (tmp_path / "o.mp4").exists()


@pytest.fixture
def weights_dir(tmp_path, monkeypatch) -> Path:
    """An empty codec/weights stand-in: tests choose what ships."""
    from codec import motion_model

    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setattr(motion_model, "WEIGHTS_DIR", folder)
    return folder


def ship(weights_dir: Path, name: str, seed: int) -> bytes:
    """Save a test-config fv2v model as if it shipped as `name`; returns its model id."""
    from codec.motion_model import build_untrained, save_weights

    return save_weights(build_untrained("fv2v", "test", seed), weights_dir / name, {"test": True})


def test_unknown_stream_model_without_weights_is_refused(stream, tmp_path, capsys, weights_dir):
    code, _, err = run(["decode", stream, tmp_path / "o.mp4"], capsys)
    assert_one_line_error(code, err, "no trained fv2v weights", "--model")


def test_decode_picks_the_shipped_weights_that_coded_the_stream(clip, tmp_path, capsys, weights_dir):
    best = ship(weights_dir, "fv2v-small.pt", seed=1)
    stopgap = ship(weights_dir, "fv2v-cpu128.pt", seed=2)
    assert best != stopgap
    coded = tmp_path / "s.fvc"
    fast = [a for a in FAST if a not in MODEL]
    assert run(["encode", clip, coded, *fast, "--model", weights_dir / "fv2v-cpu128.pt"], capsys)[0] == 0
    code, out, _ = run(["decode", coded, tmp_path / "o.mp4"], capsys)
    assert code == 0 and f"wrote {FRAMES} frames" in out
    code, out, _ = run(["info", coded, "--json"], capsys)
    assert json.loads(out)["model_id"] == stopgap.hex()
    default = tmp_path / "d.fvc"
    assert run(["encode", clip, default, *fast], capsys)[0] == 0
    assert json.loads(run(["info", default, "--json"], capsys)[1])["model_id"] == best.hex()


def test_stream_of_unshipped_weights_names_both_ids(stream, tmp_path, capsys, weights_dir):
    from codec.motion_model import untrained_model_id

    shipped = ship(weights_dir, "fv2v-cpu128.pt", seed=1)
    code, _, err = run(["decode", stream, tmp_path / "o.mp4"], capsys)
    assert_one_line_error(code, err, untrained_model_id("fv2v", "test").hex(), shipped.hex())
    assert not (tmp_path / "o.mp4").exists()


def test_truncated_stream_keeps_the_frames_before_the_damage(stream, tmp_path, capsys):
    data = stream.read_bytes()
    cut = tmp_path / "cut.fvc"
    cut.write_bytes(data[: len(data) - 40])  # inside the last motion packets
    out = tmp_path / "part.mp4"
    code, _, err = run(["decode", cut, out, *MODEL, "--quiet"], capsys)
    assert_one_line_error(code, err, "cut.fvc: decoding stopped at byte", "wrote the")
    written = int(err.split("wrote the ")[1].split()[0])
    assert 1 <= written < FRAMES
    assert len(list(read_frames(out, size=SIZE))) == written


def test_stream_damaged_in_its_header_writes_nothing(stream, tmp_path, capsys):
    cut = tmp_path / "cut.fvc"
    cut.write_bytes(stream.read_bytes()[:20])
    assert_one_line_error(*run(["decode", cut, tmp_path / "o.mp4", *MODEL], capsys)[::2], "truncated header")
    assert_one_line_error(*run(["info", cut], capsys)[::2], "cut.fvc", "truncated header")
    assert not (tmp_path / "o.mp4").exists()


def test_face_crop_without_mediapipe_is_a_one_line_error(clip, tmp_path, capsys, monkeypatch):
    import codec.data.face_track as face_track

    monkeypatch.setattr(face_track, "mediapipe_available", lambda: False)
    out = tmp_path / "out.fvc"
    code, _, err = run(["encode", clip, out, *FAST, "--face-crop"], capsys)
    assert_one_line_error(code, err, "--face-crop needs mediapipe")
    assert not out.exists()


def test_face_crop_and_crop_exclude_each_other(clip, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["encode", str(clip), str(tmp_path / "o.fvc"), "--crop", "0,0,64", "--face-crop"])
    assert exit_info.value.code == 2


def test_face_crop_frames_the_face_of_a_real_clip(shared_dir, tmp_path, capsys):
    pytest.importorskip("mediapipe")  # optional: the `prepare` extra
    clip = shared_dir / "data" / "train" / "DPE__data__d.mp4"
    source = probe(clip)
    loud = [a for a in FAST if a != "--quiet"]
    code, _, err = run(["encode", clip, tmp_path / "o.fvc", *loud, "--frames", "2", "--face-crop"], capsys)
    assert code == 0, err
    x, y, side = (int(v) for v in err.split("face crop: ")[1].split()[0].split(","))
    assert 0 <= x and 0 <= y and x + side <= source.width and y + side <= source.height
    assert side >= 64


def test_animate_writes_one_frame_per_driving_frame(clip, tmp_path, capsys):
    from PIL import Image

    source = tmp_path / "face.png"
    Image.fromarray(next(astronaut_frames(DemoClipConfig(size=80)))[:, ::-1].copy()).save(source)
    out = tmp_path / "anim.mp4"
    code, text, _ = run(["animate", source, clip, out, "--size", SIZE, *MODEL, "--quiet"], capsys)
    assert code == 0
    assert len(list(read_frames(out, size=SIZE))) == FRAMES and probe(out).fps == 25


def test_demo_runs_encode_decode_and_scores_against_x264(tmp_path, capsys):
    code, out, err = run(["demo", "--out-dir", tmp_path, "--seconds", "0.2", "--size", SIZE, *MODEL,
                          "--max-gop", "2", "--refresh-threshold", "0", "--quiet"], capsys)
    assert code == 0
    assert (tmp_path / "astronaut.mp4").is_file() and (tmp_path / "astronaut.fvc").is_file()
    rows = [line for line in out.splitlines() if line.startswith(("fvc", "x264 crf"))]
    assert len(rows) == 2 and all(len(r.split()) >= 6 for r in rows)
    assert "UNTRAINED" in err


@pytest.mark.parametrize("command,target", [("prepare", "codec.data.prepare"), ("train", "codec.train.trainer")])
def test_prepare_and_train_hand_their_arguments_over(command, target, monkeypatch):
    seen = []
    fake = types.ModuleType(target)
    fake.main = lambda argv: seen.append(argv) or 0
    monkeypatch.setitem(sys.modules, target, fake)
    assert main([command, "--help", "x"]) == 0
    assert seen == [["--help", "x"]]


def test_console_script_reports_errors_in_one_line(tmp_path):
    fvc = Path(sys.executable).with_name("fvc")  # installed by scripts/setup.sh (pip install -e .)
    good = subprocess.run([fvc, "info", REPO / "spec" / "vectors" / "tiny.fvc", "--json"],
                          capture_output=True, text=True)
    assert good.returncode == 0 and json.loads(good.stdout)["frames"] >= 1
    bad = subprocess.run([fvc, "info", tmp_path / "missing.fvc"], capture_output=True, text=True)
    assert bad.returncode == EXIT_ERROR and bad.stderr.count("\n") == 1 and "no such file" in bad.stderr
