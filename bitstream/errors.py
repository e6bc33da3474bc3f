"""Exceptions raised by the bitstream layer."""
from __future__ import annotations


class BitstreamError(Exception):
    """A malformed, truncated or unsupported .fvc stream.

    `offset` is the byte where it went wrong: for damage in or after a packet, that packet's first
    byte, and `packet` is then its index (0 = the first packet after the header; spec §5.3).
    """

    def __init__(self, message: str, offset: int | None, packet: int | None = None):
        self.message = message
        self.offset = offset
        self.packet = packet
        if packet is not None:
            text = f"packet {packet} at byte {offset}: {message}"
        else:
            text = message + (f" at byte {offset}" if offset is not None else "")
        super().__init__(text)

    def __reduce__(self):
        return (type(self), (self.message, self.offset, self.packet))


class TruncatedStreamError(BitstreamError):
    """The stream ends inside a header or packet, or before its END packet."""


class SymbolError(ValueError):
    """Motion symbols, header fields or parameters given to the encoder do not fit the format.

    `field` names the offending header field when there is one (e.g. "width", "group 2").
    """

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field
