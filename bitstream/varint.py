"""Unsigned LEB128 varints, at most 5 bytes and 32 bits, minimal encoding only."""
from __future__ import annotations

from .errors import BitstreamError, TruncatedStreamError

VARINT_MAX_BYTES = 5
VARINT_MAX_VALUE = 2**32 - 1


def encode_varint(value: int) -> bytes:
    """LEB128 bytes of `value` (0 <= value < 2**32)."""
    if not 0 <= value <= VARINT_MAX_VALUE:
        raise ValueError(f"varint value {value} outside 0..{VARINT_MAX_VALUE}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes | bytearray | memoryview, pos: int) -> tuple[int, int]:
    """(value, next position) of the varint at data[pos]; error offsets are positions in `data`."""
    value = 0
    for i in range(VARINT_MAX_BYTES):
        if pos + i >= len(data):
            raise TruncatedStreamError("truncated varint", pos + i)
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            # A zero final byte after continuation bytes is an overlong encoding; refusing it
            # makes every value's encoding unique, so re-encoding reproduces the stream.
            if i > 0 and byte == 0:
                raise BitstreamError("overlong varint", pos)
            if value > VARINT_MAX_VALUE:
                raise BitstreamError("varint exceeds 32 bits", pos)
            return value, pos + i + 1
    raise BitstreamError("varint longer than 5 bytes", pos)
