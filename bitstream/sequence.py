"""Ordering, slot and integrity rules of the packet sequence, shared by writer and reader (spec §5)."""
from __future__ import annotations

from .errors import BitstreamError
from .header import StreamHeader
from .packets import (MAX_FRAME_INDEX, EndPacket, KeyframePacket, MotionPacket, NotePacket, Packet, UseSlotPacket,
                      annexb_problem, note_problem)


class StreamSequence:
    """Tracks the last frame index, the filled reference slots and the totals; `admit` refuses rule breakers."""

    def __init__(self, header: StreamHeader):
        self.header = header
        self.last_index = -1
        self.keyframe_count = 0
        self.motion_count = 0
        self.filled: set[int] = set()  # reference slots some KEYFRAME has filled
        self.slot_keyframes: dict[int, int] = {}  # filled slot -> frame index of the KEYFRAME in it
        self.active: int | None = None  # the active slot (spec §5.6)
        self.intra_seen = False  # whether an IDR KEYFRAME came: a predicted one needs it (spec §5.7)
        self.ended = False

    @property
    def frame_count(self) -> int:
        return self.last_index + 1

    def _check_index(self, index: int, offset: int) -> None:
        if index <= self.last_index:
            raise BitstreamError(f"frame index {index} does not follow {self.last_index}", offset)
        if index > MAX_FRAME_INDEX:
            raise BitstreamError(f"frame index {index} exceeds {MAX_FRAME_INDEX}", offset)
        if self.header.frame_count and index >= self.header.frame_count:
            raise BitstreamError(f"frame index {index} beyond the header's frame count "
                                 f"{self.header.frame_count}", offset)

    def check_slot(self, slot: int, offset: int) -> None:
        """Refuse a slot outside the header's reference buffer (spec §5.6)."""
        if not 0 <= slot < self.header.ref_slots:
            raise BitstreamError(f"slot {slot} outside the {self.header.ref_slots} reference slot"
                                 f"{'s' if self.header.ref_slots > 1 else ''} of the header", offset)

    def expected_end(self, offset: int) -> EndPacket:
        """The END packet that closes the packets admitted so far, starting at `offset`."""
        return EndPacket(self.frame_count, self.keyframe_count, self.motion_count, offset)

    def admit(self, packet: Packet, offset: int) -> None:
        """Update the totals with `packet` (starting at `offset`) or raise BitstreamError."""
        if self.ended:
            raise BitstreamError("data after the END packet", offset)
        if isinstance(packet, KeyframePacket):
            self._check_index(packet.frame_index, offset)
            self.check_slot(packet.slot, offset)
            if packet.codec != self.header.keyframe_codec:
                raise BitstreamError(f"{packet.codec.name} keyframe in a stream of "
                                     f"{self.header.keyframe_codec.name} keyframes", offset)
            problem = annexb_problem(packet.annexb, self.header.predicted_keyframes, self.header.keyframe_codec)
            if problem:
                raise BitstreamError(problem, offset)
            if packet.intra:
                self.intra_seen = True
            elif not self.intra_seen:
                raise BitstreamError("predicted keyframe before any intra keyframe", offset)
            self.keyframe_count += 1
            self.last_index = packet.frame_index
            self.filled.add(packet.slot)
            self.slot_keyframes[packet.slot] = packet.frame_index
            self.active = packet.slot
        elif isinstance(packet, UseSlotPacket):
            self.check_slot(packet.slot, offset)
            if packet.slot not in self.filled:
                raise BitstreamError(f"USE_SLOT names slot {packet.slot}, which no keyframe has filled", offset)
            self.active = packet.slot
        elif isinstance(packet, MotionPacket):
            if self.keyframe_count == 0:
                raise BitstreamError("motion packet before any keyframe", offset)
            self._check_index(packet.frame_index, offset)
            if packet.resync and packet.keyframe != self.slot_keyframes[self.active]:
                raise BitstreamError(f"RESYNC names the keyframe of frame {packet.keyframe}, but the active slot "
                                     f"{self.active} holds the keyframe of frame {self.slot_keyframes[self.active]}",
                                     offset)
            self.motion_count += 1
            self.last_index = packet.frame_index
        elif isinstance(packet, EndPacket):
            expected = self.expected_end(offset)
            if packet != expected:
                raise BitstreamError(f"END totals {packet} do not match the stream {expected}", offset)
            if self.header.frame_count and packet.frame_count != self.header.frame_count:
                raise BitstreamError(f"stream has {packet.frame_count} frames, header says "
                                     f"{self.header.frame_count}", offset)
            self.ended = True
        elif isinstance(packet, NotePacket):
            problem = note_problem(packet.body)
            if problem:
                raise BitstreamError(problem, offset)
