"""HEVC through PyAV's libx265, in the low-delay settings a call would use: a CRF sweep over x264's points."""
from __future__ import annotations

from .constant_quality import LOW_DELAY, ConstantQuality
from .x264 import CRF_POINTS

# x265's CRF follows x264's scale, so the sweep takes x264's points.
X265_PARAMS = {
    "bframes": "0", "rc-lookahead": "0",  # low delay: every frame coded as it comes
    "keyint": "250",  # x264's GOP: one IDR in a 10 s clip
    "frame-threads": "1", "pools": "1",  # one thread: the stream does not depend on the machine
    "info": "0",  # no version SEI (x264's is stripped, fvc writes none)
    "log-level": "error",
}


class X265(ConstantQuality):
    """libx265 (preset medium) at constant rate factor, raw Annex-B HEVC; decoded by FFmpeg's hevc."""

    name = "x265"
    ENCODER, DECODER = "libx265", "hevc"
    QUALITY_POINTS, QUALITY_RANGE = CRF_POINTS, (0, 51)
    PRESET = "medium"

    def encoder_options(self, crf: int) -> dict[str, str]:
        return {"preset": self.PRESET, "crf": str(crf), "x265-params": self._params()}

    def _params(self) -> str:
        return ":".join(f"{k}={v}" for k, v in X265_PARAMS.items())

    def settings(self) -> dict[str, str]:
        return {**self.base_settings(), "preset": self.PRESET, "x265-params": self._params(), "delay": LOW_DELAY,
                "container": "none (raw Annex-B)"}
