"""AV1 through PyAV's libsvtav1 (SVT-AV1), in its low-delay prediction structure: a CRF sweep."""
from __future__ import annotations

import os

from .constant_quality import LowDelayEncoder


class SvtAv1(LowDelayEncoder):
    """libsvtav1 at constant rate factor, the OBU stream as the encoder writes it (temporal delimiters
    included); decoded by FFmpeg's libdav1d."""

    name = "svtav1"
    ENCODER, DECODER = "libsvtav1", "libdav1d"
    # SVT-AV1's CRF runs 1..63; these cover the rates of x264's crf20..crf51 (on cnn2's first 60 frames at 512²:
    # SVT-AV1 crf20 0.073 bpp, crf63 0.0026; x264 crf20 0.066, crf51 0.0031).
    QUALITY_POINTS, QUALITY_RANGE = (20, 26, 32, 38, 44, 50, 55, 59, 63), (1, 63)
    # Preset 8 of 0 (slowest) .. 13: 64-100 fps at 512² on one thread here (x264 medium: 60-320).
    PRESET, PARAMS_OPTION = "8", "svtav1-params"
    CONTAINER = "none (raw OBU stream, temporal delimiters included)"
    PARAMS = {
        "pred-struct": "1",  # low delay: no frame waits for a later one (SVT-AV1's default, 2, is random access)
        "lookahead": "0",
        "keyint": "250",  # x264's GOP: one key frame in a 10 s clip
        "lp": "1",  # one thread: the stream does not depend on the machine
    }

    def __init__(self):
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole configuration at every point otherwise
