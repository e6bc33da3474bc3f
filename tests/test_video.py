"""Video I/O on tiny clips the tests write themselves: probe, crop/resize, resampling, safe writing."""
import errno
import io
import os
import stat
import sys
import types
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from codec.video import VideoError, VideoInfo, VideoWriter, probe, read_frames, video_format

LEVEL_STEP = 12  # frame i is mostly grey level 20 + 12 i, so a decoded frame tells its index


def clip(count, height=32, width=48):
    """`count` frames whose mean encodes their index, with a gradient so they are not flat."""
    ramp = np.linspace(0, 16, width)[None, :, None]
    return [np.clip(20 + LEVEL_STEP * i + ramp + np.zeros((height, width, 3)), 0, 255).astype(np.uint8)
            for i in range(count)]


def index_of(frame):
    return int(round((frame.mean() - 28) / LEVEL_STEP))


def write_clip(path, frames, fps, **kwargs):
    with VideoWriter(path, fps, **kwargs) as writer:
        for frame in frames:
            writer.write(frame)
    return path


def test_mp4_round_trip_probe_and_centre_crop(tmp_path):
    frames = clip(12)
    path = write_clip(tmp_path / "a.mp4", frames, Fraction(30000, 1001))
    assert probe(path) == VideoInfo(width=48, height=32, fps=Fraction(30000, 1001), frames=12,
                                    has_audio=False, codec="h264")
    decoded = list(read_frames(path, size=32))
    assert len(decoded) == 12 and decoded[0].shape == (32, 32, 3) and decoded[0].dtype == np.uint8
    for source, frame in zip(frames, decoded):
        assert np.abs(source[:, 8:40].astype(int) - frame).mean() < 2.5


def test_crf_controls_mp4_size(tmp_path):
    rng = np.random.default_rng(0)
    frames = [np.clip(f + rng.normal(0, 20, f.shape), 0, 255).astype(np.uint8) for f in clip(4)]
    fine = write_clip(tmp_path / "fine.mp4", frames, 25, crf=10)
    coarse = write_clip(tmp_path / "coarse.mp4", frames, 25, crf=40)
    assert fine.stat().st_size > 2 * coarse.stat().st_size


def test_fifty_to_twenty_five_takes_every_other_frame(tmp_path):
    path = write_clip(tmp_path / "fifty.mp4", clip(16), 50)
    assert [index_of(f) for f in read_frames(path, size=16, fps=25)] == list(range(0, 16, 2))


def test_ntsc_rate_resamples_to_nearest_timestamp(tmp_path):
    count, source_rate = 14, Fraction(30000, 1001)
    path = write_clip(tmp_path / "ntsc.mp4", clip(count), source_rate)
    duration = count / source_rate
    expected = []
    k = 0
    while Fraction(k, 25) < duration:
        distances = [abs(i / source_rate - Fraction(k, 25)) for i in range(count)]
        expected.append(distances.index(min(distances)))
        k += 1
    got = [index_of(f) for f in read_frames(path, size=16, fps=25)]
    assert got == expected and len(got) == 12


def test_upsampling_repeats_frames_to_cover_the_duration(tmp_path):
    path = write_clip(tmp_path / "slow.mp4", clip(5), 10)
    assert [index_of(f) for f in read_frames(path, size=16, fps=20)] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_explicit_crop_selects_the_region_and_is_validated(tmp_path):
    frame = np.zeros((32, 48, 3), np.uint8)
    frame[:16, :16] = (200, 30, 30)
    path = write_clip(tmp_path / "q.mp4", [frame] * 2, 25)
    top_left = next(read_frames(path, size=8, crop=(0, 0, 16)))
    # Lanczos reads a few source pixels beyond the box edge, so only the interior is pure red.
    assert np.abs(top_left[:6, :6].astype(int) - (200, 30, 30)).max() < 20
    for bad in [(40, 0, 16), (0, 0, 33), (-1, 0, 8), (0, 0, 0), (1.5, 0, 8), (0, 0)]:
        with pytest.raises(VideoError, match="crop"):
            read_frames(path, crop=bad)


def test_audio_is_detected_and_ignored_in_mkv(tmp_path):
    path = tmp_path / "talk.mkv"
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 48, 32, "yuv420p"
        audio = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        for i, image in enumerate(clip(4)):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
            sound = av.AudioFrame.from_ndarray(np.zeros((1, 320), np.int16), format="s16", layout="mono")
            sound.sample_rate, sound.pts = 8000, i * 320
            container.mux(audio.encode(sound))
        container.mux(video.encode(None))
        container.mux(audio.encode(None))
    assert probe(path).has_audio
    assert [index_of(f) for f in read_frames(path, size=16)] == [0, 1, 2, 3]


def test_display_rotation_is_applied(tmp_path):
    path = tmp_path / "phone.mp4"
    image = np.full((32, 48, 3), 30, np.uint8)
    image[:8, :8] = 230  # bright top-left corner
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        stream.set_display_rotation(90)  # counter-clockwise: top-left ends up bottom-left
        container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    info = probe(path)
    assert (info.width, info.height) == (32, 48)
    upright = next(read_frames(path, size=32, crop=(0, 16, 32)))  # the lower square of the 32x48 upright frame
    assert upright[-8:, :8].mean() > 180 and upright[:8, :8].mean() < 80


def test_unreadable_inputs_raise_one_line_errors(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a video at all\n")
    with pytest.raises(VideoError, match="^not a video file: .*notes.txt$"):
        probe(text)
    with pytest.raises(VideoError, match="^no such file: .*missing.mp4$"):
        read_frames(tmp_path / "missing.mp4")
    with pytest.raises(VideoError, match="not a video file"):
        probe(tmp_path)
    path = write_clip(tmp_path / "ok.mp4", clip(2), 25)
    for kwargs in ({"size": 0}, {"fps": -1}, {"fps": "25"}):
        with pytest.raises(VideoError):
            read_frames(path, **kwargs)


def test_existing_output_is_kept_without_force(tmp_path):
    path = tmp_path / "out.mp4"
    path.write_bytes(b"precious")
    with pytest.raises(VideoError, match="exists"):
        VideoWriter(path, 25)
    assert path.read_bytes() == b"precious"
    write_clip(path, clip(3), 25, force=True)
    assert probe(path).frames == 3


@pytest.mark.parametrize("format", ["mp4", "png", "raw"])
def test_failure_leaves_no_output_and_no_temp_files(tmp_path, format):
    path = tmp_path / "out"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(path, 25, format=format) as writer:
            writer.write(clip(1)[0])
            raise RuntimeError("boom")
    with pytest.raises(VideoError, match="frame of shape"):
        with VideoWriter(path, 25, format=format) as writer:
            writer.write(clip(1)[0])
            writer.write(clip(1, height=16)[0])
    with pytest.raises(VideoError, match="no frames"):
        VideoWriter(path, 25, format=format).close()
    assert list(tmp_path.iterdir()) == []


def test_png_folder_and_raw_file_are_lossless(tmp_path):
    frames = clip(3, height=10, width=14)
    folder = write_clip(tmp_path / "frames", frames, 25, format="png")
    assert sorted(p.name for p in folder.iterdir()) == ["frame_000000.png", "frame_000001.png", "frame_000002.png"]
    assert np.array_equal(np.asarray(Image.open(folder / "frame_000002.png")), frames[2])
    raw = write_clip(tmp_path / "frames.rgb", frames, 25, format="raw")
    assert raw.read_bytes() == b"".join(f.tobytes() for f in frames)


def test_raw_goes_to_stdout_and_other_formats_do_not(capsysbinary):
    frames = clip(2, height=4, width=6)
    write_clip("-", frames, 25, format="raw")
    assert capsysbinary.readouterr().out == b"".join(f.tobytes() for f in frames)
    with pytest.raises(VideoError, match="stdout"):
        VideoWriter("-", 25, format="mp4")


@pytest.mark.parametrize("kwargs, message", [({"crf": 52}, "crf"), ({"format": "gif"}, "unknown format"),
                                              ({"fps": 0}, "fps")])
def test_writer_arguments_are_validated(tmp_path, kwargs, message):
    arguments = {"fps": 25, **kwargs}
    with pytest.raises(VideoError, match=message):
        VideoWriter(tmp_path / "x.mp4", **arguments)


@pytest.mark.parametrize("format, name, umask, mode", [("mp4", "a.mp4", 0o022, 0o644), ("png", "frames", 0o022, 0o755),
                                                       ("raw", "a.rgb", 0o027, 0o640)])
def test_outputs_get_the_permissions_of_a_plain_write(tmp_path, format, name, umask, mode):
    before = os.umask(umask)
    try:
        path = write_clip(tmp_path / name, clip(2), 25, format=format)
    finally:
        os.umask(before)
    assert stat.S_IMODE(path.stat().st_mode) == mode


# ---------------------------------------------------------------- issue 16: containers by name, closed pipes

@pytest.mark.parametrize("format", ["mkv", "mov", "avi"])
def test_h264_in_other_containers_round_trips(tmp_path, format):
    path = write_clip(tmp_path / f"a.{format.upper()}", clip(6), 25, format=format)
    assert video_format(path) == format
    assert [index_of(f) for f in read_frames(path, size=16)] == list(range(6))
    with av.open(str(path)) as container:
        assert {"mkv": "matroska", "mov": "mov", "avi": "avi"}[format] in container.format.name


@pytest.mark.parametrize("name", ["frames", "a.webm", "a.png", "a.mp4.partial"])
def test_names_of_no_h264_container_have_no_video_format(name):
    assert video_format(name) is None


def test_a_closed_stdout_pipe_raises_broken_pipe_for_the_caller(monkeypatch):
    class ClosedPipe(io.RawIOBase):
        def writable(self):
            return True

        def write(self, data):
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", types.SimpleNamespace(buffer=ClosedPipe()))
    writer = VideoWriter("-", 25, format="raw")
    with pytest.raises(BrokenPipeError):
        writer.write(clip(1)[0])
