"""One RGB frame ⇄ one self-contained H.264 Annex-B access unit (a single IDR picture) via libx264.

Colour: yuv420p, BT.601 matrix, limited (16-235) range, chroma box-averaged over 2x2 and
upsampled bilinearly (the conversions of codec.video), signalled in the SPS's VUI.

Every call opens a fresh single-threaded encoder: reusing one saves ~6 ms per frame but makes
the bytes depend on call history (x264 alternates idr_pic_id), and one thread keeps the output
identical on every machine.
"""
from __future__ import annotations

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace

from codec.video import frame_to_rgb, rgb_to_yuv420p

QP_MIN, QP_MAX = 0, 51
NAL_TYPE_SEI = 6
_START_CODE = b"\x00\x00\x01"


class H264Error(Exception):
    """An H.264 access unit that cannot be decoded, or a frame/QP that cannot be encoded."""


def encode_intra(rgb: np.ndarray, qp: int) -> bytes:
    """Encode an (H, W, 3) uint8 RGB frame as one IDR access unit (SPS + PPS + IDR slice) at constant `qp`."""
    _check_frame(rgb)
    if isinstance(qp, bool) or not isinstance(qp, (int, np.integer)) or not QP_MIN <= qp <= QP_MAX:
        raise H264Error(f"qp must be an integer in {QP_MIN}..{QP_MAX}, got {qp!r}")
    height, width, _ = rgb.shape
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuv420p"
    encoder.thread_type = "FRAME"  # PyAV's default, slice threading, would split the picture in slices
    encoder.thread_count = 1
    encoder.colorspace, encoder.color_range = int(Colorspace.ITU601), int(ColorRange.MPEG)  # signalled in the VUI
    encoder.options = {"qp": str(int(qp)), "preset": "medium", "x264-params": "keyint=1:scenecut=0"}
    frame = rgb_to_yuv420p(rgb)
    packets = encoder.encode(frame) + encoder.encode(None)
    return strip_sei(b"".join(bytes(p) for p in packets))


def decode_intra(data: bytes) -> np.ndarray:
    """Decode one access unit made by `encode_intra` into an (H, W, 3) uint8 RGB frame."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise H264Error(f"access unit must be bytes, got {type(data).__name__}")
    decoder = av.CodecContext.create("h264", "r")
    decoder.thread_type = "FRAME"
    decoder.thread_count = 1
    # Without "explode" the decoder conceals damage and returns a plausible-looking broken picture.
    decoder.options = {"err_detect": "crccheck+bitstream+buffer+explode"}
    try:
        frames = []
        for packet in decoder.parse(bytes(data)) + decoder.parse(None):
            frames += decoder.decode(packet)
        frames += decoder.decode(None)
    except av.FFmpegError as exc:
        raise H264Error(f"corrupt H.264 access unit ({len(data)} bytes): {exc.strerror}") from None
    if len(frames) != 1:
        raise H264Error(f"H.264 access unit of {len(data)} bytes holds {len(frames)} pictures, expected 1")
    return frame_to_rgb(frames[0], Colorspace.ITU601, ColorRange.MPEG)


def strip_sei(annexb: bytes) -> bytes:
    """`annexb` without its SEI NAL units (x264's ~600-byte version banner; decoding needs none)."""
    return b"".join(unit for unit in split_nal_units(annexb) if nal_type(unit) != NAL_TYPE_SEI)


def split_nal_units(annexb: bytes) -> list[bytes]:
    """The NAL units of an Annex-B stream, each with its own start code (3 or 4 bytes)."""
    starts = []
    pos = annexb.find(_START_CODE)
    while pos >= 0:
        starts.append(pos - 1 if pos > 0 and annexb[pos - 1] == 0 else pos)
        pos = annexb.find(_START_CODE, pos + 3)
    return [annexb[begin:end] for begin, end in zip(starts, starts[1:] + [len(annexb)])]


def nal_type(unit: bytes) -> int:
    """nal_unit_type of a NAL unit that starts with its start code."""
    header = unit.find(_START_CODE) + len(_START_CODE)
    return unit[header] & 0x1F if header < len(unit) else -1


def _check_frame(rgb: np.ndarray) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", None)
        raise H264Error(f"frame must be a uint8 (H, W, 3) RGB array, got {getattr(rgb, 'dtype', type(rgb))} {shape}")
    height, width, _ = rgb.shape
    if height < 2 or width < 2 or height % 2 or width % 2:
        raise H264Error(f"frame size must be even for yuv420p, got {width}x{height}")
