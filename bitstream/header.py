"""The .fvc file header (spec §3): stream geometry, motion model identity, coding parameters."""
from __future__ import annotations

import hashlib
import os
import struct
import zlib
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

from .constants import (FVC_MAGIC, FVC_VERSION_MAJOR, FVC_VERSION_MINOR, HEVC_MAJOR, MAX_REF_SLOTS, NEWEST_MAJOR,
                        PREDICTION_MAJOR, RESYNC_MAJOR, SLOTS_MAJOR, KeyframeCodec, MotionKind)
from .errors import BitstreamError, SymbolError, TruncatedStreamError
from .symbols import GroupParams, SymbolGroup, default_num_keypoints, default_params, layout

MODEL_ID_BYTES = 16
_PREFIX = struct.Struct("<8sBBH")  # magic, version major, version minor, body length
_FIXED = struct.Struct("<HHIIIBB16sB")  # width .. group count
_GROUP = struct.Struct("<fHHHH")  # step, radius, decay, escape_freq, mask_freq
_CRC = struct.Struct("<I")


@dataclass(frozen=True)
class StreamHeader:
    """Everything a decoder needs before the first packet."""

    width: int
    height: int
    fps_num: int
    fps_den: int
    frame_count: int  # 0 = live / unknown
    kind: MotionKind
    num_keypoints: int
    model_id: bytes
    params: tuple[GroupParams, ...]
    ref_slots: int = 1  # reference buffer size N (spec §5.6); more than 1 needs version 2.0
    predicted_keyframes: bool = False  # KEYFRAMEs may be P pictures (spec §5.7): version 3.0, not a header field
    # RESYNC packets may occur (spec §4.6): version 4.0, not a header field. 4.0 is 3.0 plus RESYNC, so a 4.x
    # stream's keyframes may be predicted as well, and `predicted_keyframes` is set with it.
    resync: bool = False
    # How KEYFRAMEs are coded (spec §5.9): a header field from 5.0 on, which only HEVC needs. 5.0 is 4.0 plus the
    # field, so an HEVC header sets `resync` (and with it `predicted_keyframes`).
    keyframe_codec: KeyframeCodec = KeyframeCodec.H264

    def __post_init__(self):
        try:
            object.__setattr__(self, "keyframe_codec", KeyframeCodec(self.keyframe_codec))
        except ValueError:
            raise SymbolError(f"keyframe_codec {self.keyframe_codec} is not 0 (H.264) or 1 (HEVC)",
                              "keyframe_codec") from None
        if self.keyframe_codec != KeyframeCodec.H264:
            object.__setattr__(self, "resync", True)
        if self.resync:
            object.__setattr__(self, "predicted_keyframes", True)
        object.__setattr__(self, "kind", MotionKind(self.kind))
        object.__setattr__(self, "params", tuple(self.params))
        object.__setattr__(self, "model_id", bytes(self.model_id))
        self.check()

    @property
    def groups(self) -> tuple[SymbolGroup, ...]:
        return layout(self.kind, self.num_keypoints)

    @property
    def fps(self) -> Fraction:
        return Fraction(self.fps_num, self.fps_den)

    def params_of(self, name: str) -> GroupParams:
        """Parameters of the group called `name`."""
        for g, p in zip(self.groups, self.params):
            if g.name == name:
                return p
        raise KeyError(name)

    def check(self) -> None:
        """Raise SymbolError naming the first field outside its range (spec §3)."""
        for name, value, hi in (("width", self.width, 65535), ("height", self.height, 65535),
                                ("fps_num", self.fps_num, 2**32 - 1), ("fps_den", self.fps_den, 2**32 - 1)):
            if not 1 <= value <= hi:
                raise SymbolError(f"{name} {value} outside 1..{hi}", name)
        if not 0 <= self.frame_count <= 2**32 - 1:
            raise SymbolError(f"frame_count {self.frame_count} outside 0..{2**32 - 1}", "frame_count")
        if len(self.model_id) != MODEL_ID_BYTES:
            raise SymbolError(f"model_id must be {MODEL_ID_BYTES} bytes, got {len(self.model_id)}", "model_id")
        try:
            groups = self.groups
        except SymbolError as exc:
            raise SymbolError(str(exc), "num_keypoints") from None
        if len(self.params) != len(groups):
            raise SymbolError(f"{len(self.params)} group parameter sets for {len(groups)} groups", "group_count")
        for i, (g, p) in enumerate(zip(groups, self.params)):
            try:
                p.check(g)
            except SymbolError as exc:
                raise SymbolError(str(exc), f"group {i}") from None
        if not 1 <= self.ref_slots <= MAX_REF_SLOTS:
            raise SymbolError(f"ref_slots {self.ref_slots} outside 1..{MAX_REF_SLOTS}", "ref_slots")

    def version(self, minor: int = FVC_VERSION_MINOR) -> tuple[int, int]:
        """The version a writer declares: 5.0 with HEVC keyframes, 4.0 with RESYNC packets, 3.0 with predicted
        keyframes, 2.0 with several slots, else 1.`minor`."""
        if self.keyframe_codec != KeyframeCodec.H264:
            return HEVC_MAJOR, 0
        if self.resync:
            return RESYNC_MAJOR, 0
        if self.predicted_keyframes:
            return PREDICTION_MAJOR, 0
        return (SLOTS_MAJOR, 0) if self.ref_slots > 1 else (FVC_VERSION_MAJOR, minor)

    def pack(self, minor: int = FVC_VERSION_MINOR) -> bytes:
        """Serialised header declaring `version(minor)`, CRC included."""
        major, minor = self.version(minor)
        body = _FIXED.pack(self.width, self.height, self.fps_num, self.fps_den, self.frame_count,
                           int(self.kind), self.num_keypoints, self.model_id, len(self.params))
        body += b"".join(_GROUP.pack(p.step, p.radius, p.decay, p.escape_freq, p.mask_freq)
                         for p in self.params)
        if major >= SLOTS_MAJOR:
            body += bytes([self.ref_slots])
        if major >= HEVC_MAJOR:
            body += bytes([self.keyframe_codec])
        head = _PREFIX.pack(FVC_MAGIC, major, minor, len(body)) + body
        return head + _CRC.pack(zlib.crc32(head))


def weights_model_id(path: str | os.PathLike) -> bytes:
    """The model_id a header carries for a weights file: the first 16 bytes of its SHA-256 (spec §3)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.digest()[:MODEL_ID_BYTES]


def _to_fraction(fps: int | float | Fraction | tuple[int, int]) -> Fraction:
    if isinstance(fps, tuple):
        return Fraction(int(fps[0]), int(fps[1]))
    if isinstance(fps, float):
        # 29.97 -> 30000/1001 style rationals; exact values with small denominators stay exact.
        return Fraction(fps).limit_denominator(1001)
    return Fraction(fps)


def default_header(kind: MotionKind, width: int, height: int, fps: int | float | Fraction | tuple[int, int],
                   model_id: bytes, num_keypoints: int | None = None, frame_count: int = 0,
                   params: Sequence[GroupParams] | None = None, ref_slots: int = 1,
                   predicted_keyframes: bool = False, resync: bool = False,
                   keyframe_codec: KeyframeCodec = KeyframeCodec.H264) -> StreamHeader:
    """A header with the default coding parameters of `kind` unless `params` is given."""
    kind = MotionKind(kind)
    rate = _to_fraction(fps)
    if rate <= 0:
        raise SymbolError(f"fps {fps} must be positive")
    return StreamHeader(width=width, height=height, fps_num=rate.numerator, fps_den=rate.denominator,
                        frame_count=frame_count, kind=kind,
                        num_keypoints=default_num_keypoints(kind) if num_keypoints is None else num_keypoints,
                        model_id=model_id, params=tuple(params) if params is not None else default_params(kind),
                        ref_slots=ref_slots, predicted_keyframes=predicted_keyframes, resync=resync,
                        keyframe_codec=keyframe_codec)


# Byte offsets of the v1.0 header fields (spec §3), for error messages.
_FIELD_OFFSETS = {"width": 12, "height": 14, "fps_num": 16, "fps_den": 20, "frame_count": 24, "motion_kind": 28,
                  "num_keypoints": 29, "model_id": 30, "group_count": 46}


def _field_offset(field: str | None, group_count: int) -> int:
    if field and field.startswith("group "):
        return _PREFIX.size + _FIXED.size + int(field.split()[1]) * _GROUP.size
    if field in ("ref_slots", "keyframe_codec"):  # the bytes after the group records (2.x; 5.x)
        return _PREFIX.size + _FIXED.size + group_count * _GROUP.size + (field == "keyframe_codec")
    return _FIELD_OFFSETS.get(field, _PREFIX.size)


def parse_header(data: bytes | bytearray | memoryview) -> tuple[StreamHeader, int, tuple[int, int]]:
    """(header, bytes consumed, (major, minor)) from the start of `data`.

    Raises TruncatedStreamError when `data` ends before the header does.
    """
    if len(data) < _PREFIX.size:
        if bytes(data[:len(FVC_MAGIC)]) != FVC_MAGIC[:len(data)]:
            raise BitstreamError("not an .fvc stream (wrong magic)", 0)
        raise TruncatedStreamError("truncated header", len(data))
    magic, major, minor, body_len = _PREFIX.unpack_from(data, 0)
    if magic != FVC_MAGIC:
        raise BitstreamError("not an .fvc stream (wrong magic)", 0)
    if not FVC_VERSION_MAJOR <= major <= NEWEST_MAJOR:
        raise BitstreamError(f"unsupported format version {major}.{minor} (this decoder reads "
                             f"{FVC_VERSION_MAJOR}.x to {NEWEST_MAJOR}.x)", 8)
    end = _PREFIX.size + body_len
    if len(data) < end + _CRC.size:
        raise TruncatedStreamError("truncated header", len(data))
    (crc,) = _CRC.unpack_from(data, end)
    if crc != zlib.crc32(bytes(data[:end])):
        raise BitstreamError("header CRC mismatch", end)
    body = bytes(data[_PREFIX.size:end])
    if len(body) < _FIXED.size:
        raise BitstreamError("header body too short", _PREFIX.size + len(body))
    width, height, fps_num, fps_den, frames, kind, k, model_id, ngroups = _FIXED.unpack_from(body, 0)
    if kind not in MotionKind.__members__.values():
        raise BitstreamError(f"unknown motion kind {kind}", _field_offset("motion_kind", ngroups))
    groups_end = _FIXED.size + ngroups * _GROUP.size
    slotted, coded = major >= SLOTS_MAJOR, major >= HEVC_MAJOR
    if len(body) < groups_end + slotted + coded:
        raise BitstreamError("header body too short for its groups" + (", ref_slots and keyframe_codec" if coded else
                                                                       " and ref_slots" if slotted else ""),
                             _PREFIX.size + len(body))
    params = tuple(GroupParams(*_GROUP.unpack_from(body, _FIXED.size + i * _GROUP.size)) for i in range(ngroups))
    ref_slots = body[groups_end] if slotted else 1
    keyframe_codec = body[groups_end + 1] if coded else KeyframeCodec.H264
    # Bytes after the fields of the stream's major version belong to a newer minor version: ignored.
    try:
        header = StreamHeader(width, height, fps_num, fps_den, frames, MotionKind(kind), k, model_id, params,
                              ref_slots, major >= PREDICTION_MAJOR, major >= RESYNC_MAJOR, keyframe_codec)
    except SymbolError as exc:
        raise BitstreamError(f"invalid header: {exc}", _field_offset(exc.field, ngroups)) from None
    return header, end + _CRC.size, (major, minor)
