"""Classical encoders through PyAV (FFmpeg) at constant quality: each clip coded once per CRF point as one
elementary stream, decoded back by FFmpeg's own decoder. x264, x265 and SVT-AV1 differ only in their options."""
from __future__ import annotations

import time
from abc import abstractmethod
from fractions import Fraction
from typing import Iterator

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

# The RGB <-> yuv420p conversion every fvc path uses, so colour handling does not tilt the comparison.
from codec.video import frame_to_rgb, rgb_to_yuv420p

from .base import BenchmarkError, Codec, CodedClip, collect_frames

# How many frames each encoder may hold back: none. A call sends each frame as it comes, so every method's
# low-delay settings turn off B-frames (bframes=0, or SVT-AV1's low-delay prediction structure) and look-ahead.
LOW_DELAY = "no B-frames, no look-ahead"


def decode_packets(packets: list[bytes], decoder_name: str) -> Iterator[np.ndarray]:
    """RGB uint8 pictures of an encoder's packets, each fed to FFmpeg's `decoder_name` as it was written."""
    decoder = av.CodecContext.create(decoder_name, "r")
    decoder.thread_type, decoder.thread_count = "FRAME", 1
    for packet in [*packets, None]:
        for frame in decoder.decode(None if packet is None else av.Packet(packet)):
            yield frame_to_rgb(frame, Colorspace.ITU601, ColorRange.MPEG)


class ConstantQuality(Codec):
    """One FFmpeg encoder at constant quality (its `crf`) over QUALITY_POINTS; all bytes of the stream count."""

    ENCODER: str  # FFmpeg's encoder name
    DECODER: str  # FFmpeg's decoder name
    QUALITY_POINTS: tuple[int, ...]
    QUALITY_RANGE: tuple[int, int]  # the crf values the encoder accepts

    def operating_points(self) -> list[str]:
        return [f"crf{q}" for q in self.QUALITY_POINTS]

    @abstractmethod
    def encoder_options(self, crf: int) -> dict[str, str]:
        """FFmpeg options of the encoder at `crf` (the same at every point but crf)."""

    def finish(self, packets: list[bytes]) -> bytes:
        """The stream whose bytes count, from the encoder's packets."""
        return b"".join(packets)

    def decode(self, stream: bytes, packets: list[bytes]) -> Iterator[np.ndarray]:
        return decode_packets(packets, self.DECODER)

    def base_settings(self) -> dict[str, str]:
        """run.json's description of what every subclass shares."""
        return {"encoder": f"{self.ENCODER} (FFmpeg {av.ffmpeg_version_info}, PyAV {av.__version__})",
                "pix_fmt": "yuv420p (BT.601 limited, codec.video conversion)"}

    def code(self, frames: np.ndarray, fps: float, point: str) -> CodedClip:
        low, high = self.QUALITY_RANGE
        if not point.startswith("crf") or not point[3:].isdigit() or not low <= int(point[3:]) <= high:
            raise BenchmarkError(f"{self.name} operating point {point!r} is not crf{low}..crf{high}")
        _, height, width, _ = frames.shape
        if height % 2 or width % 2:
            raise BenchmarkError(f"{self.name} with yuv420p needs even sizes, got {width}x{height}")
        rate = Fraction(fps).limit_denominator(1001)
        encoder = av.CodecContext.create(self.ENCODER, "w")
        encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
        encoder.time_base, encoder.framerate = 1 / rate, rate
        encoder.colorspace, encoder.color_range = int(Colorspace.ITU601), int(ColorRange.MPEG)
        encoder.options = self.encoder_options(int(point[3:]))

        start = time.perf_counter()
        packets = []
        for i, rgb in enumerate(frames):
            picture = rgb_to_yuv420p(rgb)
            picture.pts = i
            packets += [bytes(p) for p in encoder.encode(picture)]
        packets += [bytes(p) for p in encoder.encode(None)]
        stream = self.finish(packets)
        encode_seconds = time.perf_counter() - start

        start = time.perf_counter()
        decoded = collect_frames(self.decode(stream, packets), frames, f"{self.name} {point}")
        decode_seconds = time.perf_counter() - start
        return CodedClip(stream, decoded, encode_seconds, decode_seconds)


class LowDelayEncoder(ConstantQuality):
    """An encoder set by a preset and its `PARAMS_OPTION` string (x265-params, svtav1-params) in low-delay
    settings, the stream written as CONTAINER says."""

    PRESET: str
    PARAMS_OPTION: str
    PARAMS: dict[str, str]
    CONTAINER: str

    def params(self) -> str:
        return ":".join(f"{k}={v}" for k, v in self.PARAMS.items())

    def encoder_options(self, crf: int) -> dict[str, str]:
        return {"preset": self.PRESET, "crf": str(crf), self.PARAMS_OPTION: self.params()}

    def settings(self) -> dict[str, str]:
        return {**self.base_settings(), "preset": self.PRESET, self.PARAMS_OPTION: self.params(), "delay": LOW_DELAY,
                "container": self.CONTAINER}
