"""Streaming encoder (closed loop, adaptive keyframe refresh and keypoint count) and clip rate control."""
from __future__ import annotations

import io
import math
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from enum import Enum
from fractions import Fraction
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from bitstream import (FileStreamWriter, KeyframePacket, MotionEncoder, MotionPacket, NotePacket, StreamHeader,
                       StreamWriter, SymbolError, UseSlotPacket, default_header, quantize, scaled_params)
from bitstream.constants import MAX_REF_SLOTS, NOTE_MINOR, KeyframeCodec
from bitstream.packets import ReasonNotes

from . import __version__
from .coding_defaults import (DEFAULT_IDR_PERIOD, DEFAULT_KEYFRAME_CODEC, DEFAULT_KEYFRAME_QP, DEFAULT_KP_THRESHOLD,
                              DEFAULT_MAX_GOP, DEFAULT_MOTION_STEP, DEFAULT_PREDICT_KEYFRAMES, DEFAULT_REFRESH_DB,
                              DEFAULT_REFS, DEFAULT_RESYNC_PERIOD, DEFAULT_REUSE_MARGIN_DB, DEFAULT_SWITCH_MARGIN_DB,
                              KEYFRAME_CODEC_NAMES, MOTION_STEP_MAX, MOTION_STEP_MIN, SearchConfig)
from .decoder import Decoder, frame_to_tensor, model_device
from .errors import InputError, RateControlError
from .h264 import MAX_IDR_QP_DROP, QP_MAX, QP_MIN, KeyframeEncoder, decode_intra, encode_intra
from .motion_search import MotionSearch
Packet = KeyframePacket | MotionPacket | UseSlotPacket


class KeyframeReason(str, Enum):
    """Why a frame was coded as a keyframe."""

    FIRST = "first"
    QUALITY = "quality"  # the decoder's rendering fell below --refresh-threshold
    MAX_GOP = "max_gop"
    REQUEST = "request"  # a receiver asked for one (Encoder.request_keyframe, answering a PLI): always an IDR


@dataclass(frozen=True)
class EncoderConfig:
    """Stream geometry and coding decisions.

    `refresh_threshold` is in dB of luma PSNR at the model's analysis size between the input
    frame and the frame the decoder will show (0 turns quality refresh off). PSNR at 256² costs
    well under a millisecond on the CPU, which a per-frame decision needs; LPIPS would cost ~100 ms.
    """

    width: int
    height: int
    fps: Fraction
    keyframe_qp: int = DEFAULT_KEYFRAME_QP
    refresh_threshold: float = DEFAULT_REFRESH_DB
    # QP of the intra keyframes, where decoding can start (None: keyframe_qp). --quality sets it below the
    # predicted ones' at low quality: every frame rendered from the first keyframe inherits its picture.
    idr_qp: int | None = None
    max_gop: int = DEFAULT_MAX_GOP
    kp_threshold: int = DEFAULT_KP_THRESHOLD  # -1: every keypoint is sent (coding_defaults says why)
    frame_count: int = 0
    search: SearchConfig | None = None  # motion search against the true frame (the slow preset)
    # Reference slots: keyframes the decoder keeps. More than 1 writes a version 2.0 stream with intra keyframes;
    # with predicted keyframes the stream is 3.0 whatever the count.
    refs: int = DEFAULT_REFS
    # Keyframes as H.264 P pictures predicted from earlier keyframes (a version 3.0 stream), except the first
    # and any that comes idr_period or more frames after the last IDR: those are IDR, where decoding can start.
    predict_keyframes: bool = DEFAULT_PREDICT_KEYFRAMES
    idr_period: int = DEFAULT_IDR_PERIOD
    reuse_margin: float | None = DEFAULT_REUSE_MARGIN_DB  # with refs > 1 (coding_defaults explains)
    # With refs > 1, a motion frame is shown from another filled slot that renders it more than this many dB
    # better than the active one (None: only from the anchor, as in bitstream 2.0's first encoder). It costs
    # a render per other filled slot and frame.
    switch_margin: float | None = DEFAULT_SWITCH_MARGIN_DB
    # RESYNC packets (a version 4.0 stream): the first motion packet after each keyframe and every resync_period-th
    # after it are coded against zeros, naming their keyframe, so that a receiver that lost motion resumes there
    # (0: none; coding_defaults says why that is the default and 25 the live sender's).
    resync_period: int = DEFAULT_RESYNC_PERIOD
    # Landmark refresh: px at 512² (LANDMARK_PX_SCALE) of the mean distance between the model's landmark detector's
    # points on the frame the decoder will show and on the input, above which a motion frame is coded even when its
    # PSNR proxy clears refresh_threshold (0: off; needs refresh on, and is skipped for models without a detector).
    # The PSNR proxy does not see lips a few pixels out of place; this does (codec/quality.py sets it).
    refresh_landmarks: float = 0.0
    # HEVC keyframes write a version 5.0 stream (spec §5.9); H.264 ones the versions above.
    keyframe_codec: KeyframeCodec = DEFAULT_KEYFRAME_CODEC
    # Motion quantisation steps as a multiple of the bitstream's defaults, written in the header (coding_defaults).
    motion_step: float = DEFAULT_MOTION_STEP
    note: dict | None = None  # informative NOTE members written after the header, e.g. source size and crop

    def __post_init__(self):
        object.__setattr__(self, "fps", Fraction(self.fps).limit_denominator(1001))
        try:
            object.__setattr__(self, "keyframe_codec", KeyframeCodec(self.keyframe_codec))
        except ValueError:
            raise InputError(f"--keyframe-codec {self.keyframe_codec!r} is not one of "
                             f"{', '.join(KEYFRAME_CODEC_NAMES)}") from None
        if self.width < 1 or self.height < 1:
            raise InputError(f"frame size {self.width}x{self.height} is empty")
        if self.fps <= 0:
            raise InputError(f"fps {self.fps} must be positive")
        if not QP_MIN <= self.keyframe_qp <= QP_MAX:
            raise InputError(f"--keyframe-qp {self.keyframe_qp} outside {QP_MIN}..{QP_MAX}")
        if self.idr_qp is not None and not max(QP_MIN, self.keyframe_qp - MAX_IDR_QP_DROP) <= self.idr_qp <= QP_MAX:
            raise InputError(f"IDR QP {self.idr_qp} outside {max(QP_MIN, self.keyframe_qp - MAX_IDR_QP_DROP)}..{QP_MAX} "
                             f"(at most {MAX_IDR_QP_DROP} below the keyframe QP {self.keyframe_qp})")
        if not (math.isfinite(self.refresh_threshold) and self.refresh_threshold >= 0):
            raise InputError(f"--refresh-threshold {self.refresh_threshold} must be >= 0 dB (0 = off)")
        if not (math.isfinite(self.refresh_landmarks) and self.refresh_landmarks >= 0):
            raise InputError(f"--refresh-landmarks {self.refresh_landmarks} must be >= 0 px (0 = off)")
        if self.refresh_landmarks and not self.refresh_threshold:
            raise InputError("--refresh-landmarks needs the closed loop: a refresh threshold above 0 dB")
        if self.max_gop < 1:
            raise InputError(f"--max-gop {self.max_gop} must be >= 1")
        if not MOTION_STEP_MIN <= self.motion_step <= MOTION_STEP_MAX:
            raise InputError(f"--motion-step {self.motion_step} outside {MOTION_STEP_MIN:g}..{MOTION_STEP_MAX:g}")
        if self.idr_period < 1:
            raise InputError(f"--idr-period {self.idr_period} must be >= 1")
        if self.resync_period < 0:
            raise InputError(f"--resync-period {self.resync_period} must be >= 0 (0: no RESYNC packets)")
        for option, margin in (("--reuse-margin", self.reuse_margin), ("--switch-margin", self.switch_margin)):
            if margin is not None and not (math.isfinite(margin) and margin >= 0):
                raise InputError(f"{option} {margin} must be >= 0 dB")
        if self.kp_threshold < -1:
            raise InputError(f"--kp-threshold {self.kp_threshold} must be >= -1 (-1 sends every keypoint)")
        if not 1 <= self.refs <= MAX_REF_SLOTS:
            raise InputError(f"--refs {self.refs} outside 1..{MAX_REF_SLOTS}")
        try:
            stream_note(self)  # refused now rather than when the stream is written, after the whole encode
        except SymbolError as exc:
            raise InputError(f"encoder note: {exc}") from None


@dataclass
class EncodeStats:
    """What the encoder decided and spent, for the summary and for rate control."""

    frames: int = 0
    keyframe_log: dict[int, KeyframeReason] = field(default_factory=dict)  # frame index -> why it is a keyframe
    keyframe_bytes: int = 0  # H.264 access units
    motion_bytes: int = 0  # entropy-coded payloads as sent (adaptive keypoint count)
    unmasked_motion_bytes: int = 0  # the same frames with every keypoint sent
    frame_ms: list[float] = field(default_factory=list)
    proxy_db: list[float] = field(default_factory=list)  # refresh proxy of every frame (with refresh on)
    slot_switches: int = 0  # USE_SLOT packets: to a reused slot, or to one that renders the frame better
    slot_reuses: int = 0  # refreshes answered by an older keyframe instead of a new one
    search_costs: list[tuple[float, float]] = field(default_factory=list)  # (estimate's J, chosen J) per frame
    resync_packets: int = 0  # motion packets coded as RESYNC (against zeros)
    resync_bytes: int = 0  # their payloads, included in motion_bytes
    landmark_refreshes: int = 0  # keyframes coded because the landmarks were off, the PSNR proxy being clear

    @property
    def keyframe_reasons(self) -> Counter:
        return Counter(self.keyframe_log.values())

    @property
    def keyframes(self) -> int:
        return len(self.keyframe_log)

    @property
    def searched(self) -> int:
        """Motion frames whose symbols the search changed (it keeps a result only when it costs less)."""
        return sum(chosen < start for start, chosen in self.search_costs)

    @property
    def motion_proxy_db(self) -> list[float]:
        """The refresh proxy of the motion frames (proxy_db holds one value per frame, in order)."""
        return [db for index, db in enumerate(self.proxy_db) if index not in self.keyframe_log]


def luma_psnr(decoded: np.ndarray, original: np.ndarray, size: int) -> float:
    """PSNR in dB of BT.601 luma, both frames area-resized to at most `size`² (the refresh proxy)."""
    weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    lumas = []
    for frame in (decoded, original):
        luma = (frame_to_tensor(frame, torch.device("cpu")) * weights).sum(1, keepdim=True)
        if luma.shape[-1] > size or luma.shape[-2] > size:
            luma = F.interpolate(luma, size=(min(size, luma.shape[-2]), min(size, luma.shape[-1])), mode="area")
        lumas.append(luma)
    mse = float(torch.mean((lumas[0] - lumas[1]) ** 2))
    return 100.0 if mse <= 1e-10 else 10.0 * math.log10(1.0 / mse)


# Landmark errors are in pixels of a 512² frame (the benchmark's size, where AKD is measured), whatever the size
# coded: the detector's points span [-1, 1], half a side.
LANDMARK_PX_SCALE = 256.0


@torch.inference_mode()
def landmark_error(model, decoded: np.ndarray, motion: dict[str, torch.Tensor]) -> float | None:
    """Mean distance (px at 512²) between the landmark points the model detects on `decoded` and those of the input
    frame it estimated `motion` from; None for a model without a landmark detector."""
    source = model.motion_landmarks(motion)
    if source is None:
        return None
    shown = model.landmark_points(frame_to_tensor(decoded, model_device(model)))
    return float((shown - source).norm(dim=-1).mean()) * LANDMARK_PX_SCALE


class Encoder:
    """Turns frames into packets; with quality refresh on, reconstructs every frame through a Decoder."""

    def __init__(self, model, config: EncoderConfig, model_id: bytes):
        self.model = model
        self.config = config
        self.header = default_header(model.kind, config.width, config.height, config.fps, model_id,
                                     num_keypoints=model.num_keypoints, frame_count=config.frame_count,
                                     ref_slots=config.refs, predicted_keyframes=config.predict_keyframes,
                                     resync=config.resync_period > 0, keyframe_codec=config.keyframe_codec,
                                     params=scaled_params(model.kind, config.motion_step))
        self.device = model_device(model)
        self._decoder = Decoder(model, self.header)
        self._motion = MotionEncoder(self.header)
        # Runs beside the real coder with every keypoint sent, to measure what masking saves.
        self._unmasked = MotionEncoder(self.header)
        self._keyframes = KeyframeEncoder(config.keyframe_qp, config.predict_keyframes, config.idr_qp,
                                          config.keyframe_codec)
        self._search = MotionSearch(model, self.header, config.search) if config.search else None
        # The reconstruction serves the refresh decision and the search; without either the encoder
        # is open loop and runs H (+Δ) alone, an order of magnitude faster on a CPU.
        self._closed_loop = bool(config.refresh_threshold) or self._search is not None
        self._since_keyframe = 0
        self._last_idr = 0  # frame index of the last IDR keyframe
        self._slot = 0  # the active reference slot: the one the decoder renders from
        # The slot whose rendering decides refreshes: the last keyframe's, or the one reused in its place.
        # Switching to a better slot for one frame must not postpone a keyframe, or it would reuse slots
        # that --reuse-margin refuses.
        self._anchor = 0
        self._last_use: dict[int, int] = {}  # filled slot -> last frame coded from it, for LRU eviction
        self._slot_keyframes: dict[int, int] = {}  # filled slot -> frame index of its keyframe (a RESYNC names it)
        self._motion_count = 0  # motion packets since the last keyframe
        self._keyframe_requested = False
        self.stats = EncodeStats()

    def request_keyframe(self) -> None:
        """Code the next frame as an intra keyframe (an IDR picture), answering a receiver's keyframe request.

        The slots filled before it are not shown from again: a receiver that lost a keyframe cannot vouch for
        them (spec §12.7, §12.8).
        """
        self._keyframe_requested = True

    @torch.inference_mode()
    def push(self, frame: np.ndarray) -> list[Packet]:
        """The packet(s) coding `frame`, an (height, width, 3) uint8 RGB array: the frame's own packet comes last."""
        start = time.perf_counter()
        self._check(frame)
        index = self.stats.frames
        if index == 0:
            packets = [self._keyframe(frame, index, KeyframeReason.FIRST)]
        elif self._keyframe_requested:
            packets = [self._keyframe(frame, index, KeyframeReason.REQUEST)]
        elif self._since_keyframe >= self.config.max_gop:
            packets = [self._keyframe(frame, index, KeyframeReason.MAX_GOP)]
        else:
            packets = self._motion_or_refresh(frame, index)
        self._last_use[self._slot] = index
        self.stats.frames += 1
        self.stats.frame_ms.append((time.perf_counter() - start) * 1000.0)
        return packets

    def flush(self) -> list[Packet]:
        """Packets still held back at the end of the input: none, as no decision looks ahead."""
        return []

    def _check(self, frame: np.ndarray) -> None:
        want = (self.config.height, self.config.width, 3)
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.shape != want:
            got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
            raise InputError(f"frame {self.stats.frames} is {got}, expected uint8 {want}")

    def _free_slot(self) -> int:
        """The slot a new keyframe fills: an empty one, else the least recently used."""
        empty = [slot for slot in range(self.config.refs) if slot not in self._last_use]
        return empty[0] if empty else min(self._last_use, key=self._last_use.__getitem__)

    def _keyframe(self, frame: np.ndarray, index: int, reason: KeyframeReason) -> KeyframePacket:
        if reason == KeyframeReason.REQUEST:
            self._keyframe_requested = False
            for slot in self._decoder.filled_slots:
                self._decoder.forget_slot(slot)
            self._last_use.clear()
            self._slot_keyframes.clear()
        self._slot = self._anchor = self._free_slot()
        intra = index == 0 or reason == KeyframeReason.REQUEST or index - self._last_idr >= self.config.idr_period
        self._last_idr = index if intra else self._last_idr
        packet = KeyframePacket(index, self._keyframes.encode(frame, intra), self._slot, self.config.keyframe_codec)
        if self._closed_loop:
            # Closed loop: later frames are rendered from the keyframe as decoded, not as input.
            decoded = self._decoder.push(packet)[0]
            if self.config.refresh_threshold:
                self.stats.proxy_db.append(luma_psnr(decoded, frame, self.model.analysis_size))
            if self._search is not None:
                self._search.reset(self._decoder.state)
        self._motion.reset()
        self._unmasked.reset()
        self._since_keyframe = 1
        self._motion_count = 0
        self._slot_keyframes[self._slot] = index
        self.stats.keyframe_log[index] = reason
        self.stats.keyframe_bytes += len(packet.annexb)
        return packet

    def _motion_or_refresh(self, frame: np.ndarray, index: int) -> list[Packet]:
        period = self.config.resync_period
        resync = period > 0 and self._motion_count % period == 0
        if resync:  # coded against zeros, like the first packet after a keyframe (spec §4.6)
            self._motion.reset()
            self._unmasked.reset()
        image = frame_to_tensor(frame, self.device)
        motion = self.model.estimate_motion(image)
        if self._search is None:
            ints = quantize({k: v.detach().cpu().numpy() for k, v in motion.items()}, self.header)
        else:
            ints = self._searched(motion, image)
        payload, held = self._motion.encode(ints, self.config.kp_threshold)
        unmasked_payload, _ = self._unmasked.encode(ints, -1)
        packets: list[Packet] = [MotionPacket(index, payload, self._slot_keyframes[self._slot] if resync else None)]
        if self.config.refresh_threshold:
            shown = self._decoder.push(packets[0])[0]
            proxies = {self._slot: luma_psnr(shown, frame, self.model.analysis_size)}
            if self._off_landmarks(proxies[self._slot], shown, motion):
                self.stats.landmark_refreshes += 1
                return [self._keyframe(frame, index, KeyframeReason.QUALITY)]
            if self.config.switch_margin is not None or proxies[self._anchor] < self.config.refresh_threshold:
                proxies.update(self._other_proxies(held, frame))
            if proxies[self._anchor] < self.config.refresh_threshold:
                slot = self._reusable_slot(proxies, held, frame)
                if slot is None:
                    return [self._keyframe(frame, index, KeyframeReason.QUALITY)]
                self._anchor = slot
                self.stats.slot_reuses += 1
            slot = self._shown_slot(proxies)
            if slot != self._slot:
                # A switch leaves the motion state alone (spec §5.6): the payload is the same from any slot.
                packets.insert(0, self._switch(slot))
                if resync:  # a RESYNC names the keyframe of the slot it is rendered from
                    packets[-1] = replace(packets[-1], keyframe=self._slot_keyframes[slot])
            self.stats.proxy_db.append(proxies[slot])
        elif self._search is not None:
            self._decoder.push(packets[0])  # keeps the decoder's motion state in step with the stream
        self._since_keyframe += 1
        self._motion_count += 1
        if resync:
            self.stats.resync_packets += 1
            self.stats.resync_bytes += len(payload)
        self.stats.motion_bytes += len(payload)
        self.stats.unmasked_motion_bytes += len(unmasked_payload)
        return packets

    def _off_landmarks(self, proxy: float, shown: np.ndarray, motion: dict[str, torch.Tensor]) -> bool:
        """Whether the frame rendered from the active slot clears the PSNR proxy with its landmarks too far off."""
        if not self.config.refresh_landmarks or proxy < self.config.refresh_threshold:
            return False
        error = landmark_error(self.model, shown, motion)
        return error is not None and error > self.config.refresh_landmarks

    def _other_proxies(self, held: dict[str, np.ndarray], frame: np.ndarray) -> dict[int, float]:
        """Refresh proxy of the decoder's integers `held` rendered from each filled slot but the active one."""
        size = self.model.analysis_size
        return {slot: luma_psnr(self._decoder.render(held, slot), frame, size)
                for slot in self._decoder.filled_slots if slot != self._slot}

    def _reusable_slot(self, proxies: dict[int, float], held: dict[str, np.ndarray], frame: np.ndarray) -> int | None:
        """The slot that replaces a failing anchor instead of a new keyframe, if one clears the bar."""
        others = {slot: db for slot, db in proxies.items() if slot != self._anchor}
        slot = max(others, key=others.__getitem__, default=None)
        if slot is None or others[slot] < self.config.refresh_threshold or not self._as_good_as_new(
                others[slot], held, frame):
            return None
        return slot

    def _shown_slot(self, proxies: dict[int, float]) -> int:
        """The slot this frame is rendered from: the anchor, or one that beats the active slot by the margin."""
        if self.config.switch_margin is None:
            return self._anchor
        best = max(proxies, key=proxies.__getitem__)
        active = proxies[self._slot]
        if active < self.config.refresh_threshold or proxies[best] > active + self.config.switch_margin:
            return best
        return self._slot

    def _as_good_as_new(self, proxy: float, held: dict[str, np.ndarray], frame: np.ndarray) -> bool:
        """Whether an older slot's `proxy` is within reuse_margin dB of the frame rendered from a keyframe of it."""
        if self.config.reuse_margin is None:
            return True
        # Through the keyframe codec at the keyframe QP, as a new keyframe would be: a true return to a slot's
        # picture ties.
        codec = self.config.keyframe_codec
        picture = decode_intra(encode_intra(frame, self.config.keyframe_qp, codec), codec)
        own = self.model.analyze_keyframe(frame_to_tensor(picture, self.device))
        fresh = luma_psnr(self._decoder.render(held, state=own), frame, self.model.analysis_size)
        return proxy >= fresh - self.config.reuse_margin

    def _switch(self, slot: int) -> UseSlotPacket:
        """The USE_SLOT that makes `slot` active, for the decoder and the search as for the stream."""
        packet = UseSlotPacket(slot)
        self._decoder.push(packet)
        self._slot = slot
        if self._search is not None:
            self._search.reset(self._decoder.state)
        self.stats.slot_switches += 1
        return packet

    def _searched(self, motion: dict[str, torch.Tensor], image: torch.Tensor) -> dict[str, np.ndarray]:
        """Symbols from the motion search, judged by the decoder's own rendering of what it will hold."""
        def shown(ints: dict[str, np.ndarray]) -> torch.Tensor:
            held = self._motion.reconstruct(ints, self.config.kp_threshold)
            return frame_to_tensor(self._decoder.render(held), self.device)

        result = self._search.refine(motion, image, self._motion.state, shown)
        self.stats.search_costs.append((result.start_cost, result.cost))
        return result.ints


@dataclass
class EncodedClip:
    """A whole clip's packets with the header (frame count filled in) and the encoder's stats."""

    header: StreamHeader
    packets: list[Packet]
    stats: EncodeStats
    config: EncoderConfig
    keyframe_inputs: dict[int, np.ndarray]  # input frames at keyframes, kept only for rate control

    def to_bytes(self, packets: Iterable[Packet] | None = None) -> bytes:
        """The serialised stream (with `packets` in place of the clip's own when given)."""
        sink = io.BytesIO()
        writer = StreamWriter(sink, self.header, minor=NOTE_MINOR)
        self._write_packets(writer, self.packets if packets is None else packets)
        writer.close()
        return sink.getvalue()

    def write(self, path, force: bool = False) -> None:
        """Write the stream to `path` through a temporary file renamed only when complete."""
        with FileStreamWriter(path, self.header, force=force, minor=NOTE_MINOR) as writer:
            self._write_packets(writer, self.packets)

    def _write_packets(self, writer: StreamWriter, packets: Iterable[Packet]) -> None:
        """The stream's NOTE, then `packets` with a NOTE of the reason before each keyframe whose reason differs
        from the last one's (spec §4.4).

        Both kinds of NOTE are known when their place in the stream comes, so a live sender writes them too.
        """
        writer.write(stream_note(self.config))
        reasons = ReasonNotes()
        for packet in packets:
            if isinstance(packet, KeyframePacket):
                note = reasons.before(self.stats.keyframe_log[packet.frame_index].value)
                if note is not None:
                    writer.write(note)
            writer.write(packet)

    def kbps(self, size: int | None = None) -> float:
        """Bit rate of the stream (of `size` bytes when given) over the clip's duration."""
        size = len(self.to_bytes()) if size is None else size
        return size * 8 * float(self.config.fps) / max(1, self.stats.frames) / 1000.0


def stream_note(config: EncoderConfig) -> NotePacket:
    """The NOTE written after the header: which fvc wrote the stream, plus the config's `note` members."""
    return NotePacket.of({"writer": f"fvc {__version__}", **(config.note or {})})


def encode_clip(frames: Iterable[np.ndarray], model, config: EncoderConfig, model_id: bytes,
                on_frame: Callable[[EncodeStats], None] | None = None,
                keep_keyframe_inputs: bool = False) -> EncodedClip:
    """Encode every frame of `frames`; raises InputError for an empty clip."""
    encoder = Encoder(model, config, model_id)
    packets: list[Packet] = []
    kept: dict[int, np.ndarray] = {}
    for frame in frames:
        new = encoder.push(frame)
        packets += new
        if keep_keyframe_inputs and isinstance(new[-1], KeyframePacket):
            kept[new[-1].frame_index] = frame
        if on_frame is not None:
            on_frame(encoder.stats)
    packets += encoder.flush()
    if not packets:
        raise InputError("the input has no video frames")
    header = replace(encoder.header, frame_count=encoder.stats.frames)
    return EncodedClip(header, packets, encoder.stats, config, kept)


@dataclass(frozen=True)
class RateChoice:
    """What --kbps rate control settled on, what it cost, and the reachable range when it missed."""

    target_kbps: float
    keyframe_qp: int
    kbps: float
    full_passes: int
    fast_passes: int
    pass_seconds: tuple[float, ...]  # wall time of each full (closed-loop) pass
    decided_at_qp: int  # keyframe positions come from the full pass at this QP
    reachable: tuple[float, float] | None = None  # (lowest, highest) kbps when the target was out of reach

    @property
    def missed(self) -> bool:
        return self.reachable is not None


class _QpRateModel:
    """Clip rate as a function of keyframe QP with the clip's keyframes (positions, intra or predicted) fixed.

    Motion payloads do not depend on the keyframe QP, so a fast pass re-encodes only the
    keyframes with H.264 (milliseconds each) instead of running the networks again.
    """

    def __init__(self, clip: EncodedClip, cache: dict[tuple, dict[int, bytes]]):
        self.clip = clip
        self.cache = cache
        self.passes = 0
        self._keyframes = tuple((p.frame_index, p.intra) for p in clip.packets if isinstance(p, KeyframePacket))

    def _packets(self, qp: int) -> list[Packet]:
        config = self.clip.config
        key = (qp, config.predict_keyframes, config.keyframe_codec, self._keyframes)
        if key not in self.cache:
            coder = KeyframeEncoder(qp, config.predict_keyframes, codec=config.keyframe_codec)
            self.cache[key] = {index: coder.encode(self.clip.keyframe_inputs[index], intra)
                               for index, intra in self._keyframes}
        return [replace(p, annexb=self.cache[key][p.frame_index]) if isinstance(p, KeyframePacket) else p
                for p in self.clip.packets]

    def kbps(self, qp: int) -> float:
        self.passes += 1
        return self.clip.kbps(len(self.clip.to_bytes(self._packets(qp))))

    def clip_at(self, qp: int) -> EncodedClip:
        """The clip with its keyframes re-coded at `qp` and every other packet unchanged."""
        packets = self._packets(qp)
        keyframe_bytes = sum(len(p.annexb) for p in packets if isinstance(p, KeyframePacket))
        stats = replace(self.clip.stats, keyframe_bytes=keyframe_bytes)
        return replace(self.clip, packets=packets, stats=stats, config=replace(self.clip.config, keyframe_qp=qp))

    def best_qp(self, target: float) -> int:
        """The QP whose rate is nearest `target` (in ratio), by bisection on a decreasing curve."""
        if self.kbps(QP_MAX) >= target:
            return QP_MAX
        if self.kbps(QP_MIN) <= target:
            return QP_MIN
        lo, hi = QP_MIN, QP_MAX  # rate(lo) > target >= rate(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.kbps(mid) > target:
                lo = mid
            else:
                hi = mid
        return min((lo, hi), key=lambda qp: abs(math.log(self.kbps(qp) / target)))


def rate_knob(target: float, low: float, keyframes: int) -> str:
    """Which setting moves an out-of-reach rate toward `target` (`low` is the lowest reachable kbps)."""
    if target >= low:
        return "raise --refresh-threshold to code more keyframes"
    if keyframes > 1:
        return "raise --max-gop or lower --refresh-threshold to code fewer keyframes"
    # One keyframe and the motion are the floor: only fewer motion bytes go lower.
    return "the floor is one keyframe plus the motion; --kp-threshold 1 or more sends fewer keypoints"


def _out_of_reach(target: float, clip: EncodedClip, low: float, high: float) -> str:
    """The one-line explanation of why `target` lies outside `low`..`high` kbps, with the knob to turn."""
    reasons = ", ".join(f"{n} {r.value}" for r, n in clip.stats.keyframe_reasons.items())
    return (f"--kbps {target:g} is out of reach: with this clip's {clip.stats.keyframes} keyframes ({reasons}) "
            f"keyframe QP {QP_MAX}..{QP_MIN} gives {low:.1f}..{high:.1f} kbps; "
            f"{rate_knob(target, low, clip.stats.keyframes)}")


def encode_to_rate(frame_source: Callable[[], Iterable[np.ndarray]], model, config: EncoderConfig,
                   model_id: bytes, target_kbps: float, tolerance: float = 0.15, strict: bool = False,
                   on_pass: Callable[[int, EncoderConfig], Callable[[EncodeStats], None] | None] | None = None,
                   ) -> tuple[EncodedClip, RateChoice]:
    """Encode the clip `frame_source()` yields at the keyframe QP that lands nearest `target_kbps`.

    At most two closed-loop passes: the first fixes keyframe positions and fast passes bisect the
    QP on them; a second at the chosen QP lets quality refresh move keyframes, and if that moves the
    rate off target the QP is re-fitted on its positions without rendering again. An unreachable
    target raises RateControlError after the first pass when `strict`, else the nearest rate is kept.
    """
    if not (math.isfinite(target_kbps) and target_kbps > 0):
        raise InputError(f"--kbps {target_kbps} must be a positive number")
    if config.idr_qp is not None:
        raise InputError("rate control fits one QP for every keyframe; it takes no separate IDR QP (--quality)")
    cache: dict[tuple, dict[int, bytes]] = {}
    seconds: list[float] = []
    fast = 0

    def full_pass(cfg: EncoderConfig) -> EncodedClip:
        callback = on_pass(len(seconds) + 1, cfg) if on_pass is not None else None
        start = time.perf_counter()
        clip = encode_clip(frame_source(), model, cfg, model_id, callback, keep_keyframe_inputs=True)
        seconds.append(time.perf_counter() - start)
        return clip

    def fit(clip: EncodedClip) -> tuple[_QpRateModel, int, tuple[float, float]]:
        nonlocal fast
        rates = _QpRateModel(clip, cache)
        qp = rates.best_qp(target_kbps)
        span = (rates.kbps(QP_MAX), rates.kbps(QP_MIN))
        fast += rates.passes
        return rates, qp, span

    def off_target(kbps: float) -> bool:
        return abs(kbps / target_kbps - 1.0) > tolerance

    clip = full_pass(config)
    rates, qp, span = fit(clip)
    if strict and off_target(min(max(target_kbps, span[0]), span[1])):
        raise RateControlError(_out_of_reach(target_kbps, clip, *span))
    decided_at = qp
    if qp != clip.config.keyframe_qp:
        clip = full_pass(replace(config, keyframe_qp=qp))
        if off_target(clip.kbps()):
            rates, refit, span = fit(clip)
            clip = rates.clip_at(refit)
    kbps = clip.kbps()
    missed = off_target(kbps)
    if missed and strict:
        raise RateControlError(_out_of_reach(target_kbps, clip, *span))
    return clip, RateChoice(target_kbps, clip.config.keyframe_qp, kbps, len(seconds), fast, tuple(seconds),
                            decided_at, span if missed else None)
