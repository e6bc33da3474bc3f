"""Just enough H.264 syntax (ITU-T H.264 §7.3) to read a keyframe's QP and frame_num: NAL units, SPS, PPS, slice
header."""
from __future__ import annotations

from dataclasses import dataclass

from .annexb import Bits as _Bits
from .annexb import NalSyntax, Unreadable as _Unreadable, nal_units

NAL_NON_IDR, NAL_IDR, NAL_SEI, NAL_SPS, NAL_PPS = 1, 5, 6, 7, 8
# Profiles whose SPS carries chroma_format_idc, bit depths and scaling lists (§7.3.2.1.1).
_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}

# The format layer checks only the slice types of an H.264 keyframe (spec §4.1): its other NAL units are the
# H.264 decoder's business, as they were before HEVC keyframes existed.
AVC = NalSyntax("H.264", lambda unit: unit[0] & 0x1F, frozenset({NAL_IDR}), frozenset({NAL_NON_IDR}),
                frozenset({NAL_SEI}), "NAL type 5", "NAL type 5 or 1", "NAL types 5 and 1")


@dataclass(frozen=True)
class _Sps:
    separate_colour_planes: bool
    frame_num_bits: int
    poc_type: int
    poc_lsb_bits: int
    delta_pic_order_always_zero: bool
    frame_mbs_only: bool
    gaps_allowed: bool = False  # gaps_in_frame_num_value_allowed_flag


@dataclass(frozen=True)
class _Pps:
    sps_id: int
    bottom_field_pic_order_present: bool
    pic_init_qp: int
    redundant_pic_cnt_present: bool


def _skip_scaling_list(bits: _Bits, size: int) -> None:
    last = next_scale = 8
    for _ in range(size):
        if next_scale:
            next_scale = (last + bits.se() + 256) % 256
        last = next_scale or last


def _sps(bits: _Bits) -> tuple[int, _Sps]:
    profile = bits.u(8)
    bits.u(16)  # constraint flags, level_idc
    sps_id = bits.ue()
    separate = False
    if profile in _HIGH_PROFILES:
        chroma_format = bits.ue()
        if chroma_format == 3:
            separate = bool(bits.u(1))
        bits.ue(), bits.ue(), bits.u(1)  # bit depths, qpprime_y_zero_transform_bypass_flag
        if bits.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format != 3 else 12):
                if bits.u(1):
                    _skip_scaling_list(bits, 16 if i < 6 else 64)
    frame_num_bits = bits.ue() + 4
    poc_type, poc_lsb_bits, always_zero = bits.ue(), 0, False
    if poc_type == 0:
        poc_lsb_bits = bits.ue() + 4
    elif poc_type == 1:
        always_zero = bool(bits.u(1))
        bits.se(), bits.se()  # offset_for_non_ref_pic, offset_for_top_to_bottom_field
        for _ in range(bits.ue()):
            bits.se()
    bits.ue()  # max_num_ref_frames
    gaps = bool(bits.u(1))
    bits.ue(), bits.ue()  # width and height in MBs
    return sps_id, _Sps(separate, frame_num_bits, poc_type, poc_lsb_bits, always_zero, bool(bits.u(1)), gaps)


def _pps(bits: _Bits) -> tuple[int, _Pps]:
    pps_id, sps_id = bits.ue(), bits.ue()
    bits.u(1)  # entropy_coding_mode_flag: only P and B slice headers depend on it
    bottom_field_pic_order = bool(bits.u(1))
    if bits.ue():
        raise _Unreadable("slice groups (FMO)")
    bits.ue(), bits.ue(), bits.u(1), bits.u(2)  # default ref counts, weighted prediction
    pic_init_qp = 26 + bits.se()
    bits.se(), bits.se(), bits.u(1), bits.u(1)  # qs, chroma offset, deblocking and intra flags
    return pps_id, _Pps(sps_id, bottom_field_pic_order, pic_init_qp, bool(bits.u(1)))


def _idr_slice_qp(bits: _Bits, nal_ref_idc: int, sps: dict[int, _Sps], pps: dict[int, _Pps]) -> int:
    bits.ue()  # first_mb_in_slice
    if bits.ue() % 5 not in (2, 4):
        raise _Unreadable("an IDR slice must be I or SI")
    p = pps[bits.ue()]
    s = sps[p.sps_id]
    if s.separate_colour_planes:
        bits.u(2)
    bits.u(s.frame_num_bits)
    field_pic = False
    if not s.frame_mbs_only:
        field_pic = bool(bits.u(1))
        if field_pic:
            bits.u(1)
    bits.ue()  # idr_pic_id
    if s.poc_type == 0:
        bits.u(s.poc_lsb_bits)
        if p.bottom_field_pic_order_present and not field_pic:
            bits.se()
    elif s.poc_type == 1 and not s.delta_pic_order_always_zero:
        bits.se()
        if p.bottom_field_pic_order_present and not field_pic:
            bits.se()
    if p.redundant_pic_cnt_present:
        bits.ue()
    # I and SI slices have no reference list, weight or CABAC-init syntax before the QP.
    if nal_ref_idc:
        bits.u(2)  # dec_ref_pic_marking of an IDR picture
    return p.pic_init_qp + bits.se()


def _slices_after_parameter_sets(annexb: bytes, sps: dict[int, _Sps], pps: dict[int, _Pps]):
    """Yield (unit, nal_unit_type) of an access unit's other NAL units, each after the SPS and PPS before it
    were parsed into `sps` and `pps` (raises _Unreadable on a damaged parameter set)."""
    for unit in nal_units(annexb):
        if not unit:
            continue
        kind = unit[0] & 0x1F
        if kind == NAL_SPS:
            key, value = _sps(_Bits(unit))
            sps[key] = value
        elif kind == NAL_PPS:
            key, value = _pps(_Bits(unit))
            pps[key] = value
        else:
            yield unit, kind


def slice_qp(annexb: bytes) -> int | None:
    """SliceQPY of the access unit's first IDR slice, from its own SPS and PPS; None if unreadable."""
    sps: dict[int, _Sps] = {}
    pps: dict[int, _Pps] = {}
    try:
        for unit, kind in _slices_after_parameter_sets(annexb, sps, pps):
            if kind == NAL_IDR:
                return _idr_slice_qp(_Bits(unit), unit[0] >> 5 & 3, sps, pps)
    except (_Unreadable, KeyError):
        return None
    return None


class ReferenceTracker:
    """Follows frame_num (H.264 §7.4.3) through the keyframe access units a receiver decodes, in order, to tell
    whether a predicted picture can hold all its references: with gaps_in_frame_num_value_allowed_flag 0 (x264's
    setting), a frame_num more than one past the last reference picture's means a reference picture was lost
    (H.264 §8.2.5.2). Spec §12.7: a receiver must not show a keyframe decoded without its references.
    """

    def __init__(self):
        self._sps: dict[int, _Sps] = {}
        self._pps: dict[int, _Pps] = {}
        self._previous: tuple[int, int] | None = None  # (frame_num, MaxFrameNum) of the last reference picture

    def reset(self) -> None:
        """Forget the sequence: only an IDR picture follows now."""
        self._previous = None

    def follows(self, annexb: bytes) -> bool:
        """Whether the access unit `annexb`, the next one the decoder takes, is an IDR picture or a predicted one
        whose frame_num continues the last reference picture's; False (and the sequence is forgotten) when a
        reference picture is missing or the syntax cannot be read."""
        try:
            for unit, kind in _slices_after_parameter_sets(annexb, self._sps, self._pps):
                if kind in (NAL_IDR, NAL_NON_IDR):
                    return self._slice(unit, kind == NAL_IDR)
        except (_Unreadable, KeyError):
            pass
        self._previous = None
        return False

    def _slice(self, unit: bytes, idr: bool) -> bool:
        bits = _Bits(unit)
        bits.ue(), bits.ue()  # first_mb_in_slice, slice_type
        pps = self._pps[bits.ue()]
        sps = self._sps[pps.sps_id]
        if sps.separate_colour_planes:
            bits.u(2)
        frame_num, modulus = bits.u(sps.frame_num_bits), 1 << sps.frame_num_bits
        reference = bool(unit[0] >> 5 & 3)
        if not idr:
            previous = self._previous
            if previous is None or previous[1] != modulus:
                self._previous = None
                return False
            if not sps.gaps_allowed and frame_num not in (previous[0], (previous[0] + 1) % modulus):
                self._previous = None
                return False
        if reference or idr:
            self._previous = (frame_num, modulus)
        return True
