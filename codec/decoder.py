"""Streaming decoder: packets in, RGB frames out; the encoder renders through the same functions.

`Decoder` decodes a whole stream and stops at damage; `ConcealingDecoder` decodes what a lossy network delivers
(spec §12.7): it conceals lost motion until a RESYNC or KEYFRAME, asks for a keyframe when one is lost, and never
shows a frame rendered from a picture it does not hold.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from bitstream import (BitstreamError, EndPacket, KeyframePacket, MotionDecoder, MotionKind, MotionPacket,
                       StreamHeader, UseSlotPacket, dequantize)
from bitstream.avc import ReferenceTracker
from bitstream.constants import KeyframeCodec
from bitstream.packets import PacketType

from .errors import InputError
from .h264 import H264Error, KeyframeDecoder


@dataclass(frozen=True)
class DecoderOptions:
    """Free-view overrides (fv2v only): degrees added to the head rotation, or rotation set to zero."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    frontalize: bool = False

    @property
    def free_view(self) -> bool:
        return self.frontalize or any((self.yaw, self.pitch, self.roll))


def model_device(model) -> torch.device:
    """The device a MotionModel's weights live on."""
    params = getattr(model, "parameters", None)
    first = next(iter(params()), None) if params is not None else None
    return first.device if first is not None else torch.device("cpu")


def frame_to_tensor(frame: np.ndarray, device: torch.device) -> torch.Tensor:
    """(H, W, 3) uint8 → (1, 3, H, W) float in [0, 1]."""
    return torch.tensor(frame, device=device).permute(2, 0, 1)[None].float().div_(255.0)


def tensor_to_frame(image: torch.Tensor, width: int, height: int) -> np.ndarray:
    """(1, 3, h, w) in [0, 1] → (height, width, 3) uint8, resized when the model's size differs."""
    if image.shape[-2:] != (height, width):
        shrinking = image.shape[-1] > width or image.shape[-2] > height
        image = F.interpolate(image, size=(height, width), mode="bilinear", align_corners=False,
                              antialias=shrinking)
    pixels = image[0].clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    return pixels.permute(1, 2, 0).cpu().numpy()


def motion_tensors(ints: Mapping[str, np.ndarray], header: StreamHeader,
                   device: torch.device) -> dict[str, torch.Tensor]:
    """Quantised symbols → the float motion dict `render` takes, batch of one."""
    return {name: torch.from_numpy(values)[None].to(device) for name, values in dequantize(ints, header).items()}


def free_view_rotation(motion: dict[str, torch.Tensor], options: DecoderOptions) -> torch.Tensor:
    """The head rotation (B, 1, 3 degrees) free view shows for fv2v `motion`: its own offset, or zero."""
    rotation = torch.zeros_like(motion["rotation"]) if options.frontalize else motion["rotation"].clone()
    rotation += torch.tensor([options.yaw, options.pitch, options.roll], dtype=rotation.dtype,
                             device=rotation.device)
    return rotation


@dataclass
class _Slot:
    """A reference keyframe and, once a frame needs it, the model's analysis of it."""

    image: torch.Tensor
    analysis: Any = None


class Decoder:
    """Decodes one stream packet by packet with a MotionModel whose id matches the stream's.

    It keeps every reference slot's keyframe with its analysis, so a USE_SLOT switch runs no network.
    """

    def __init__(self, model, header: StreamHeader, options: DecoderOptions = DecoderOptions()):
        if options.free_view and header.kind != MotionKind.FV2V:
            raise InputError(f"free view (--yaw/--pitch/--roll/--frontalize) needs an fv2v stream, "
                             f"this one is {header.kind.name.lower()}")
        if model.kind != header.kind:
            raise InputError(f"the stream holds {header.kind.name.lower()} motion but the model is "
                             f"{MotionKind(model.kind).name.lower()}")
        self.model = model
        self.header = header
        self.options = options
        self.device = model_device(model)
        self.motion_decoder = MotionDecoder(header)
        self._keyframes = KeyframeDecoder(header.keyframe_codec)
        self._slots: dict[int, _Slot] = {}
        self._slot_keyframes: dict[int, int] = {}  # filled slot -> frame index of its keyframe (a RESYNC names it)
        self.slot: int | None = None  # the active slot, None before the first keyframe
        self._next_index = 0
        self._last: np.ndarray | None = None

    @torch.inference_mode()
    def push(self, packet, offset: int = 0) -> list[np.ndarray]:
        """Frames completed by `packet`: its own, after copies of the previous frame for skipped indices.

        Undecodable content raises BitstreamError at `offset` (where the packet starts in the stream).
        """
        if isinstance(packet, (KeyframePacket, MotionPacket)):
            held = self._held_frames(packet.frame_index)
            return held + [self._decode(packet, offset)]
        if isinstance(packet, UseSlotPacket):
            if packet.slot not in self._slots:
                raise BitstreamError(f"USE_SLOT names slot {packet.slot}, which no keyframe has filled", offset)
            self.slot = packet.slot  # the motion state stays as it is (spec §5.6)
        return []  # USE_SLOT, END and unknown packet types carry no frame

    def _held_frames(self, index: int) -> list[np.ndarray]:
        """Copies of the last frame for indices the stream skipped, so output timing follows the indices."""
        gap = index - self._next_index
        self._next_index = index + 1
        return [self._last] * gap if gap > 0 and self._last is not None else []

    def _decode(self, packet, offset: int) -> np.ndarray:
        if isinstance(packet, KeyframePacket):
            self._last = self.decode_keyframe(packet, offset)
        else:
            self._last = self.render(self.decode_motion(packet, offset))
        return self._last

    def decode_keyframe(self, packet: KeyframePacket, offset: int = 0) -> np.ndarray:
        """Decode a KEYFRAME into its slot and make it active (the motion state resets); returns the frame it shows.

        An access unit H.264 cannot decode raises BitstreamError at `offset`.
        """
        try:
            picture = self._keyframes.decode(packet.annexb)
        except H264Error as exc:
            raise BitstreamError(f"keyframe {packet.frame_index}: {exc}", offset) from None
        self._slot_keyframes[packet.slot] = packet.frame_index
        return self._keyframe(picture, packet.slot)

    def decode_motion(self, packet: MotionPacket, offset: int = 0) -> dict[str, np.ndarray]:
        """The integers of a MOTION or RESYNC packet, through the motion state (a RESYNC resets it first).

        A RESYNC must name the active slot's keyframe (spec §4.6); that, motion before any keyframe and an invalid
        payload raise BitstreamError at `offset`.
        """
        if self.slot is None:
            raise BitstreamError(f"motion packet for frame {packet.frame_index} before any keyframe", offset)
        if packet.resync:
            held = self._slot_keyframes.get(self.slot)
            if packet.keyframe != held:
                raise BitstreamError(f"RESYNC names the keyframe of frame {packet.keyframe}, but the active slot "
                                     f"{self.slot} holds the keyframe of frame {held}", offset)
            self.motion_decoder.reset()
        return self.motion_decoder.decode(packet.payload, offset)

    def keyframe_in(self, slot: int) -> int | None:
        """Frame index of the keyframe in `slot`, None if the slot is empty."""
        return self._slot_keyframes.get(slot)

    def slot_holding(self, keyframe: int) -> int | None:
        """The slot that holds the keyframe of frame `keyframe`, if any."""
        return next((slot for slot, index in self._slot_keyframes.items() if index == keyframe), None)

    def activate(self, slot: int) -> None:
        """Make the filled `slot` active, as a USE_SLOT does (the motion state stays as it is)."""
        if slot not in self._slots:
            raise BitstreamError(f"slot {slot} holds no keyframe", None)
        self.slot = slot

    def forget_slot(self, slot: int) -> None:
        """Empty `slot`: its picture is not the one the stream put there (a receiver that lost a keyframe)."""
        self._slots.pop(slot, None)
        self._slot_keyframes.pop(slot, None)
        if self.slot == slot:
            self.slot = None

    def _keyframe(self, picture: np.ndarray, slot: int) -> np.ndarray:
        if picture.shape != (self.header.height, self.header.width, 3):
            picture = tensor_to_frame(frame_to_tensor(picture, self.device), self.header.width, self.header.height)
        self._slots[slot] = _Slot(frame_to_tensor(picture, self.device))
        self.slot = slot
        self.motion_decoder.reset()
        if not self.options.free_view:
            return picture
        # The keyframe's own pose is not in the stream; the model estimates it from the picture,
        # which only shapes pixels (docs/design.md, determinism rule).
        motion = self.model.estimate_motion(self._slots[slot].image)
        return self._render_motion(motion)

    @property
    def filled_slots(self) -> tuple[int, ...]:
        """The reference slots that hold a keyframe, in increasing order."""
        return tuple(sorted(self._slots))

    @property
    def state(self):
        """The model's analysis of the active slot's keyframe (None before the first keyframe)."""
        return None if self.slot is None else self.state_of(self.slot)

    def state_of(self, slot: int):
        """The model's analysis of the keyframe in `slot`, computed when a frame first needs it.

        Deferred because a keyframe followed by another keyframe never needs the networks.
        """
        held = self._slots[slot]
        if held.analysis is None:
            held.analysis = self.model.analyze_keyframe(held.image)
        return held.analysis

    def render(self, ints: Mapping[str, np.ndarray], slot: int | None = None, state=None) -> np.ndarray:
        """The frame the motion symbols `ints` describe, from the keyframe in `slot` (default: the active one),
        or from `state`, the analysis of a keyframe the stream does not hold (the encoder's what-if)."""
        return self._render_motion(motion_tensors(ints, self.header, self.device), slot, state)

    def _render_motion(self, motion: dict[str, torch.Tensor], slot: int | None = None, state=None) -> np.ndarray:
        if state is None:
            state = self.state_of(self.slot if slot is None else slot)
        view = free_view_rotation(motion, self.options) if self.options.free_view else None
        shown = self.model.render(state, motion) if view is None else self.model.render(state, motion, view=view)
        return tensor_to_frame(shown, self.header.width, self.header.height)


class FrameSource(str, Enum):
    """Where a frame a ConcealingDecoder shows comes from."""

    KEYFRAME = "keyframe"  # a keyframe's picture, as a loss-free decoder shows it
    MOTION = "motion"  # rendered from decoded motion, as a loss-free decoder shows it
    CONCEALED = "concealed"  # a lost or undecodable frame: the frame rendered from the last motion held


@dataclass(frozen=True)
class ShownFrame:
    """One frame a ConcealingDecoder shows: its frame index, pixels, origin, and the keyframe (frame index) whose
    picture it shows or was rendered from."""

    index: int
    image: np.ndarray
    source: FrameSource
    picture: int


@dataclass
class ConcealmentStats:
    """What a ConcealingDecoder showed and why."""

    shown: int = 0
    decoded: int = 0  # frames shown as a loss-free decoder shows them (keyframes and motion)
    concealed: int = 0  # frames shown in place of a lost or undecodable one
    unshown: int = 0  # frame indices with nothing to show yet (before the first keyframe) or beyond max_gap
    motion_skipped: int = 0  # MOTION packets received but not decoded: a packet before them was lost
    resyncs: int = 0  # RESYNC packets that restored motion decoding after a loss
    keyframes_lost: int = 0  # KEYFRAMEs found lost, undecodable or decoded without their references
    keyframe_requests: int = 0  # requests for an intra keyframe (each answered by one before the next)
    restarts: int = 0  # the sender restarted (transport ResyncEvent): everything held was forgotten


class ConcealingDecoder:
    """Decodes what a lossy network delivers (spec §12.7): packets, with a flag that something was lost before
    them, and the transport's loss events.

    - After a loss it decodes no MOTION packet until a RESYNC or KEYFRAME: the motion state may not be the
      sender's. Each frame meanwhile is concealed, shown as the frame rendered from the last motion it holds
      (the last frame shown, or that motion rendered from a slot a trusted USE_SLOT made active since).
    - A KEYFRAME lost (a dropped unit of type 1, a RESYNC naming a keyframe it does not hold), undecodable, or
      predicted while a reference picture is missing (frame_num gap, or any since an earlier loss) makes it call
      `on_keyframe_request` once and set `keyframe_needed` until an intra KEYFRAME decodes; it shows no frame
      rendered from such a picture.
    - A slot filled before a loss may have been refilled by a lost KEYFRAME: a USE_SLOT to it is trusted only
      after a RESYNC names the keyframe it holds.
    So every frame it shows is the loss-free decoder's frame or a repeat of an earlier one (`ShownFrame.source`).
    """

    def __init__(self, model, header: StreamHeader, options: DecoderOptions = DecoderOptions(),
                 on_keyframe_request: Callable[[], None] | None = None, max_gap: int = 250):
        self.decoder = Decoder(model, header, options)
        self.header = header
        self.on_keyframe_request = on_keyframe_request
        self.max_gap = max_gap  # longest run of missing frame indices filled with concealed frames
        self.stats = ConcealmentStats()
        self.keyframe_needed = False  # a keyframe was lost: waiting for an intra one (asked for once)
        self._epoch = 0  # losses so far: a KEYFRAME may hide in each
        self._vouched: dict[int, int] = {}  # slot -> loss epoch when its picture was last confirmed as the sender's
        self._chain = False  # the motion state is the sender's
        self._active_ok = False  # the active slot is the sender's and holds its picture
        # H.264's frame_num tells a lost reference picture from lost motion; HEVC keyframes (spec §5.9) have no
        # such counter here, so any loss counts as a lost reference until the next IDR (safe, more IDR requests).
        self._references = ReferenceTracker() if header.keyframe_codec == KeyframeCodec.H264 else None
        self._h264_ok = False  # the keyframe decoder holds every reference picture since its last IDR
        self._held: dict[str, np.ndarray] | None = None  # integers of the last motion decoded (None after a keyframe)
        self._last: ShownFrame | None = None
        self._shown_slot: int | None = None  # the slot the last shown frame came from
        self._next_index: int | None = None  # the frame index shown next

    # -- input ------------------------------------------------------------------------------------------------

    def handle(self, event) -> list[ShownFrame]:
        """The frames a transport event (bitstream.transport.Depacketizer's) completes."""
        from bitstream.transport import LossEvent, PacketEvent, ResyncEvent, UnitDropEvent

        if isinstance(event, PacketEvent):
            return self.push(event.packet, event.frame_index, event.discontinuity)
        if isinstance(event, UnitDropEvent):
            self.lost(keyframe=event.packet_type == PacketType.KEYFRAME)
        elif isinstance(event, LossEvent):
            self.lost()
        elif isinstance(event, ResyncEvent):
            self.restart()
        return []  # HeaderEvent, DropEvent: nothing in the stream is known lost by them alone

    def push(self, packet, frame_index: int | None = None, discontinuity: bool = False) -> list[ShownFrame]:
        """Frames completed by `packet`: concealed ones for missing indices before it, then its own.

        `frame_index`: the transport's (the timestamp), default the packet's own; `discontinuity`: something was
        lost since the last KEYFRAME or MOTION packet delivered.
        """
        if discontinuity:
            self.lost()
        if isinstance(packet, UseSlotPacket):
            self._use_slot(packet.slot)
            return []
        if isinstance(packet, EndPacket):  # the stream's frame count: frames lost at its end are concealed too
            return self._gap(packet.frame_count) if self._next_index is not None else []
        if not isinstance(packet, (KeyframePacket, MotionPacket)):
            return []  # NOTE and unknown types carry no frame
        index = packet.frame_index if frame_index is None else frame_index
        late = self._next_index is not None and index < self._next_index
        frames = [] if late else self._gap(index)
        if isinstance(packet, KeyframePacket):
            shown = self._keyframe(packet, index)
        else:
            shown = self._motion(packet, index)
        if late:  # a frame index from before the last one shown (a restarted sender): state only
            self.stats.unshown += 1
            return []
        return frames + [self._show(shown)] if shown is not None else frames

    def lost(self, keyframe: bool = False) -> None:
        """Something of the stream was lost (a KEYFRAME, when `keyframe`): motion is concealed until a RESYNC."""
        self._epoch += 1
        self._chain = False
        if self._references is None:
            self._h264_ok = False
        if keyframe:
            self._keyframe_lost(None)

    def restart(self) -> None:
        """The sender restarted: its frame indices may start again, so no slot can be trusted; ask for an IDR."""
        self.stats.restarts += 1
        for slot in self.decoder.filled_slots:
            self.decoder.forget_slot(slot)
        self._vouched.clear()
        self._next_index = None
        self.lost()
        self._active_ok = self._h264_ok = False
        self._reset_references()
        self._request()

    # -- packets ----------------------------------------------------------------------------------------------

    def _keyframe(self, packet: KeyframePacket, index: int) -> ShownFrame | None:
        intra = packet.intra
        # An IDR picture needs no earlier one; a predicted one needs every reference since its IDR.
        follows = self._references is None or self._references.follows(packet.annexb)
        usable = intra or (self._h264_ok and follows)
        image = None
        if usable:
            try:
                image = self.decoder.decode_keyframe(packet)
            except BitstreamError:
                usable = False
        if not usable:
            self._keyframe_lost(packet.slot)
            return self._conceal(index)
        self._h264_ok = True
        if intra:
            self.keyframe_needed = False
        self._vouched[packet.slot] = self._epoch
        self._chain = self._active_ok = True
        self._held = None
        self._shown_slot = packet.slot
        self.stats.decoded += 1
        return ShownFrame(index, image, FrameSource.KEYFRAME, packet.frame_index)

    def _motion(self, packet: MotionPacket, index: int) -> ShownFrame | None:
        restored = False
        if packet.resync:
            slot = self.decoder.slot_holding(packet.keyframe)
            if slot is None:  # the keyframe it is rendered from never arrived, or did not decode
                self._keyframe_lost(None)
            else:
                self.decoder.activate(slot)
                self._vouched[slot] = self._epoch
                restored = not (self._chain and self._active_ok)
                self._chain = self._active_ok = True
        if not (self._chain and self._active_ok):
            self.stats.motion_skipped += 1
            return self._conceal(index)
        try:
            ints = self.decoder.decode_motion(packet)
        except BitstreamError:  # a payload that does not decode: as if it were lost
            self.lost()
            return self._conceal(index)
        self._held = ints
        self.stats.resyncs += restored
        self.stats.decoded += 1
        self._shown_slot = slot = self.decoder.slot
        return ShownFrame(index, self.decoder.render(ints), FrameSource.MOTION, self.decoder.keyframe_in(slot))

    def _use_slot(self, slot: int) -> None:
        if self.decoder.keyframe_in(slot) is not None and self._vouched.get(slot) == self._epoch:
            self.decoder.activate(slot)
            self._active_ok = True
        else:  # a lost KEYFRAME may have refilled it: motion waits for a RESYNC that names its keyframe
            self._active_ok = False

    def _keyframe_lost(self, slot: int | None) -> None:
        """A KEYFRAME (of `slot`, when known) is lost or unusable: ask for an intra one, trust nothing that needs it."""
        self.stats.keyframes_lost += 1
        if slot is not None:
            self.decoder.forget_slot(slot)
            self._vouched.pop(slot, None)
        self._chain = self._active_ok = False
        self._h264_ok = False  # it may be a reference picture of the predicted keyframes after it
        self._reset_references()
        self._request()

    def _reset_references(self) -> None:
        if self._references is not None:
            self._references.reset()

    def _request(self) -> None:
        """Ask once for an intra keyframe; `keyframe_needed` stays set until one decodes (the caller may repeat the
        request while it waits, spec §12.7)."""
        if not self.keyframe_needed:
            self.keyframe_needed = True
            self.stats.keyframe_requests += 1
            if self.on_keyframe_request is not None:
                self.on_keyframe_request()

    # -- output -----------------------------------------------------------------------------------------------

    def _gap(self, index: int) -> list[ShownFrame]:
        """Concealed frames for the indices between the last one shown and `index` (the packets were lost)."""
        if self._next_index is None:
            return []
        missing = index - self._next_index
        if missing > self.max_gap:
            self.stats.unshown += missing
            self._next_index = index
            return []
        return [self._show(frame) for i in range(self._next_index, index)
                if (frame := self._conceal(i)) is not None]

    def _conceal(self, index: int) -> ShownFrame | None:
        """The frame rendered from the last motion held: the last frame shown, unless a trusted slot switch since
        calls for that motion rendered from the new slot."""
        if self._last is None:
            self.stats.unshown += 1
            return None
        slot = self.decoder.slot
        if self._active_ok and self._held is not None and slot is not None and slot != self._shown_slot:
            self._shown_slot = slot
            return ShownFrame(index, self.decoder.render(self._held), FrameSource.CONCEALED,
                              self.decoder.keyframe_in(slot))
        return ShownFrame(index, self._last.image, FrameSource.CONCEALED, self._last.picture)

    def _show(self, frame: ShownFrame) -> ShownFrame:
        self.stats.shown += 1
        self.stats.concealed += frame.source == FrameSource.CONCEALED
        self._last = frame
        self._next_index = frame.index + 1
        return frame


def relative_motion(kind: MotionKind, source: dict[str, torch.Tensor], driving: dict[str, torch.Tensor],
                    first: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cross-identity motion: the source's own motion plus the driving video's change since its first frame."""
    if kind == MotionKind.FOMM:
        from .models.fomm.model import relative_motion as fomm_relative

        return fomm_relative(source, driving, first)
    # fv2v groups are pose angles, translation and expression deltas: their changes add.
    return {name: source[name] + (driving[name] - first[name]) for name in source}


class Animator:
    """Animates one still portrait with the motion of driving frames pushed one by one."""

    def __init__(self, model, source: np.ndarray, size: int):
        self.model = model
        self.size = size
        self.device = model_device(model)
        with torch.inference_mode():
            image = frame_to_tensor(source, self.device)
            self.state = model.analyze_keyframe(image)
            self.source_motion = model.estimate_motion(image)
        self.first: dict[str, torch.Tensor] | None = None

    @torch.inference_mode()
    def push(self, driving: np.ndarray) -> np.ndarray:
        """The source portrait moved as `driving` moved since the first driving frame."""
        motion = self.model.estimate_motion(frame_to_tensor(driving, self.device))
        if self.first is None:
            self.first = motion
        moved = relative_motion(self.model.kind, self.source_motion, motion, self.first)
        return tensor_to_frame(self.model.render(self.state, moved), self.size, self.size)
