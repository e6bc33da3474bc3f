"""The HEVC NAL units a keyframe of a 5.x stream may hold (ITU-T H.265 §7.3.1, spec §5.9)."""
from __future__ import annotations

from .annexb import NalSyntax

TRAIL_N, TRAIL_R, IDR_W_RADL, IDR_N_LP = 0, 1, 19, 20
VPS, SPS, PPS, AUD, PREFIX_SEI, SUFFIX_SEI = 32, 33, 34, 35, 39, 40
INTRA = frozenset({IDR_W_RADL, IDR_N_LP})
PREDICTED = frozenset({TRAIL_N, TRAIL_R})
# CRA, BLA, leading (RADL, RASL) and sub-layer switching pictures have no use in a sequence without B pictures or
# temporal layers; end of sequence or bitstream units would cut the keyframes' one sequence short (spec §5.9).
ALLOWED = INTRA | PREDICTED | {VPS, SPS, PPS, AUD, PREFIX_SEI, SUFFIX_SEI}


def nal_type(unit: bytes) -> int:
    """nal_unit_type: bits 1-6 of the first byte of the 2-byte NAL unit header."""
    return unit[0] >> 1 & 0x3F


def unit_problem(unit: bytes) -> str | None:
    """Why a keyframe may not hold the HEVC NAL unit `unit` (spec §5.9), or None."""
    if len(unit) < 2:
        return f"keyframe holds an HEVC NAL unit of {len(unit)} bytes, shorter than its 2-byte header"
    if unit[0] & 0x80:
        return "keyframe holds an HEVC NAL unit whose forbidden_zero_bit is 1"
    layer, temporal_id_plus1 = (unit[0] & 1) << 5 | unit[1] >> 3, unit[1] & 7
    if layer or temporal_id_plus1 != 1:
        return (f"keyframe holds an HEVC NAL unit of layer {layer}, temporal id plus 1 = {temporal_id_plus1} "
                "(only layer 0, temporal id 0)")
    if nal_type(unit) not in ALLOWED:
        return f"keyframe holds an HEVC NAL unit of type {nal_type(unit)}, which no keyframe may hold"
    return None


HEVC = NalSyntax("HEVC", nal_type, INTRA, PREDICTED, frozenset({PREFIX_SEI, SUFFIX_SEI}),
                 "HEVC NAL type 19 or 20", "HEVC NAL type 19, 20, 1 or 0", "HEVC NAL types 19/20 and 1/0",
                 unit_problem)
