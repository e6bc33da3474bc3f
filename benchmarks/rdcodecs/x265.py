"""HEVC through PyAV's libx265, in the low-delay settings a call would use: a CRF sweep over x264's points."""
from __future__ import annotations

from .constant_quality import LowDelayEncoder
from .x264 import CRF_POINTS


class X265(LowDelayEncoder):
    """libx265 (preset medium) at constant rate factor, raw Annex-B HEVC; decoded by FFmpeg's hevc."""

    name = "x265"
    ENCODER, DECODER = "libx265", "hevc"
    QUALITY_POINTS, QUALITY_RANGE = CRF_POINTS, (0, 51)  # x265's CRF follows x264's scale: x264's points
    PRESET, PARAMS_OPTION, CONTAINER = "medium", "x265-params", "none (raw Annex-B)"
    PARAMS = {
        "bframes": "0", "rc-lookahead": "0",  # low delay: every frame coded as it comes
        "keyint": "250",  # x264's GOP: one IDR in a 10 s clip
        "frame-threads": "1", "pools": "1",  # one thread: the stream does not depend on the machine
        "info": "0",  # no version SEI (x264's is stripped, fvc writes none)
        "log-level": "error",
    }
