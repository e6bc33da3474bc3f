"""Constants shared by the bitstream, the codec, training and the spec tests."""
from enum import IntEnum


class MotionKind(IntEnum):
    """Which motion model produced the symbols (header field `motion_kind`)."""

    FV2V = 0
    FOMM = 1


NUM_KEYPOINTS_FV2V = 20
NUM_KEYPOINTS_FOMM = 10

# Hopenet-style head-pose classification: 66 bins of 3 degrees covering [-99, 99).
POSE_BINS = 66
POSE_BIN_DEGREES = 3
POSE_RANGE_DEGREES = POSE_BINS * POSE_BIN_DEGREES // 2

# The .fvc container, format versions 1.x to 5.x (spec/bitstream.md is normative).
FVC_MAGIC = b"\x89FVC\r\n\x1a\n"
FVC_VERSION_MAJOR = 1
FVC_VERSION_MINOR = 0  # what a stream without extensions declares
NOTE_MINOR = 1  # NOTE packets (spec §4.4) exist from version 1.1 on
# Reference slots (spec §5.6) need version 2.0: a 1.x decoder would render motion from the wrong keyframe.
SLOTS_MAJOR = 2
MAX_REF_SLOTS = 8
# Predicted keyframes (spec §5.7) need version 3.0: a 2.x decoder refuses a KEYFRAME without an IDR slice.
PREDICTION_MAJOR = 3
# RESYNC packets (spec §4.6, §5.8) need version 4.0: a 3.x decoder would skip them and decode the MOTION packets
# after one against the wrong values.
RESYNC_MAJOR = 4
# The header's keyframe_codec field (spec §5.9) needs version 5.0: a 4.x decoder would feed HEVC to an H.264 decoder.
HEVC_MAJOR = 5
NEWEST_MAJOR = HEVC_MAJOR


class KeyframeCodec(IntEnum):
    """How KEYFRAME access units are coded (header field `keyframe_codec`, version 5.x; before it always H.264)."""

    H264 = 0
    HEVC = 1

# Every entropy table is integer and sums to 2**ENTROPY_PRECISION; the range coder uses
# 32-bit words and a 64-bit state (constriction's default RangeEncoder).
ENTROPY_PRECISION = 24
# Largest |quantised value|: keeps every residual inside int32, so an escape is two 16-bit halves.
QUANT_MAX = 2**30 - 1
# Largest alphabet radius R a header may declare (bounds decoder table size to 8194 entries).
MAX_RADIUS = 4096

# Caps a reader enforces before allocating anything.
MAX_KEYFRAME_BYTES = 16 * 1024 * 1024
MAX_MOTION_BYTES = 65536
MAX_END_BYTES = 256
MAX_NOTE_BYTES = 4096
MAX_NOTE_DEPTH = 16  # arrays and objects inside a NOTE, the top-level object included
MAX_UNKNOWN_PACKET_BYTES = 16 * 1024 * 1024
