"""What H.264 and HEVC keyframes share: Annex-B byte streams of NAL units, exp-Golomb reading, and the NAL unit
rules a KEYFRAME's access unit follows (spec §4.1, §5.9), described once per codec by a `NalSyntax`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

# Parameter sets and slice headers end long before this; a huge slice is never converted whole.
_PREFIX_BYTES = 4096


class Unreadable(Exception):
    """Syntax a reader here does not follow (or a broken unit)."""


def nal_units(annexb: bytes) -> list[bytes]:
    """The NAL units of an Annex-B byte stream, each from its header byte, in order."""
    # A unit never ends in 0x00 (H.264 §7.4.1, H.265 §7.4.2), so trailing zeros belong to the next 4-byte start code.
    return [unit.rstrip(b"\0") for unit in annexb.split(b"\0\0\1")[1:]]


def starts_with_start_code(annexb: bytes) -> bool:
    return annexb.startswith(b"\0\0\1") or annexb.startswith(b"\0\0\0\1")


class Bits:
    """MSB-first reader of a unit's RBSP (after its `header_bytes`, emulation prevention bytes removed), with
    exp-Golomb codes."""

    def __init__(self, unit: bytes, header_bytes: int = 1):
        rbsp = unit[header_bytes:_PREFIX_BYTES].replace(b"\0\0\3", b"\0\0")
        self._value = int.from_bytes(rbsp, "big")
        self._left = 8 * len(rbsp)

    def u(self, n: int) -> int:
        if n > self._left:
            raise Unreadable("unit ends early")
        self._left -= n
        return (self._value >> self._left) & ((1 << n) - 1)

    def ue(self) -> int:
        zeros = 0
        while not self.u(1):
            zeros += 1
            if zeros > 31:
                raise Unreadable("exp-Golomb code longer than 32 bits")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k % 2 else -(k // 2)


@dataclass(frozen=True)
class NalSyntax:
    """One keyframe codec's NAL units as the format layer sees them: which types are intra (IRAP) slices, which
    predicted slices, which SEI, and what else a keyframe may not hold."""

    name: str
    nal_type: Callable[[bytes], int]  # nal_unit_type of a non-empty unit
    intra: frozenset[int]
    predicted: frozenset[int]
    sei: frozenset[int]
    # The texts of the three slice errors (spec §4.1, §5.9): no intra slice; neither kind; both kinds.
    intra_text: str
    either_text: str
    both_text: str
    unit_problem: Callable[[bytes], str | None] = lambda unit: None  # a unit no keyframe may hold

    def slice_types(self, annexb: bytes) -> set[int]:
        """The intra and predicted slice types among the access unit's NAL units."""
        return {self.nal_type(u) for u in nal_units(annexb) if u} & (self.intra | self.predicted)

    def is_intra(self, annexb: bytes) -> bool:
        return bool(self.slice_types(annexb) & self.intra)

    def problem(self, annexb: bytes, predicted: bool = False) -> str | None:
        """Why `annexb` is not a keyframe access unit (`predicted`: one that may hold a predicted picture), or None."""
        if not starts_with_start_code(annexb):
            return "keyframe does not start with an Annex-B start code"
        for unit in nal_units(annexb):
            if (problem := self.unit_problem(unit)) is not None:
                return problem
        slices = self.slice_types(annexb)
        if not predicted:
            return None if slices & self.intra else f"keyframe has no IDR slice ({self.intra_text})"
        if not slices:
            return f"keyframe has no IDR or predicted slice ({self.either_text})"
        if slices & self.intra and slices & self.predicted:
            return f"keyframe mixes IDR and predicted slices ({self.both_text})"
        return None
