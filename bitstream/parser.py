"""Incremental .fvc parser: feed it bytes as they arrive, get whole packets back (spec §5)."""
from __future__ import annotations

import zlib
from dataclasses import dataclass

from .errors import BitstreamError, TruncatedStreamError
from .header import StreamHeader, parse_header
from .packets import CRC, NotePacket, Packet, UnknownPacket, body_cap, decode_body
from .sequence import StreamSequence
from .varint import decode_varint


@dataclass(frozen=True)
class PacketInfo:
    """A parsed packet, its index (0 = first after the header), where it starts and its size with framing."""

    packet: Packet
    index: int
    offset: int
    size: int


class PacketParser:
    """Turns a byte stream into packets, enforcing every rule of the format.

    `feed` returns the packets completed by the new bytes. When damage follows some good
    packets in the same call, those packets are returned and the error is raised by the
    next `feed` or `close`; `close` also raises when the stream stopped early. Errors after
    the header name the packet at fault and its first byte (spec §5.3).
    """

    def __init__(self):
        self._buf = bytearray()
        self._base = 0  # stream offset of _buf[0]
        self.header: StreamHeader | None = None
        self.version: tuple[int, int] | None = None
        self.header_size = 0
        self.sequence: StreamSequence | None = None
        self.records: list[PacketInfo] = []
        self._count = 0  # packets parsed, including those not yet returned
        self._error: BitstreamError | None = None

    @property
    def ended(self) -> bool:
        return self.sequence is not None and self.sequence.ended

    def feed(self, data: bytes) -> list[Packet]:
        """Packets completed by `data` that decoding uses (NOTE and unknown types are skipped)."""
        return [r.packet for r in self.feed_records(data) if not isinstance(r.packet, (NotePacket, UnknownPacket))]

    def feed_records(self, data: bytes) -> list[PacketInfo]:
        """Like `feed`, with indices, offsets and sizes, NOTE and unknown packets included."""
        if self._error is not None:
            raise self._error
        self._buf += data
        out: list[PacketInfo] = []
        try:
            while (record := self._next()) is not None:
                out.append(record)
        except BitstreamError as exc:
            self._error = exc
            if not out:
                raise
        self.records.extend(out)
        return out

    def close(self) -> None:
        """Raise if the stream is damaged, incomplete or has no END packet."""
        if self._error is not None:
            raise self._error
        if self.header is None:
            raise TruncatedStreamError("truncated header", self._base + len(self._buf))
        if self._buf:
            raise TruncatedStreamError(f"stream ends inside a packet ({len(self._buf)} bytes)", self._base,
                                       self._count)
        if not self.ended:
            raise TruncatedStreamError("stream ends without an END packet", self._base, self._count)

    def _consume(self, n: int) -> None:
        del self._buf[:n]
        self._base += n

    def _next(self) -> PacketInfo | None:
        if self.header is None:
            try:
                self.header, size, self.version = parse_header(self._buf)
            except TruncatedStreamError:
                return None
            self.header_size = size
            self.sequence = StreamSequence(self.header)
            self._consume(size)
        if not self._buf:
            return None
        try:
            return self._packet()
        except BitstreamError as exc:
            # Wherever the check fired, the damage lies somewhere in this packet: name it by its start.
            raise type(exc)(exc.message, self._base, self._count) from None

    def _packet(self) -> PacketInfo | None:
        buf, start = self._buf, self._base
        if self.sequence.ended:
            raise BitstreamError("trailing data after the END packet", start)
        packet_type = buf[0]
        if packet_type == 0:
            raise BitstreamError("invalid packet type 0", start)
        try:
            length, body_pos = decode_varint(buf, 1)
        except TruncatedStreamError:
            return None
        cap = body_cap(packet_type, self.version)
        if length > cap:
            raise BitstreamError(f"packet length {length} exceeds the limit {cap} for type {packet_type}", start)
        end = body_pos + length
        if len(buf) < end + CRC.size:
            return None
        (crc,) = CRC.unpack_from(buf, end)
        if crc != zlib.crc32(memoryview(buf)[:end]):
            raise BitstreamError(f"CRC mismatch (type {packet_type}, {end + CRC.size} bytes)", start)
        packet = decode_body(packet_type, bytes(buf[body_pos:end]), self.sequence.last_index, self.version,
                             self.header.keyframe_codec)
        self.sequence.admit(packet, start)
        self._consume(end + CRC.size)
        self._count += 1
        return PacketInfo(packet, self._count - 1, start, end + CRC.size)
