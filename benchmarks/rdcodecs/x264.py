"""x264 through PyAV's libx264: a CRF sweep, no B-frames, one raw Annex-B elementary stream per clip."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from codec.h264 import strip_sei
from codec.video import frame_to_rgb

from .constant_quality import LOW_DELAY, ConstantQuality

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
    # Each frame's packet out before the next frame goes in (x265's and svtav1's settings): no look-ahead, and no
    # frame held to learn its duration (the clips have a constant rate): what tune=zerolatency does at threads=1.
    low_delay: bool = False


class X264(ConstantQuality):
    """libx264 at constant rate factor; the version SEI is removed, as fvc does for its keyframes."""

    ENCODER, DECODER = "libx264", "h264"
    QUALITY_POINTS, QUALITY_RANGE = CRF_POINTS, (0, 51)

    def __init__(self, settings: X264Settings = X264Settings(), name: str | None = None):
        self.config = settings
        self.name = name or ("x264" if not settings.tune else f"x264-{settings.tune}")

    def settings(self) -> dict[str, str]:
        c = self.config
        return {"encoder": self.base_settings()["encoder"], "preset": c.preset, "tune": c.tune or "none",
                "x264-params": self._params(), "pix_fmt": self.base_settings()["pix_fmt"], "sei": "stripped",
                "container": "none (raw Annex-B)",
                **({"delay": LOW_DELAY} if c.low_delay else {})}

    def _params(self) -> str:
        c = self.config
        delay = ":rc-lookahead=0:sync-lookahead=0:force-cfr=1" if c.low_delay else ""
        return f"bframes=0{delay}:keyint={c.keyint}:threads={c.threads}"

    def encoder_options(self, crf: int) -> dict[str, str]:
        options = {"preset": self.config.preset, "crf": str(crf), "x264-params": self._params()}
        if self.config.tune:
            options["tune"] = self.config.tune
        return options

    def finish(self, packets: list[bytes]) -> bytes:
        return strip_sei(b"".join(packets))

    def decode(self, stream: bytes, packets: list[bytes]) -> Iterator[np.ndarray]:
        return decode_annexb(stream)  # the packets still hold the SEI the stream lost
