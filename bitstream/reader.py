"""StreamReader: the header, then packets one by one, from a file object, a path or bytes."""
from __future__ import annotations

import io
import os
from typing import BinaryIO, Iterator

from .errors import BitstreamError
from .header import StreamHeader
from .packets import NotePacket, Packet, UnknownPacket
from .parser import PacketInfo, PacketParser

CHUNK = 1 << 16


class StreamReader:
    """Reads the header on construction; iterating yields every good packet, then raises on damage."""

    def __init__(self, source: bytes | bytearray | memoryview | str | os.PathLike | BinaryIO):
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._stream, self._owned = io.BytesIO(bytes(source)), True
        elif isinstance(source, (str, os.PathLike)):
            self._stream, self._owned = open(source, "rb"), True
        else:
            self._stream, self._owned = source, False
        # read1 returns what is available, so a live pipe or socket is not waited on for a full chunk.
        self._read = getattr(self._stream, "read1", self._stream.read)
        self.parser = PacketParser()
        self._pending: list[PacketInfo] = []
        try:
            while self.parser.header is None:
                chunk = self._read(CHUNK)
                if not chunk:
                    self.parser.close()
                try:
                    self._pending += self.parser.feed_records(chunk)
                except BitstreamError:
                    if self.parser.header is None:
                        raise
                    # Damage right after a good header: the parser keeps it for records() to raise.
        except BaseException:
            self.close()
            raise

    @property
    def header(self) -> StreamHeader:
        return self.parser.header

    def close(self) -> None:
        """Close the source if this reader opened it."""
        if self._owned:
            self._stream.close()

    def __enter__(self) -> StreamReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def records(self) -> Iterator[PacketInfo]:
        """Every packet with its index, offset and size (NOTE and unknown types included); checks the stream's end."""
        try:
            yield from self._pending
            self._pending = []
            while chunk := self._read(CHUNK):
                yield from self.parser.feed_records(chunk)
            self.parser.close()
        finally:
            self.close()

    def __iter__(self) -> Iterator[Packet]:
        """The packets decoding uses: KEYFRAME, MOTION, USE_SLOT and END."""
        return (r.packet for r in self.records() if not isinstance(r.packet, (NotePacket, UnknownPacket)))
