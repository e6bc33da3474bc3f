"""Streaming decoder: packets in, RGB frames out; the encoder renders through the same functions."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from bitstream import (BitstreamError, KeyframePacket, MotionDecoder, MotionKind, MotionPacket, StreamHeader,
                       UseSlotPacket, dequantize)

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


def apply_free_view(motion: dict[str, torch.Tensor], options: DecoderOptions) -> dict[str, torch.Tensor]:
    """A copy of fv2v `motion` whose rotation (yaw, pitch, roll in degrees) is offset or zeroed."""
    rotation = torch.zeros_like(motion["rotation"]) if options.frontalize else motion["rotation"].clone()
    rotation += torch.tensor([options.yaw, options.pitch, options.roll], dtype=rotation.dtype,
                             device=rotation.device)
    return {**motion, "rotation": rotation}


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
        self._keyframes = KeyframeDecoder()
        self._slots: dict[int, _Slot] = {}
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
            try:
                picture = self._keyframes.decode(packet.annexb)
            except H264Error as exc:
                raise BitstreamError(f"keyframe {packet.frame_index}: {exc}", offset) from None
            self._last = self._keyframe(picture, packet.slot)
        else:
            if self.slot is None:
                raise BitstreamError(f"motion packet for frame {packet.frame_index} before any keyframe", offset)
            self._last = self.render(self.motion_decoder.decode(packet.payload, offset))
        return self._last

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
        if self.options.free_view:
            motion = apply_free_view(motion, self.options)
        if state is None:
            state = self.state_of(self.slot if slot is None else slot)
        return tensor_to_frame(self.model.render(state, motion), self.header.width, self.header.height)


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
