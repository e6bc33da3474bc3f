"""Keyframes ⇄ H.264 Annex-B access units via libx264 or, in version 5.x streams (spec §5.9), HEVC ones via
libx265: self-contained IDR pictures, or (version 3.x and later, spec §5.7) a sequence in which P pictures are
predicted from the keyframes before them. Both codecs share every step but their encoder options.

Colour: yuv420p, BT.601 matrix, limited (16-235) range, chroma box-averaged over 2x2 and
upsampled bilinearly (the conversions of codec.video), signalled in the SPS's VUI.

Every IDR opens a fresh single-threaded encoder: reusing one saves ~6 ms per frame but makes
the bytes depend on call history (x264 alternates idr_pic_id), and one thread keeps the output
identical on every machine.
"""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from bitstream.annexb import NalSyntax
from bitstream.constants import KeyframeCodec
from bitstream.packets import SYNTAX
from codec.video import frame_to_rgb, rgb_to_yuv420p

QP_MIN, QP_MAX = 0, 51  # x265's constant QP has the same scale
_START_CODE = b"\x00\x00\x01"
# x264's and x265's default ipratio (1.4) code a lone IDR 3 QP below the QP asked for. A keyframe sequence asks
# for that slice QP with ipratio 1, so at one --keyframe-qp its IDR and P pictures match encode_intra's.
IDR_QP_OFFSET = 3
# Earlier keyframes (since the last IDR) a predicted one may take blocks from: a pose the face returns to
# is usually among the last few keyframes, and each costs the decoder one picture of memory.
PREDICTION_REFS = 4
# x264 caps ipratio at 10: an IDR's slice QP can lie at most 20 below the P pictures' in one sequence.
MAX_IDR_QP_DROP = 20


class H264Error(Exception):
    """A keyframe access unit (H.264 or HEVC) that cannot be decoded, or a frame/QP that cannot be encoded."""


@dataclass(frozen=True)
class _Backend:
    """One keyframe codec's FFmpeg encoder and decoder and the encoder parameters of lone IDRs and of sequences."""

    codec: KeyframeCodec
    encoder: str
    decoder: str
    params_option: str
    intra_params: str
    sequence_params: str  # followed by ref and ipratio
    sequence_options: dict[str, str]
    common_params: str = ""  # appended to both
    # libx265 needs a time base and picture timestamps; x264's bytes stay as they were without them.
    timestamps: bool = False

    @property
    def syntax(self) -> NalSyntax:
        return SYNTAX[self.codec]

    def params(self, params: str) -> str:
        return f"{params}:{self.common_params}" if self.common_params else params


_BACKENDS = {
    KeyframeCodec.H264: _Backend(KeyframeCodec.H264, "libx264", "h264", "x264-params", "keyint=1:scenecut=0",
                                 "keyint=infinite:scenecut=0:bframes=0", {"tune": "zerolatency"}),
    # x264's zerolatency spelled out for x265: no B pictures and no look-ahead, so each access unit comes out
    # before the next keyframe goes in; keyint -1: IDRs come only from a fresh encoder, as with x264's infinite.
    # One thread (frame-threads, pools) and no early skip keep the bytes the same run after run: with early skip
    # on, the second predicted picture of a 64² sequence came out differently in 6 of 10 encodes of the same frames
    # (0 of 16 without it; wavefront rows and look-ahead slices made no difference). info=0 drops the version SEI.
    KeyframeCodec.HEVC: _Backend(KeyframeCodec.HEVC, "libx265", "hevc", "x265-params", "keyint=1",
                                 "keyint=-1:scenecut=0:bframes=0:rc-lookahead=0", {},
                                 "frame-threads=1:pools=1:early-skip=0:info=0:log-level=error",
                                 timestamps=True),
}


def _backend(codec) -> _Backend:
    try:
        return _BACKENDS[KeyframeCodec(codec)]
    except ValueError:
        raise H264Error(f"unknown keyframe codec {codec!r}") from None


def _open_encoder(backend: _Backend, width: int, height: int, options: dict[str, str]) -> av.CodecContext:
    encoder = av.CodecContext.create(backend.encoder, "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.thread_type = "FRAME"  # PyAV's default, slice threading, would split the picture in slices
    encoder.thread_count = 1
    encoder.colorspace, encoder.color_range = int(Colorspace.ITU601), int(ColorRange.MPEG)  # signalled in the VUI
    if backend.timestamps:
        encoder.time_base = Fraction(1, 25)
    encoder.options = {"preset": "medium", **options}
    return encoder


def _encode_picture(backend: _Backend, encoder: av.CodecContext, rgb: np.ndarray, pts: int) -> list[av.Packet]:
    picture = rgb_to_yuv420p(rgb)
    if backend.timestamps:
        picture.pts = pts
    return encoder.encode(picture)


def encode_intra(rgb: np.ndarray, qp: int, codec: KeyframeCodec = KeyframeCodec.H264) -> bytes:
    """Encode an (H, W, 3) uint8 RGB frame as one IDR access unit (parameter sets + IDR slice) at constant `qp`."""
    _check_frame(rgb)
    _check_qp(qp)
    backend = _backend(codec)
    encoder = _open_encoder(backend, rgb.shape[1], rgb.shape[0],
                            {"qp": str(int(qp)), backend.params_option: backend.params(backend.intra_params)})
    packets = _encode_picture(backend, encoder, rgb, 0) + encoder.encode(None)
    return strip_sei(b"".join(bytes(p) for p in packets), codec)


class KeyframeEncoder:
    """Codes a stream's keyframes with `codec` at `qp`, each as a lone IDR picture or, with `predict`, as one
    sequence whose non-intra pictures may take blocks from the last PREDICTION_REFS keyframes since its
    latest IDR (spec §5.7, §5.9). `idr_qp` (default `qp`) is the QP of the intra ones."""

    def __init__(self, qp: int, predict: bool = False, idr_qp: int | None = None,
                 codec: KeyframeCodec = KeyframeCodec.H264):
        _check_qp(qp)
        self.qp = int(qp)
        self.idr_qp = self.qp if idr_qp is None else int(idr_qp)
        _check_qp(self.idr_qp)
        if self.idr_qp < self.qp - MAX_IDR_QP_DROP:
            raise H264Error(f"IDR QP {self.idr_qp} lies more than {MAX_IDR_QP_DROP} below the keyframe QP {self.qp}")
        self.predict = predict
        self.codec = KeyframeCodec(codec)
        self._backend = _backend(codec)
        self._encoder: av.CodecContext | None = None
        self._pictures = 0  # since the last IDR: the next picture's pts

    def encode(self, rgb: np.ndarray, intra: bool = True) -> bytes:
        """The access unit of the next keyframe `rgb`: IDR if `intra` (the first must be), else predicted."""
        if not self.predict:
            return encode_intra(rgb, self.idr_qp if intra else self.qp, self.codec)
        _check_frame(rgb)
        if intra:
            # zerolatency: each picture's access unit comes out before the next picture goes in. The P
            # pictures' slice QP is asked for; ipratio puts the IDR's idr_qp - qp below it.
            ipratio = 2.0 ** ((self.qp - self.idr_qp) / 6.0)
            backend = self._backend
            params = backend.params(f"{backend.sequence_params}:ref={PREDICTION_REFS}:ipratio={ipratio!r}")
            self._encoder = _open_encoder(backend, rgb.shape[1], rgb.shape[0],
                                          {"qp": str(max(self.qp - IDR_QP_OFFSET, QP_MIN)),
                                           **backend.sequence_options, backend.params_option: params})
            self._pictures = 0
        elif self._encoder is None:
            raise H264Error("a predicted keyframe needs an intra keyframe before it")
        elif (self._encoder.width, self._encoder.height) != (rgb.shape[1], rgb.shape[0]):
            raise H264Error(f"a predicted keyframe must keep the sequence's size "
                            f"{self._encoder.width}x{self._encoder.height}, got {rgb.shape[1]}x{rgb.shape[0]}")
        packets = _encode_picture(self._backend, self._encoder, rgb, self._pictures)
        self._pictures += 1
        if len(packets) != 1:
            raise H264Error(f"{self._backend.encoder} returned {len(packets)} access units for one keyframe, "
                            "expected 1")
        return strip_sei(bytes(packets[0]), self.codec)


class KeyframeDecoder:
    """Decodes a stream's keyframe access units (coded with `codec`) in order: an IDR starts a fresh decoder, a
    predicted picture continues the one of the IDR before it."""

    def __init__(self, codec: KeyframeCodec = KeyframeCodec.H264):
        self.codec = KeyframeCodec(codec)
        self._backend = _backend(codec)
        self._decoder: av.CodecContext | None = None

    def decode(self, data: bytes) -> np.ndarray:
        """The (H, W, 3) uint8 RGB picture of the access unit `data`; H264Error if it cannot be decoded."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise H264Error(f"access unit must be bytes, got {type(data).__name__}")
        data = bytes(data)
        name = self._backend.syntax.name
        if self._backend.syntax.is_intra(data):
            self._decoder = av.CodecContext.create(self._backend.decoder, "r")
            self._decoder.thread_type = "FRAME"
            self._decoder.thread_count = 1
            # Without "explode" the decoder conceals damage and returns a plausible-looking broken picture.
            self._decoder.options = {"err_detect": "crccheck+bitstream+buffer+explode"}
        elif self._decoder is None:
            raise H264Error(f"predicted {name} access unit ({len(data)} bytes) without an intra one before it")
        try:
            frames = []
            # parse(None) ends the access unit, so its picture comes out now rather than with the next one.
            for packet in self._decoder.parse(data) + self._decoder.parse(None):
                frames += self._decoder.decode(packet)
        except av.FFmpegError as exc:
            self._decoder = None  # a damaged reference would spoil every picture predicted from it
            raise H264Error(f"corrupt {name} access unit ({len(data)} bytes): {exc.strerror}") from None
        if len(frames) != 1:
            self._decoder = None
            raise H264Error(f"{name} access unit of {len(data)} bytes holds {len(frames)} pictures, expected 1")
        return frame_to_rgb(frames[0], Colorspace.ITU601, ColorRange.MPEG)


def decode_intra(data: bytes, codec: KeyframeCodec = KeyframeCodec.H264) -> np.ndarray:
    """Decode one self-contained access unit (an IDR picture) into an (H, W, 3) uint8 RGB frame."""
    return KeyframeDecoder(codec).decode(data)


def strip_sei(annexb: bytes, codec: KeyframeCodec = KeyframeCodec.H264) -> bytes:
    """`annexb` without its SEI NAL units (x264's ~600-byte version banner; decoding needs none)."""
    syntax = _backend(codec).syntax
    return b"".join(unit for unit in split_nal_units(annexb) if _unit_type(unit, syntax) not in syntax.sei)


def split_nal_units(annexb: bytes) -> list[bytes]:
    """The NAL units of an Annex-B stream, each with its own start code (3 or 4 bytes)."""
    starts = []
    pos = annexb.find(_START_CODE)
    while pos >= 0:
        starts.append(pos - 1 if pos > 0 and annexb[pos - 1] == 0 else pos)
        pos = annexb.find(_START_CODE, pos + 3)
    return [annexb[begin:end] for begin, end in zip(starts, starts[1:] + [len(annexb)])]


def nal_type(unit: bytes) -> int:
    """H.264 nal_unit_type of a NAL unit that starts with its start code."""
    return _unit_type(unit, SYNTAX[KeyframeCodec.H264])


def _unit_type(unit: bytes, syntax: NalSyntax) -> int:
    header = unit.find(_START_CODE) + len(_START_CODE)
    return syntax.nal_type(unit[header:]) if header < len(unit) else -1


def _check_qp(qp) -> None:
    if isinstance(qp, bool) or not isinstance(qp, (int, np.integer)) or not QP_MIN <= qp <= QP_MAX:
        raise H264Error(f"qp must be an integer in {QP_MIN}..{QP_MAX}, got {qp!r}")


def _check_frame(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", None)
        raise H264Error(f"frame must be a uint8 (H, W, 3) RGB array, got {getattr(rgb, 'dtype', type(rgb))} {shape}")
    height, width, _ = rgb.shape
    if height < 2 or width < 2 or height % 2 or width % 2:
        raise H264Error(f"frame size must be even for yuv420p, got {width}x{height}")
