"""Video files ⇄ RGB uint8 frames: probe, read (crop, resize, resample) and write video / png / raw.

Colour: decoded YUV is converted with the matrix and range the file signals (BT.601 when it says
nothing), with full chroma interpolation; written video is H.264 yuv420p BT.601 limited range, tagged so.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, Interpolation
from PIL import Image

# Written video formats (each named as its file extension) and their PyAV muxers; all hold H.264.
# webm is absent because it only allows VP8/VP9/AV1.
VIDEO_CONTAINERS = {"mp4": "mp4", "mkv": "matroska", "mov": "mov", "avi": "avi"}
FORMATS = (*VIDEO_CONTAINERS, "png", "raw")
STDOUT = "-"
PNG_PATTERN = "frame_{:06d}.png"
MP4_PRESET = "medium"

# swscale point-samples chroma horizontally and truncates unless told otherwise, which costs
# ~5 dB PSNR on a face round trip; AREA averages each 2x2 chroma block when subsampling.
_TO_YUV = Interpolation.AREA | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INP
_TO_RGB = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT


class VideoError(Exception):
    """A video that cannot be read, or an output that cannot (or may not) be written."""


@dataclass(frozen=True)
class VideoInfo:
    """What `probe` learns; width and height are as displayed (after the file's rotation)."""

    width: int
    height: int
    fps: Fraction
    frames: int | None  # None when the container does not say
    has_audio: bool
    codec: str


def rgb_to_yuv420p(rgb: np.ndarray) -> av.VideoFrame:
    """An (H, W, 3) uint8 RGB array as a yuv420p frame, BT.601 limited range, chroma box-averaged."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return frame.reformat(format="yuv420p", dst_colorspace=Colorspace.ITU601, dst_color_range=ColorRange.MPEG,
                          interpolation=_TO_YUV)


def frame_to_rgb(frame: av.VideoFrame, colorspace: Colorspace | None = None,
                 color_range: ColorRange | None = None) -> np.ndarray:
    """A decoded frame as (H, W, 3) uint8 RGB; colorspace/range default to what the frame carries."""
    return frame.reformat(format="rgb24", src_colorspace=colorspace, src_color_range=color_range,
                          dst_color_range=ColorRange.JPEG, interpolation=_TO_RGB).to_ndarray()


def probe(path: str | os.PathLike) -> VideoInfo:
    """Size, frame rate, frame count, audio presence and codec of the first video stream of `path`."""
    with _open_input(path) as container:
        stream = container.streams.video[0]
        first = _first_frame(container, stream, path)
        width, height = (first.height, first.width) if _quarter_turns(first) % 2 else (first.width, first.height)
        return VideoInfo(width=width, height=height, fps=_stream_rate(stream), frames=stream.frames or None,
                         has_audio=bool(container.streams.audio), codec=stream.codec_context.name)


def video_format(path: str | os.PathLike) -> str | None:
    """The video format `path`'s extension names (a key of VIDEO_CONTAINERS), or None."""
    suffix = Path(path).suffix.lower().lstrip(".")
    return suffix if suffix in VIDEO_CONTAINERS else None


def read_frames(path: str | os.PathLike, size: int = 512, crop: tuple[int, int, int] | None = None,
                fps: float | Fraction | None = None) -> Iterator[np.ndarray]:
    """Frames of `path` as (size, size, 3) uint8 RGB, cropped square and Lanczos-resized.

    `crop` = (x, y, side) in displayed source pixels; default the centred largest square.
    With `fps`, output frame k is the source frame whose timestamp is nearest to k / fps (ties go to
    the earlier frame), measured from the first frame, for as long as the source lasts.
    Bad arguments raise VideoError here, before the first frame is read.
    """
    info = probe(path)
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise VideoError(f"size must be a positive integer, got {size!r}")
    region = crop_region(crop, info)
    rate = None if fps is None else _as_rate(fps, "fps")
    return _read(Path(path), size, region, rate)


class VideoWriter:
    """Writes RGB frames to video (libx264 yuv420p, CRF, in an mp4/mkv/mov/avi container), a folder of
    PNGs, or raw rgb24 ("-" = stdout).

    Output goes to a hidden temporary path beside `path` and is renamed into place by a successful
    `close()`; an exception inside the `with` block (or `abort()`) removes it. An existing `path` is
    refused unless `force`. A reader that closes stdout raises BrokenPipeError, for the caller to stop.
    """

    def __init__(self, path: str | os.PathLike, fps: float | Fraction, crf: int = 18, format: str = "mp4",
                 force: bool = False):
        if format not in FORMATS:
            raise VideoError(f"cannot write {path}: unknown format {format!r} (use one of {', '.join(FORMATS)})")
        if isinstance(crf, bool) or not isinstance(crf, (int, np.integer)) or not 0 <= crf <= 51:
            raise VideoError(f"cannot write {path}: crf must be an integer in 0..51, got {crf!r}")
        self.to_stdout = str(path) == STDOUT
        if self.to_stdout and format != "raw":
            raise VideoError(f"cannot write {format} to stdout: only raw frames can go to '-'")
        self.path = Path(path)
        self.fps = _as_rate(fps, "fps")
        self.crf = int(crf)
        self.format = format
        self.force = force
        if not self.to_stdout:
            if self.path.exists() and not force:
                raise VideoError(f"cannot write {self.path}: it exists (use force to overwrite)")
            if not self.path.parent.is_dir():
                raise VideoError(f"cannot write {self.path}: no such directory {self.path.parent}")
        self.frames_written = 0
        self._shape: tuple[int, ...] | None = None
        self._temp: Path | None = None
        self._container = None
        self._stream = None
        self._raw = None
        self._closed = False

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, frame: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 RGB frame; every frame must have the first frame's size."""
        if self._closed:
            raise VideoError(f"cannot write {self.path}: the writer is closed")
        self._check_frame(frame)
        if self.frames_written == 0:
            self._start(frame.shape)
        try:
            if self.format in VIDEO_CONTAINERS:
                video_frame = rgb_to_yuv420p(frame)
                video_frame.pts = self.frames_written
                for packet in self._stream.encode(video_frame):
                    self._container.mux(packet)
            elif self.format == "png":
                Image.fromarray(frame).save(self._temp / PNG_PATTERN.format(self.frames_written))
            else:
                self._raw.write(np.ascontiguousarray(frame).tobytes())
        except BrokenPipeError:
            self.abort()
            raise
        except (OSError, av.FFmpegError) as exc:
            self.abort()
            raise VideoError(f"cannot write {self.path}: {_reason(exc)}") from None
        self.frames_written += 1

    def close(self) -> None:
        """Finish the output and move it into place; an output without frames is an error."""
        if self._closed:
            return
        if self.frames_written == 0:
            self.abort()
            raise VideoError(f"cannot write {self.path}: no frames were written")
        try:
            if self.format in VIDEO_CONTAINERS:
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
                self._container.close()
            elif self._raw is not None:
                self._raw.flush()
                if not self.to_stdout:
                    self._raw.close()
            if not self.to_stdout:
                self._move_into_place()
        except BrokenPipeError:
            self.abort()
            raise
        except (OSError, av.FFmpegError) as exc:
            self.abort()
            raise VideoError(f"cannot write {self.path}: {_reason(exc)}") from None
        self._closed = True

    def abort(self) -> None:
        """Drop everything written so far; the final path is left as it was."""
        self._closed = True
        for handle in (self._container, None if self.to_stdout else self._raw):
            if handle is not None:
                try:
                    handle.close()
                except (OSError, av.FFmpegError):
                    pass  # the output is being thrown away; its close error does not matter
        if self._temp is not None:
            _remove(self._temp)

    def _check_frame(self, frame: np.ndarray) -> None:
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            got = f"{getattr(frame, 'dtype', type(frame).__name__)} {getattr(frame, 'shape', '')}"
            raise VideoError(f"cannot write {self.path}: frames must be uint8 (H, W, 3) RGB, got {got}")
        if self._shape is not None and frame.shape != self._shape:
            raise VideoError(f"cannot write {self.path}: frame of shape {frame.shape} after frames of {self._shape}")
        height, width, _ = frame.shape
        if self.format in VIDEO_CONTAINERS and (height % 2 or width % 2):
            raise VideoError(f"cannot write {self.path}: H.264 video (yuv420p) needs even sizes, got {width}x{height}")

    def _start(self, shape: tuple[int, ...]) -> None:
        self._shape = shape
        if self.to_stdout:
            self._raw = sys.stdout.buffer
            return
        prefix = f".{self.path.name}."
        try:
            if self.format == "png":
                self._temp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".partial", dir=self.path.parent))
                return
            handle, name = tempfile.mkstemp(prefix=prefix, suffix=".partial", dir=self.path.parent)
            os.close(handle)
            self._temp = Path(name)
            if self.format == "raw":
                self._raw = open(self._temp, "wb")
                return
            self._container = av.open(str(self._temp), "w", format=VIDEO_CONTAINERS[self.format])
        except (OSError, av.FFmpegError) as exc:
            self.abort()
            raise VideoError(f"cannot write {self.path}: {_reason(exc)}") from None
        stream = self._container.add_stream("libx264", rate=self.fps)
        stream.height, stream.width = shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.colorspace = int(Colorspace.ITU601)
        stream.codec_context.color_range = int(ColorRange.MPEG)
        stream.options = {"crf": str(self.crf), "preset": MP4_PRESET}
        self._stream = stream

    def _move_into_place(self) -> None:
        if self.path.exists():
            if not self.force:
                raise FileExistsError(f"{self.path} appeared while writing")
            _remove(self.path)
        # mkstemp/mkdtemp make 0600/0700 temporaries; the result gets what a plain write would.
        os.chmod(self._temp, _umask_mode(0o777 if self._temp.is_dir() else 0o666))
        os.replace(self._temp, self.path)
        self._temp = None


def _umask_mode(mode: int) -> int:
    """`mode` with the process umask applied, as open() and mkdir() apply it."""
    mask = os.umask(0)
    os.umask(mask)
    return mode & ~mask


def _open_input(path: str | os.PathLike):
    path = Path(path)
    if not path.exists():
        raise VideoError(f"no such file: {path}")
    if not path.is_file():
        raise VideoError(f"not a video file: {path} (it is a directory)")
    try:
        container = av.open(str(path))
    except av.FFmpegError:
        raise VideoError(f"not a video file: {path}") from None
    except OSError as exc:
        raise VideoError(f"cannot read {path}: {_reason(exc)}") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"not a video file: {path} (no video stream)")
    return container


def _first_frame(container, stream, path) -> av.VideoFrame:
    try:
        for frame in container.decode(stream):
            return frame
    except av.FFmpegError as exc:
        raise VideoError(f"not a video file: {path} ({_reason(exc)})") from None
    raise VideoError(f"not a video file: {path} (no decodable video frame)")


def _read(path: Path, size: int, region: tuple[int, int, int], rate: Fraction | None) -> Iterator[np.ndarray]:
    with _open_input(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        timed = _timed_frames(container, stream, path)
        frames = (frame for _, _, frame in timed) if rate is None else _nearest_in_time(timed, rate)
        for frame in frames:
            yield _square_rgb(frame, region, size)


def _timed_frames(container, stream, path: Path) -> Iterator[tuple[Fraction, Fraction, av.VideoFrame]]:
    """(start time relative to the first frame, duration, frame), in presentation order."""
    nominal = 1 / _stream_rate(stream)
    start = None
    try:
        for index, frame in enumerate(container.decode(stream)):
            if frame.pts is None or frame.time_base is None:
                time = index * nominal
            else:
                time = frame.pts * Fraction(frame.time_base)
            start = time if start is None else start
            duration = frame.duration * Fraction(frame.time_base) if frame.duration and frame.time_base else nominal
            yield time - start, duration, frame
    except av.FFmpegError as exc:
        raise VideoError(f"cannot decode {path}: {_reason(exc)}") from None


def _nearest_in_time(frames: Iterator[tuple[Fraction, Fraction, av.VideoFrame]],
                     rate: Fraction) -> Iterator[av.VideoFrame]:
    """Resample to `rate`: target k takes the frame nearest to k / rate while the source lasts."""
    k = 0
    previous = None
    for time, duration, frame in frames:
        if previous is not None:
            previous_time, _, previous_frame = previous
            while k / rate < time:
                target = k / rate
                yield previous_frame if target - previous_time <= time - target else frame
                k += 1
        previous = time, duration, frame
    if previous is not None:
        last_time, last_duration, last_frame = previous
        while k / rate < last_time + last_duration:
            yield last_frame
            k += 1


def _square_rgb(frame: av.VideoFrame, region: tuple[int, int, int], size: int) -> np.ndarray:
    rgb = frame_to_rgb(frame)
    if turns := _quarter_turns(frame):
        rgb = np.rot90(rgb, turns)
    x, y, side = region
    if side == size:
        return np.ascontiguousarray(rgb[y:y + side, x:x + side])
    # PIL's Lanczos widens its kernel with the scale factor, so downscaling is anti-aliased.
    image = Image.fromarray(np.ascontiguousarray(rgb))
    return np.asarray(image.resize((size, size), Image.Resampling.LANCZOS, box=(x, y, x + side, y + side)))


def _quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that show the frame upright (from the display matrix)."""
    return round((frame.rotation or 0) / 90) % 4


def crop_region(crop, info: VideoInfo) -> tuple[int, int, int]:
    """The (x, y, side) square `read_frames` takes: `crop` checked against the frame, or the centred largest."""
    if crop is None:
        side = min(info.width, info.height)
        return (info.width - side) // 2, (info.height - side) // 2, side
    if (not isinstance(crop, (tuple, list)) or len(crop) != 3
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in crop)):
        raise VideoError(f"crop must be three integers (x, y, side), got {crop!r}")
    x, y, side = (int(v) for v in crop)
    if x < 0 or y < 0 or side < 1 or x + side > info.width or y + side > info.height:
        raise VideoError(f"crop (x={x}, y={y}, side={side}) does not fit in the {info.width}x{info.height} frame")
    return x, y, side


def _stream_rate(stream) -> Fraction:
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return Fraction(rate) if rate else Fraction(25)


def _as_rate(fps, name: str) -> Fraction:
    if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction, np.integer, np.floating)):
        raise VideoError(f"{name} must be a positive number, got {fps!r}")
    if isinstance(fps, Fraction):
        rate = fps
    elif isinstance(fps, (float, np.floating)):
        if not np.isfinite(fps):
            raise VideoError(f"{name} must be a positive number, got {fps!r}")
        rate = Fraction(float(fps)).limit_denominator(1001)  # 29.97 -> 30000/1001
    else:
        rate = Fraction(int(fps))
    if rate <= 0:
        raise VideoError(f"{name} must be a positive number, got {fps!r}")
    return rate


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _reason(exc: BaseException) -> str:
    return " ".join((getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).split())
