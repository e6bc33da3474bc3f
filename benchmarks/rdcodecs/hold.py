"""The slideshow floor: H.264 intra keyframes at a fixed interval, every other frame the last keyframe unchanged.

Its bytes are those of the .fvc stream an encoder would write with keyframe packets only; any
motion method must beat it, or its motion frames are worth less than showing nothing new.
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from bitstream import KeyframePacket, MotionKind, StreamWriter, default_header

from .base import BenchmarkError, Codec, CodedClip


@dataclass(frozen=True)
class HoldPoint:
    """Keyframe QP and the number of frames each keyframe is shown for."""

    keyframe_qp: int
    interval: int

    @property
    def label(self) -> str:
        return f"qp{self.keyframe_qp}-every{self.interval}"


POINTS = tuple(HoldPoint(qp, every) for qp in (24, 30, 40) for every in (25, 50, 100, 250))


class Hold(Codec):
    """Keyframes only (no motion), held until the next one."""

    name = "hold"

    def operating_points(self) -> list[str]:
        return [p.label for p in POINTS]

    def settings(self) -> dict[str, str]:
        return {"keyframes": "H.264 intra, constant QP (codec.h264)", "between": "the last keyframe repeated"}

    def code(self, frames: np.ndarray, fps: float, point: str) -> CodedClip:
        from codec.h264 import decode_intra, encode_intra

        chosen = next((p for p in POINTS if p.label == point), None)
        if chosen is None:
            raise BenchmarkError(f"hold has no operating point {point!r}; known: {', '.join(self.operating_points())}")
        n, height, width, _ = frames.shape
        header = default_header(MotionKind.FV2V, width, height, Fraction(fps).limit_denominator(1001),
                                bytes(16))  # frame count 0: the held tail has no packets
        start = time.perf_counter()
        packets = [KeyframePacket(i, encode_intra(frames[i], chosen.keyframe_qp)) for i in range(0, n, chosen.interval)]
        sink = io.BytesIO()
        writer = StreamWriter(sink, header)
        for packet in packets:
            writer.write(packet)
        writer.close()
        encode_seconds = time.perf_counter() - start
        start = time.perf_counter()
        decoded = np.empty_like(frames)
        for packet in packets:
            decoded[packet.frame_index:packet.frame_index + chosen.interval] = decode_intra(packet.annexb)
        return CodedClip(sink.getvalue(), decoded, encode_seconds, time.perf_counter() - start)
