"""`fvc` end to end (in-process, tiny untrained model, 64² frames) and its one-line errors."""
import argparse
import json
import shlex
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
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
    assert exit_info.value.code == 0 and out.startswith("fvc ") and "writes bitstream 3.0" in out
    assert "reads 1.x, 2.x, 3.x, 4.x and 5.x" in out and "4.0 with --resync-period > 0" in out
    assert "5.0 with --keyframe-codec hevc" in out
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


def test_encode_summary_says_how_the_input_was_cropped_and_scaled(clip, tmp_path, capsys):
    wide = tmp_path / "wide.mp4"
    with VideoWriter(wide, fps=25, crf=10) as writer:
        for frame in astronaut_frames(DemoClipConfig(seconds=2 / 25, size=96)):
            writer.write(np.pad(frame, ((0, 0), (16, 16), (0, 0))))  # 128x96
    expected = {(wide, ()): "input: 128x96, centre-cropped to 96x96 at (16,0), downscaled to 64x64",
                (clip, ("--size", "96")): "input: 96x96, used as it is",
                (clip, ("--size", "128", "--crop", "8,8,80")): "input: 96x96, cropped to 80x80 at (8,8), upscaled"}
    for n, ((source, extra), line) in enumerate(expected.items()):
        code, out, _ = run(["encode", source, tmp_path / f"{n}.fvc", *FAST[:-1], "--frames", "2", *extra], capsys)
        assert code == 0 and line in out, out


@pytest.mark.parametrize("preset, refresh, rendered", [("fast", None, False), ("medium", None, True),
                                                       ("slow", "0", True)])
def test_preset_is_named_in_the_summary_and_by_info(clip, tmp_path, capsys, monkeypatch, preset, refresh, rendered):
    import codec.decoder

    renders = []
    real = codec.decoder.Decoder.render
    monkeypatch.setattr(codec.decoder.Decoder, "render", lambda self, ints: renders.append(1) or real(self, ints))
    out = tmp_path / "p.fvc"
    argv = ["encode", clip, out, "--size", str(SIZE), *MODEL, "--preset", preset, "--frames", "3"]
    code, text, _ = run(argv + (["--refresh-threshold", refresh] if refresh else []), capsys)
    assert code == 0 and f"preset: {preset} (" in text
    assert bool(renders) == rendered  # fast runs open loop; slow searches even with refresh off
    assert ("the search changed" in text) == (preset == "slow")
    info = json.loads(run(["info", out, "--json"], capsys)[1])
    assert info["notes"]["preset"] == preset


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


def test_unreachable_kbps_writes_the_nearest_rate_with_a_warning(clip, tmp_path, capsys):
    out = tmp_path / "k.fvc"
    code, _, err = run(["encode", clip, out, *FAST, "--kbps", "0.5"], capsys)
    assert code == 0 and out.exists()
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "out of reach" in warning[0] and "--max-gop" in warning[0]
    assert "keyframe QP 51" in warning[0]  # the coarsest QP is the nearest to a rate below the floor


def test_unreachable_kbps_with_strict_rate_fails_without_output(clip, tmp_path, capsys):
    out = tmp_path / "k.fvc"
    assert_one_line_error(*run(["encode", clip, out, *FAST, "--kbps", "0.5", "--strict-rate"], capsys)[::2],
                          "out of reach", "--max-gop")
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
    assert_one_line_error(code, err, "cut.fvc: decoding stopped at packet", "wrote the")
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


# Every coding option at a value other than its default (and the margins' words for None).
ALL_CODING = ["--preset", "slow", "--qp", "36", "--refresh-threshold", "0", "--refresh-landmarks", "2.5",
              "--max-gop", "9", "--kp-threshold", "2",
              "--refs", "3", "--reuse-margin", "any", "--switch-margin", "off", "--no-predict-keyframes",
              "--idr-period", "40", "--resync-period", "12", "--keyframe-codec", "hevc", "--motion-step", "0.75",
              "--kbps", "25.5", "--strict-rate", "--quality", "41.5"]


@pytest.mark.parametrize("options", [[], ALL_CODING, ["--reuse-margin", "1.5", "--switch-margin", "2.5",
                                                     "--refs", "2"]])
def test_the_demo_hands_every_coding_option_to_encode(options):
    """demo and encode share the coding options; coding_argv rebuilds them from the parser, none listed by hand."""
    import argparse

    from codec.cli import _add_coding_args, build_parser, coding_argv

    dests = {action.dest for action in _add_coding_args(argparse.ArgumentParser())}
    parser = build_parser()
    demo = parser.parse_args(["demo", *options])
    encode = parser.parse_args(["encode", "in.mp4", "out.fvc", *coding_argv(demo)])
    assert {d: getattr(encode, d) for d in dests} == {d: getattr(demo, d) for d in dests}
    if options == ALL_CODING:  # the list above moves every option off its default
        defaults = parser.parse_args(["demo"])
        assert all(getattr(demo, d) != getattr(defaults, d) for d in dests), "ALL_CODING misses a new option"


def test_demo_runs_encode_decode_and_scores_against_x264(tmp_path, capsys):
    code, out, err = run(["demo", "--out-dir", tmp_path, "--seconds", "0.2", "--size", SIZE, *MODEL,
                          "--max-gop", "2", "--refresh-threshold", "0", "--quiet"], capsys)
    assert code == 0
    encode = next(line for line in out.splitlines() if line.startswith("$ fvc encode "))
    assert " --max-gop 2 " in encode and " --refresh-threshold 0.0 " in encode  # the demo's options reach encode
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


# ---------------------------------------------------------------- issue 16: output names, refused inputs, pipes,
# ---------------------------------------------------------------- --start/--frames, progress and help texts

@pytest.mark.parametrize("name, offset, magic", [("dec.mkv", 0, b"\x1a\x45\xdf\xa3"), ("dec.mov", 4, b"ftypqt  "),
                                                 ("dec.avi", 8, b"AVI "), ("dec.MP4", 4, b"ftypisom")])
def test_decode_writes_the_container_its_output_name_says(stream, tmp_path, capsys, name, offset, magic):
    out = tmp_path / name
    code, _, err = run(["decode", stream, out, *MODEL, "--quiet"], capsys)
    assert code == 0, err
    assert out.read_bytes()[offset:offset + len(magic)] == magic
    assert len(list(read_frames(out, size=SIZE))) == FRAMES


@pytest.mark.parametrize("name", ["dec.png", "dec.webm", "dec"])
def test_decode_refuses_an_output_name_of_no_video_container(stream, tmp_path, capsys, name):
    from codec.cli import VIDEO_NAMES
    from codec.video import VIDEO_CONTAINERS

    assert all(f".{extension}" in VIDEO_NAMES for extension in VIDEO_CONTAINERS)
    code, _, err = run(["decode", stream, tmp_path / name, *MODEL], capsys)
    assert_one_line_error(code, err, name, VIDEO_NAMES, "--format png")
    assert list(tmp_path.iterdir()) == []
    assert run(["decode", stream, tmp_path / name, *MODEL, "--format", "png", "--quiet"], capsys)[0] == 0
    assert len(list((tmp_path / name).glob("frame_*.png"))) == FRAMES


@pytest.mark.parametrize("name", ["x.mp4", "x.MKV", "x.png", "x.jpg"])
def test_encode_refuses_a_video_or_image_name_for_the_stream(clip, tmp_path, capsys, name):
    code, _, err = run(["encode", clip, tmp_path / name, *FAST], capsys)
    assert_one_line_error(code, err, name, "fvc streams are written as .fvc", "x.fvc")
    assert list(tmp_path.iterdir()) == []


def test_encode_accepts_a_name_without_a_media_extension(clip, tmp_path, capsys):
    out = tmp_path / "talk"
    assert run(["encode", clip, out, *FAST, "--frames", "1"], capsys)[0] == 0
    assert out.read_bytes()[:4] == b"\x89FVC"


def test_an_fvc_stream_is_refused_as_video_input_whatever_its_name(stream, clip, tmp_path, capsys):
    disguised = tmp_path / "talk.mp4"
    disguised.write_bytes(stream.read_bytes())
    for source in (stream, disguised):
        code, _, err = run(["encode", source, tmp_path / "again.fvc", *FAST], capsys)
        assert_one_line_error(code, err, f"{source} is an fvc stream; did you mean fvc decode?")
    for inputs in ((disguised, clip), (clip, stream)):
        code, _, err = run(["animate", *inputs, tmp_path / "anim.mp4", "--size", SIZE, *MODEL], capsys)
        assert_one_line_error(code, err, "is an fvc stream; did you mean fvc decode?")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["talk.mp4"]


def test_decode_into_a_pipe_closed_early_ends_quietly(stream):
    # 6 frames of 64² rgb24 are 72 KiB, more than a pipe holds: writing must hit the closed pipe.
    fvc = Path(sys.executable).with_name("fvc")
    pipeline = (f"set -o pipefail; {shlex.quote(str(fvc))} decode {shlex.quote(str(stream))} - "
                f"--model untrained-test | head -c 100 | wc -c")
    result = subprocess.run(["bash", "-c", pipeline], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "100"
    assert [line for line in result.stderr.splitlines() if not line.startswith("WARNING")] == []


def test_stream_damaged_before_its_first_frame_names_the_file(stream, tmp_path, capsys):
    from bitstream import StreamReader

    with StreamReader(stream) as reader:
        first = next(reader.records())
    cut = tmp_path / "early.fvc"
    cut.write_bytes(stream.read_bytes()[:first.offset + first.size - 1])
    code, _, err = run(["decode", cut, tmp_path / "o.mp4", *MODEL, "--quiet"], capsys)
    assert_one_line_error(code, err, f"{cut}: ", f"byte {first.offset}")
    assert not (tmp_path / "o.mp4").exists()


def test_progress_bar_says_frames_and_fps_with_or_without_a_total(capsys):
    from codec.commands.common import progress

    bar = progress(None, "decode", quiet=False)
    bar.n = 1
    assert str(bar).startswith("decode: 1 frame [")
    bar.n, bar.start_t = 5, bar.start_t - 10  # slower than a frame a second: tqdm would say "2.00s/frame"
    assert str(bar).startswith("decode: 5 frames [") and "0.50 fps" in str(bar)
    bar.close()
    bar = progress(6, "decode", quiet=False)
    bar.update(3)
    assert "| 3/6 frames [" in str(bar) and " fps]" in str(bar)
    bar.close()


def test_decode_start_and_frames_write_that_span_of_the_stream(stream, tmp_path, capsysbinary):
    frame_bytes = SIZE * SIZE * 3
    assert main(["decode", str(stream), "-", *MODEL, "--quiet"]) == 0
    everything = capsysbinary.readouterr().out
    # Frame 2 is a motion frame of the keyframe at 0 (--max-gop 3): it needs frames before --start decoded.
    assert main(["decode", str(stream), "-", *MODEL, "--quiet", "--start", "2", "--frames", "3"]) == 0
    assert capsysbinary.readouterr().out == everything[2 * frame_bytes:5 * frame_bytes]
    code, out, err = run(["decode", stream, tmp_path / "tail.mp4", *MODEL, "--start", "4", "--frames", "9"],
                         capsysbinary)
    assert code == 0 and b"wrote 2 frames" in out and b"| 2/2 frames [" in err
    assert len(list(read_frames(tmp_path / "tail.mp4", size=SIZE))) == 2


def test_decode_start_past_the_end_is_refused_with_or_without_a_frame_count(stream, tmp_path, capsys):
    from dataclasses import replace

    from bitstream import parse_header

    data = stream.read_bytes()
    header, used, _ = parse_header(data)
    live = tmp_path / "live.fvc"  # a frame count of 0 means live: the end is found by decoding
    live.write_bytes(replace(header, frame_count=0).pack() + data[used:])
    # Only the live stream shows a progress bar before the end is found.
    for source, quiet in ((stream, []), (live, ["--quiet"])):
        code, _, err = run(["decode", source, tmp_path / "o.mp4", *MODEL, "--start", FRAMES, *quiet], capsys)
        assert_one_line_error(code, err, f"{source}: --start {FRAMES} is past the end", f"{FRAMES} frames")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["live.fvc"]


def test_animate_reports_its_speed_like_decode(clip, tmp_path, capsys):
    from PIL import Image

    source = tmp_path / "face.png"
    Image.fromarray(next(astronaut_frames(DemoClipConfig(size=80)))).save(source)
    out = tmp_path / "anim.mkv"
    code, text, _ = run(["animate", source, clip, out, "--size", SIZE, *MODEL], capsys)
    assert code == 0
    assert f"wrote {FRAMES} frames {SIZE}x{SIZE} at 25/1 fps to {out} in " in text
    assert "fps; per-frame animation latency mean " in text and " ms, p95 " in text
    assert out.read_bytes()[:4] == b"\x1a\x45\xdf\xa3"


def test_x264_style_aliases_and_metavars(capsys):
    from codec.cli import build_parser

    args = build_parser().parse_args(["encode", "a.mp4", "a.fvc", "--keyint", "12", "--qp", "26"])
    assert (args.max_gop, args.keyframe_qp) == (12, 26)
    with pytest.raises(SystemExit):
        main(["encode", "--help"])
    text = capsys.readouterr().out
    assert "--keyframe-qp QP, --qp QP" in text and "--max-gop N, --keyint N" in text


def _expanded_help(parser, action) -> str:
    return " ".join((action.help % {**vars(action), "prog": parser.prog}).split())


def test_every_train_option_has_help_that_shows_its_default():
    from codec.train.trainer import build_parser

    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, action.option_strings
        if action.default is not None and action.nargs != 0:  # flags are off unless given
            assert f"default {action.default}" in _expanded_help(parser, action), action.option_strings


def test_prepare_help_names_no_machine_specific_path():
    from codec.data.prepare import DEFAULT_LANDMARKER, LANDMARKER_ENV, build_parser

    parser = build_parser()
    landmarker = next(a for a in parser._actions if "--landmarker" in a.option_strings)
    text = _expanded_help(parser, landmarker)
    assert f"${LANDMARKER_ENV}" in text and "shared folder" in text
    assert str(DEFAULT_LANDMARKER.parents[1]) not in text


# ---------------------------------------------------------------- fvc info: damage, keyframes, packets, weights
# (issue 16; the stream fixture has keyframes at frames 0 and 3)

def info_json(path, capsys, *flags) -> tuple[int, dict]:
    code, out, _ = run(["info", path, "--json", *flags], capsys)
    return code, json.loads(out)


def test_info_lists_packets_keyframes_with_qp_and_reason_and_the_writer(stream, capsys):
    import codec

    code, summary = info_json(stream, capsys, "--packets")
    # Predicted keyframes are the default: 3.0, and the max_gop keyframe at frame 3 is a P picture.
    assert code == 0 and summary["version"] == "3.0" and summary["error"] is None
    packets = summary["packets"]
    assert [p["index"] for p in packets] == list(range(len(packets)))
    assert packets[0]["offset"] == summary["bytes_by_type"]["header"]
    assert all(a["offset"] + a["bytes"] == b["offset"] for a, b in zip(packets, packets[1:]))
    assert packets[-1]["offset"] + packets[-1]["bytes"] == stream.stat().st_size
    keyframes = [p for p in packets if p["type"] == "keyframe"]
    listed = summary["keyframe_list"]
    assert [(k["frame"], k["offset"], k["bytes"]) for k in listed] == [(p["frame"], p["offset"], p["bytes"])
                                                                      for p in keyframes]
    assert [k["reason"] for k in listed] == ["first", "max_gop"]
    assert [k["predicted"] for k in listed] == [False, True]
    assert isinstance(listed[0]["qp"], int) and 0 <= listed[0]["qp"] <= 30  # --keyframe-qp 30
    assert listed[1]["qp"] is None  # only IDR slice headers are read
    assert summary["notes"]["writer"] == f"fvc {codec.__version__}" and summary["model_name"] is None
    code, text, _ = run(["info", stream, "--packets"], capsys)
    assert code == 0 and f"keyframes: 2 (first 1, max_gop 1), 1 predicted, QP {listed[0]['qp']}," in text
    assert "(unknown weights)" in text and f"writer fvc {codec.__version__}" in text
    assert f"packet {keyframes[1]['index']} at byte {keyframes[1]['offset']}: keyframe frame 3" in text


def test_info_on_a_damaged_stream_describes_the_part_before_the_damage_and_exits_1(stream, tmp_path, capsys):
    packets = info_json(stream, capsys, "--packets")[1]["packets"]
    target = next(p for p in packets if p["type"] == "motion" and p["frame"] == 4)
    bad = bytearray(stream.read_bytes())
    bad[target["offset"] + target["bytes"] - 5] ^= 0x10  # its last body byte; the CRC check fires 4 bytes on
    damaged = tmp_path / "damaged.fvc"
    damaged.write_bytes(bad)
    code, out, err = run(["info", damaged], capsys)
    assert_one_line_error(code, err, f"damaged.fvc: packet {target['index']} at byte {target['offset']}: "
                                     "CRC mismatch")
    assert f"{SIZE}x{SIZE} at 25/1 fps, 4 frames" in out and "keyframes: 2 (first 1, max_gop 1)" in out
    assert f"damaged at byte {target['offset']}" in out
    code, summary = info_json(damaged, capsys)
    assert code == EXIT_ERROR and summary["frames"] == 4 and summary["bytes"] == target["offset"]
    assert (summary["error"]["offset"], summary["error"]["packet"]) == (target["offset"], target["index"])
    assert "CRC mismatch" in summary["error"]["message"]


def test_info_names_the_shipped_weights_a_stream_was_coded_with(tmp_path, capsys):
    from bitstream import FileStreamWriter, KeyframePacket, MotionKind, default_header
    from bitstream.header import weights_model_id
    from codec.motion_model import WEIGHTS_DIR, model_id, shipped_weights

    shipped = shipped_weights("fv2v")
    assert shipped, "the fv2v weights ship with the repo"
    weights = shipped[-1]
    assert weights_model_id(weights) == model_id(weights)  # the torch-free hash is the model id
    for kind, ident, name in ((MotionKind.FV2V, model_id(weights), weights.stem),
                              (MotionKind.FOMM, model_id(weights), None),  # an id of the other kind's file
                              (MotionKind.FV2V, bytes(16), None)):
        path = tmp_path / f"{kind.name}-{ident.hex()}.fvc"
        with FileStreamWriter(path, default_header(kind, 64, 64, 25, ident)) as writer:
            writer.write(KeyframePacket(0, b"\0\0\0\1\x65\x88"))
        code, summary = info_json(path, capsys)
        assert code == 0 and summary["model_name"] == name
        text = run(["info", path], capsys)[1]
        assert (f"model {name} ({ident.hex()[:8]}…)" if name else f"model {ident.hex()} (unknown weights)") in text
    assert REPO / "codec" / "weights" == WEIGHTS_DIR  # where `fvc info` looks, without importing motion_model


def test_info_stays_torch_free(stream):
    script = (f"import sys; from codec.cli import main; assert main(['info', {str(stream)!r}, '--packets']) == 0; "
              "assert 'torch' not in sys.modules, 'fvc info imported torch'")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
