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
