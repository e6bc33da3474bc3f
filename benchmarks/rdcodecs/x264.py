"""x264 through PyAV's libx264: a CRF sweep, no B-frames, one raw Annex-B elementary stream per clip."""
from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterator

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from codec.h264 import strip_sei
# The RGB <-> yuv420p conversion every fvc path uses, so colour handling does not tilt the comparison.
from codec.video import frame_to_rgb, rgb_to_yuv420p

from .base import BenchmarkError, Codec, CodedClip, collect_frames

CRF_POINTS = (20, 24, 28, 32, 36, 40, 44, 48, 51)


def decode_annexb(stream: bytes) -> Iterator[np.ndarray]:
    """The pictures of an H.264 Annex-B stream as RGB uint8 arrays, in output order."""
    decoder = av.CodecContext.create("h264", "r")
    decoder.thread_type, decoder.thread_count = "FRAME", 1
    for packet in [*decoder.parse(stream), *decoder.parse(None), None]:
        for frame in decoder.decode(packet):
            yield frame_to_rgb(frame, Colorspace.ITU601, ColorRange.MPEG)


@dataclass(frozen=True)
class X264Settings:
    """Everything besides CRF that shapes the stream; threads=1 keeps the stream machine-independent."""

    preset: str = "medium"
    tune: str = ""  # "" = no tune; "zerolatency" drops lookahead and frame threading delay
    keyint: int = 250  # x264's default GOP
    threads: int = 1


class X264(Codec):
    """libx264 at constant rate factor; the version SEI is removed, as fvc does for its keyframes."""

    def __init__(self, settings: X264Settings = X264Settings(), name: str | None = None):
        self.config = settings
        self.name = name or ("x264" if not settings.tune else f"x264-{settings.tune}")

    def operating_points(self) -> list[str]:
        return [f"crf{crf}" for crf in CRF_POINTS]

    def settings(self) -> dict[str, str]:
        c = self.config
        return {"encoder": f"libx264 (FFmpeg {av.ffmpeg_version_info}, PyAV {av.__version__})",
                "preset": c.preset, "tune": c.tune or "none", "x264-params": self._params(),
                "pix_fmt": "yuv420p (BT.601 limited, codec.video conversion)", "sei": "stripped",
                "container": "none (raw Annex-B)"}

    def _params(self) -> str:
        c = self.config
        return f"bframes=0:keyint={c.keyint}:threads={c.threads}"

    def code(self, frames: np.ndarray, fps: float, point: str) -> CodedClip:
        if not point.startswith("crf") or not point[3:].isdigit() or not 0 <= int(point[3:]) <= 51:
            raise BenchmarkError(f"x264 operating point {point!r} is not crf0..crf51")
        _, height, width, _ = frames.shape
        if height % 2 or width % 2:
            raise BenchmarkError(f"x264 with yuv420p needs even sizes, got {width}x{height}")
        rate = Fraction(fps).limit_denominator(1001)
        encoder = av.CodecContext.create("libx264", "w")
        encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
        encoder.time_base, encoder.framerate = 1 / rate, rate
        encoder.colorspace, encoder.color_range = int(Colorspace.ITU601), int(ColorRange.MPEG)
        options = {"preset": self.config.preset, "crf": point[3:], "x264-params": self._params()}
        if self.config.tune:
            options["tune"] = self.config.tune
        encoder.options = options

        start = time.perf_counter()
        chunks = []
        for i, rgb in enumerate(frames):
            picture = rgb_to_yuv420p(rgb)
            picture.pts = i
            chunks += [bytes(p) for p in encoder.encode(picture)]
        chunks += [bytes(p) for p in encoder.encode(None)]
        stream = strip_sei(b"".join(chunks))
        encode_seconds = time.perf_counter() - start

        start = time.perf_counter()
        decoded = collect_frames(decode_annexb(stream), frames, f"x264 {point}")
        decode_seconds = time.perf_counter() - start
        return CodedClip(stream, decoded, encode_seconds, decode_seconds)
