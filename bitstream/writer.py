"""StreamWriter: header then packets, optionally flushed one by one for a live receiver."""
from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

from .constants import FVC_VERSION_MINOR
from .errors import BitstreamError
from .header import StreamHeader
from .packets import (EndPacket, KeyframePacket, MotionPacket, Packet, UnknownPacket, UseSlotPacket, body_cap, defines,
                      encode_body, frame, introduced, packet_type_of)
from .sequence import StreamSequence


def _dotted(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


class StreamWriter:
    """Writes a .fvc stream of version `header.version(minor)` to `sink`; refuses any packet a reader would refuse.

    `close()` appends the END packet. With `flush=True` the sink is flushed after the
    header and every packet, so a receiver can decode while the stream is being written.
    NOTE packets need `minor` >= 1: the header, written first, must announce them. A header
    with several reference slots makes the stream 2.0, which has NOTE and USE_SLOT packets.
    """

    def __init__(self, sink: BinaryIO, header: StreamHeader, flush: bool = False, minor: int = FVC_VERSION_MINOR):
        self._sink = sink
        self._flush = flush
        self.header = header
        self.version = header.version(minor)
        self.sequence = StreamSequence(header)
        self.offset = 0
        self.packet_sizes: list[int] = []
        self._emit(header.pack(minor))
        self.header_size = self.offset

    def _emit(self, data: bytes) -> None:
        self._sink.write(data)
        if self._flush:
            self._sink.flush()
        self.offset += len(data)

    def write(self, packet: Packet) -> int:
        """Write one KEYFRAME, MOTION or NOTE packet (or an unknown type, to test readers); returns its size."""
        if isinstance(packet, EndPacket):
            raise BitstreamError("END is written by close()", self.offset)
        packet_type = packet_type_of(packet)
        if isinstance(packet, UnknownPacket):
            if defines(packet.type, self.version) or not 0 < packet.type <= 255:
                raise BitstreamError(f"packet type {packet.type} is not an unknown type of version "
                                     f"{_dotted(self.version)}", self.offset)
        elif not defines(packet_type, self.version):
            raise BitstreamError(f"{packet_type.name} packets need version {_dotted(introduced(packet_type))} "
                                 f"(this stream is {_dotted(self.version)})", self.offset)
        if isinstance(packet, MotionPacket) and len(packet.payload) > 65536:
            raise BitstreamError("motion payload longer than 65536 bytes", self.offset)
        if isinstance(packet, (KeyframePacket, UseSlotPacket)):
            self.sequence.check_slot(packet.slot, self.offset)  # before the slot is packed into a byte
        body = encode_body(packet, self.sequence.last_index, self.version)
        cap = body_cap(packet_type, self.version)
        if len(body) > cap:
            raise BitstreamError(f"packet body of {len(body)} bytes exceeds the limit {cap}", self.offset)
        self.sequence.admit(packet, self.offset)
        data = frame(packet_type, body)
        self._emit(data)
        self.packet_sizes.append(len(data))
        return len(data)

    def close(self) -> EndPacket:
        """Append the END packet (totals of what was written) and return it."""
        if self.sequence.ended:
            raise BitstreamError("stream already closed", self.offset)
        end = self.sequence.expected_end(self.offset)
        if self.header.frame_count and end.frame_count != self.header.frame_count:
            raise BitstreamError(f"wrote {end.frame_count} frames, header says {self.header.frame_count}",
                                 self.offset)
        self.sequence.admit(end, self.offset)
        data = frame(packet_type_of(end), encode_body(end, self.sequence.last_index, self.version))
        self._emit(data)
        self.packet_sizes.append(len(data))
        if not self._flush:
            self._sink.flush()
        return end


class FileStreamWriter(StreamWriter):
    """A StreamWriter on a path: writes `<path>.tmp` and renames it only when closed cleanly."""

    def __init__(self, path: str | os.PathLike, header: StreamHeader, force: bool = False, flush: bool = False,
                 minor: int = FVC_VERSION_MINOR):
        self.path = Path(path)
        if self.path.exists() and not force:
            raise FileExistsError(f"{self.path} exists (use force to overwrite)")
        self._tmp = self.path.with_name(self.path.name + ".tmp")
        super().__init__(open(self._tmp, "wb"), header, flush, minor)

    def close(self) -> EndPacket:
        end = super().close()
        self._sink.close()
        os.replace(self._tmp, self.path)
        return end

    def abort(self) -> None:
        """Drop the partial output."""
        self._sink.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> FileStreamWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
            return
        try:
            self.close()
        except BaseException:
            self.abort()
            raise
