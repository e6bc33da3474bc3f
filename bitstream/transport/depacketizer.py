"""The receiving side of spec §12: a jitter window over sequence numbers, loss detection, reassembly.

`Depacketizer.push` takes datagrams in any order and returns events in stream order: the stream header
when it first arrives, every complete .fvc packet, the sequence numbers it found missing (to NACK) and those it
declared lost, the units it dropped, and every datagram it refused with the reason. It never raises on what it
is given.
"""
from __future__ import annotations

import zlib
from collections import Counter, deque
from dataclasses import dataclass, field

from ..errors import BitstreamError
from ..header import StreamHeader, parse_header
from ..packets import (CRC, MAX_FRAME_INDEX, KeyframePacket, MotionPacket, NotePacket, Packet, PacketType,
                       UseSlotPacket, annexb_problem, body_cap, decode_body, defines, note_problem)
from ..varint import decode_varint
from .rtp import (BAD_CRC, BAD_HEADER, BAD_PACKET, DEFAULT_PAYLOAD_TYPE, DUPLICATE, FRAME_INDEX, HEADER_ID,
                  INCOMPLETE, MAX_HEADER_UNIT, MAX_PACKET_UNIT, NO_HEADER, PAYLOAD_TYPE, SEQ_JUMP, SEQ_MODULUS,
                  TOO_LARGE, TOO_OLD, UNIT_HEADER, UNIT_PACKET, Datagram, check_payload_type, header_id,
                  parse_datagram)

DEFAULT_WINDOW = 16
MAX_MISORDER = 100  # RFC 3550 A.1's limits: how far behind, and how far ahead, a datagram may be
MAX_DROPOUT = 3000
MAX_CANDIDATES = 256  # datagrams a receiver that follows no stream yet keeps until a header unit comes
# A datagram more than MAX_LEAP numbers ahead of every one that counts waits unconfirmed until a second one within
# MAX_LEAP of it arrives: one damaged sequence number must not declare a hundred datagrams lost (spec §12.5).
MAX_LEAP = 16


@dataclass(frozen=True)
class HeaderEvent:
    """The stream header arrived (reported once; repeats that match it are used silently)."""

    header: StreamHeader
    version: tuple[int, int]
    header_id: int
    data: bytes


@dataclass(frozen=True)
class PacketEvent:
    """A complete .fvc packet. A MOTION packet's frame_index is absolute: the datagrams' timestamp.

    `discontinuity`: a datagram was lost or a unit dropped since the last KEYFRAME or MOTION packet delivered
    (so a MOTION packet's residuals may be against a packet the receiver never got, spec §12.7).
    """

    packet: Packet
    frame_index: int
    first_seq: int
    last_seq: int
    discontinuity: bool
    data: bytes  # the .fvc packet's bytes as the sender framed them


@dataclass(frozen=True)
class MissingEvent:
    """Sequence numbers (16-bit) newly found missing, a later datagram having arrived: the list a NACK names. A
    re-sent datagram may still fill them until they are declared lost (LossEvent)."""

    seqs: tuple[int, ...]


@dataclass(frozen=True)
class LossEvent:
    """Sequence numbers (16-bit, as sent) that never arrived in time: the receiver stopped waiting for them."""

    seqs: tuple[int, ...]


@dataclass(frozen=True)
class DropEvent:
    """A datagram refused on arrival; `seq` is None when its RTP header could not be read."""

    reason: str
    seq: int | None


@dataclass(frozen=True)
class UnitDropEvent:
    """A unit whose datagrams were taken into the window, dropped whole: one count of `reason` per datagram.

    `packet_type`: the type byte of a packet unit whose first fragment arrived (a receiver learns so that it lost a
    KEYFRAME, spec §12.7), else None.
    """

    reason: str
    kind: int
    timestamp: int
    seqs: tuple[int, ...]
    packet_type: int | None = None


@dataclass(frozen=True)
class ResyncEvent:
    """Two consecutive datagrams far from the expected sequence number: the sender restarted; counting goes on
    from `seq`, and the datagrams still waiting were released first (RFC 3550 A.1)."""

    seq: int


Event = HeaderEvent | PacketEvent | MissingEvent | LossEvent | DropEvent | UnitDropEvent | ResyncEvent


@dataclass
class TransportStats:
    """Datagram counts. Always: datagrams == used + sum(dropped.values()) + pending."""

    datagrams: int = 0  # pushed
    used: int = 0  # in a delivered packet or a header unit
    dropped: Counter = field(default_factory=Counter)  # reason -> datagrams
    missing: int = 0  # sequence numbers found missing (a NACK may bring them)
    lost: int = 0  # sequence numbers declared lost
    packets: int = 0
    resyncs: int = 0
    pending: int = 0  # waiting in the window or in a unit not yet complete


@dataclass
class _Unit:
    kind: int
    timestamp: int
    seqs: list[int]
    pieces: list[bytes]
    size: int = 0
    problem: str | None = None  # INCOMPLETE or TOO_LARGE once known: the pieces are no longer kept
    first_byte: int | None = None  # a packet unit's type byte, once its first fragment arrived


class Depacketizer:
    """Reassembles one stream's .fvc packets from datagrams (spec §12.6).

    It starts at the first header unit that hashes to its SSRC, of the stream `header_id` if given, else of
    any stream; datagrams that arrive before it wait for it. A missing sequence number is declared lost once
    `window` later ones have arrived, once the oldest datagram waiting behind it has waited `max_delay` seconds
    (when `push` and `poll` are given the time `now`), or at `flush`; a datagram far ahead of the others counts
    only once a second one confirms its position (MAX_LEAP).
    """

    def __init__(self, header_id: int | None = None, *, payload_type: int = DEFAULT_PAYLOAD_TYPE,
                 window: int = DEFAULT_WINDOW, max_delay: float | None = None, max_misorder: int = MAX_MISORDER,
                 max_dropout: int = MAX_DROPOUT):
        check_payload_type(payload_type)
        if not 1 <= window <= max_dropout:
            raise ValueError(f"window {window} outside 1..max_dropout ({max_dropout})")
        if max_misorder < 1 or max_dropout < 1 or max_misorder + max_dropout >= SEQ_MODULUS // 2:
            raise ValueError("max_misorder and max_dropout must be >= 1 with a sum below 32768")
        self.header_id = header_id
        self.payload_type = payload_type
        self.window, self.max_delay = window, max_delay
        self.max_misorder, self.max_dropout = max_misorder, max_dropout
        self.header: StreamHeader | None = None
        self.header_bytes: bytes | None = None
        self.version: tuple[int, int] | None = None
        self.stats = TransportStats()
        self._next: int | None = None  # extended sequence number to release next
        self._highest: int | None = None  # highest extended sequence number taken and confirmed
        self._buffer: dict[int, tuple[Datagram, float | None]] = {}
        self._unconfirmed: set[int] = set()  # waiting numbers that count for no loss rule yet (MAX_LEAP)
        self._reported: int | None = None  # numbers below it were found missing already, or arrived
        self._released: deque[int] = deque()  # extended numbers released, the last max_misorder of them
        self._released_set: set[int] = set()
        self._probe: int | None = None  # the sequence number that would confirm a jump
        self._unit: _Unit | None = None
        self._last_frame: int | None = None  # frame index of the last KEYFRAME or MOTION delivered
        self._broken = False  # something lost or dropped since then
        self._events: list[Event] = []
        self._locked = False  # whether a header unit started the numbering
        self._candidates: list[tuple[Datagram, float | None]] = []  # datagrams before the lock

    # -- arrival --------------------------------------------------------------------------------------------

    def push(self, data: bytes | bytearray | memoryview, now: float | None = None) -> list[Event]:
        """Take one datagram; returns the events it completes, in stream order."""
        self.stats.datagrams += 1
        datagram, reason = parse_datagram(data)
        if datagram is None:
            self._drop(reason, None)
        elif datagram.payload_type != self.payload_type:
            self._drop(PAYLOAD_TYPE, datagram.sequence)
        elif self.header_id is not None and datagram.header_id != self.header_id:
            self._drop(HEADER_ID, datagram.sequence)
        elif not self._locked:
            self._lock(datagram, now)
        else:
            self._take(datagram, now)
        return self._finish(now)

    def poll(self, now: float) -> list[Event]:
        """Events due by time alone: gaps whose followers have waited max_delay seconds."""
        return self._finish(now)

    def flush(self) -> list[Event]:
        """Declare every gap lost and release everything waiting (the stream ended or the caller gave up)."""
        self._release(None, flush=True)
        if self._unit is not None:
            self._drop_unit(INCOMPLETE)
        for datagram, _ in self._candidates:
            self._drop(NO_HEADER, datagram.sequence)
        self._candidates = []
        return self._finish(None)

    def missing_now(self) -> list[tuple[int, float | None]]:
        """The numbers (16-bit) missing at present, found missing and neither arrived nor declared lost, in sequence
        order, each with the time at which max_delay gives it up (the first confirmed datagram waiting above it
        arrived max_delay earlier; None without times): how long a re-sent copy still has to arrive."""
        if self._next is None or self._reported is None:
            return []
        top = min(self._reported, self._highest)
        out, oldest = [], None
        above = sorted((ext for ext in self._buffer if ext not in self._unconfirmed), reverse=True)
        for ext in range(top - 1, self._next - 1, -1):  # downwards, so `oldest` is the earliest arrival above ext
            while above and above[0] > ext:
                arrival = self._buffer[above.pop(0)][1]
                if arrival is not None:
                    oldest = arrival if oldest is None else min(oldest, arrival)
            if self._awaited(ext):
                deadline = oldest + self.max_delay if oldest is not None and self.max_delay is not None else None
                out.append((ext % SEQ_MODULUS, deadline))
        return out[::-1]

    def _finish(self, now: float | None) -> list[Event]:
        self._report_missing()
        self._release(now)
        self.stats.pending = len(self._buffer) + (len(self._unit.seqs) if self._unit else 0) + len(self._candidates)
        events, self._events = self._events, []
        return events

    def _drop(self, reason: str, seq: int | None) -> None:
        self.stats.dropped[reason] += 1
        self._events.append(DropEvent(reason, seq))

    def _lock(self, datagram: Datagram, now: float | None) -> None:
        """Start at the first header unit, whole or reassembled, that hashes to its SSRC (the header id given,
        if one was).

        Until then datagrams wait (at most MAX_CANDIDATES, the oldest dropped first); at the lock those of the
        stream go through the window, those sent before its header are too old, and the others are foreign.
        """
        self._candidates.append((datagram, now))
        if len(self._candidates) > MAX_CANDIDATES:
            self._drop(NO_HEADER, self._candidates.pop(0)[0].sequence)
        if datagram.kind != UNIT_HEADER:
            return
        run = _header_run([d for d, _ in self._candidates
                           if d.kind == UNIT_HEADER and d.header_id == datagram.header_id], datagram)
        if run is None:
            return
        for d in run:
            self._candidates.remove(next(c for c in self._candidates if c[0] is d))
        data = b"".join(d.fragment for d in run)
        if header_id(data) != datagram.header_id or _header_problem(data):
            self.stats.dropped[BAD_HEADER] += len(run)
            self._events.append(UnitDropEvent(BAD_HEADER, UNIT_HEADER, run[0].timestamp,
                                              tuple(d.sequence for d in run)))
            return
        self.header_id, self._locked = datagram.header_id, True
        waiting, self._candidates = self._candidates, []
        for d in run:
            self._take(d, now)
        for d, arrival in waiting:
            if d.header_id != self.header_id:
                self._drop(HEADER_ID, d.sequence)
            elif (d.sequence - run[0].sequence) % SEQ_MODULUS >= SEQ_MODULUS // 2:
                self._drop(TOO_OLD, d.sequence)  # sent before the header the receiver starts from
            else:
                self._take(d, arrival)

    def _extend(self, seq: int) -> int:
        """The extended sequence number nearest to the next one expected (wrap-around, spec §12.5)."""
        delta = (seq - self._next) % SEQ_MODULUS
        return self._next + (delta if delta < SEQ_MODULUS // 2 else delta - SEQ_MODULUS)

    def _take(self, datagram: Datagram, now: float | None) -> None:
        seq = datagram.sequence
        if self._next is None:
            self._next = self._highest = self._reported = seq
        ext = self._extend(seq)
        if ext < self._next - self.max_misorder or ext > self._next + self.max_dropout:
            if seq != self._probe:
                self._probe = (seq + 1) % SEQ_MODULUS
                self._drop(SEQ_JUMP, seq)
                return
            self._resync(seq)
            ext = self._next
        if ext < self._next:
            self._drop(DUPLICATE if ext in self._released_set else TOO_OLD, seq)
        elif ext in self._buffer and not (ext in self._unconfirmed and ext <= self._highest + MAX_LEAP):
            self._drop(DUPLICATE, seq)
        elif ext in self._buffer:
            # An unconfirmed datagram holds the number of one that arrived in reach of the stream: the unconfirmed
            # one most likely had its number damaged, so the newcomer takes its place.
            self._drop(SEQ_JUMP, self._buffer[ext][0].sequence)
            self._unconfirmed.discard(ext)
            self._buffer[ext] = (datagram, now)
            self._highest = max(self._highest, ext)
        else:
            self._buffer[ext] = (datagram, now)
            self._confirm(ext)

    def _confirm(self, ext: int) -> None:
        """Count `ext` for the loss rules if it is in reach of the highest number that counts, or if an unconfirmed
        number is within MAX_LEAP of it (two datagrams agree on a jump); else leave it unconfirmed."""
        if ext <= self._highest + MAX_LEAP:
            self._highest = max(self._highest, ext)
            return
        near = {u for u in self._unconfirmed if abs(u - ext) <= MAX_LEAP}
        if not near:
            self._unconfirmed.add(ext)
            return
        self._unconfirmed -= near
        self._highest = max(ext, *near)

    def _resync(self, seq: int) -> None:
        self._release(None, flush=True)
        if self._unit is not None:
            self._drop_unit(INCOMPLETE)
        self._next = (max(self._next, self._highest) | (SEQ_MODULUS - 1)) + 1 + seq  # beyond every old number
        self._highest = self._reported = self._next
        self._unconfirmed.clear()  # the flush released them all
        self._released.clear()
        self._released_set.clear()
        self._probe = None
        self._last_frame, self._broken = None, True  # frame indices may start again
        self.stats.resyncs += 1
        self._events.append(ResyncEvent(seq))

    # -- the window -----------------------------------------------------------------------------------------

    def _report_missing(self) -> None:
        """Numbers below the highest confirmed one that have not arrived (or only unconfirmed), each once."""
        if self._reported is None or self._highest <= self._reported:
            return
        start, self._reported = max(self._reported, self._next), self._highest
        seqs = [ext for ext in range(start, self._highest) if self._awaited(ext)]
        if seqs:
            self.stats.missing += len(seqs)
            self._events.append(MissingEvent(tuple(ext % SEQ_MODULUS for ext in seqs)))

    def _awaited(self, ext: int) -> bool:
        """Whether number `ext` is still to come: not arrived, or only unconfirmed."""
        return ext not in self._buffer or ext in self._unconfirmed

    def _release(self, now: float | None, flush: bool = False) -> None:
        while self._buffer:
            if self._next in self._buffer and self._next not in self._unconfirmed:
                self._release_next()
                continue
            until = self._give_up_below(now, flush)
            if until <= self._next:
                break
            if self._next in self._buffer:
                self._release_next()  # unconfirmed, but its number is given up on: what came is used
                continue
            self._declare_lost(min(until, min(self._buffer)))  # up to the next datagram waiting, which gets its turn

    def _release_next(self) -> None:
        datagram, _ = self._buffer.pop(self._next)
        self._unconfirmed.discard(self._next)
        self._released.append(self._next)
        self._released_set.add(self._next)
        self._next += 1
        while self._released[0] < self._next - self.max_misorder:
            self._released_set.discard(self._released.popleft())
        self._reassemble(datagram)

    def _give_up_below(self, now: float | None, flush: bool) -> int:
        """The number below which the receiver waits no longer: the loss rules, applied to confirmed datagrams only
        (one unconfirmed datagram says nothing about the numbers before it)."""
        if flush:
            return max(self._buffer) + 1
        confirmed = [ext for ext in self._buffer if ext not in self._unconfirmed]
        if not confirmed:
            return self._next
        first = min(confirmed)
        if self._waited(now):
            return first  # time is up: everything before the first confirmed datagram waiting
        return min(first, self._highest - self.window + 1)  # gaps with `window` arrivals beyond them

    def _waited(self, now: float | None) -> bool:
        """Whether the datagram that has waited longest behind a gap has waited max_delay seconds."""
        if now is None or self.max_delay is None:
            return False
        arrivals = [t for ext, (_, t) in self._buffer.items() if t is not None and ext not in self._unconfirmed]
        return bool(arrivals) and now - min(arrivals) >= self.max_delay

    def _declare_lost(self, until: int) -> None:
        seqs = range(self._next, until)
        self.stats.lost += len(seqs)
        self._events.append(LossEvent(tuple(s % SEQ_MODULUS for s in seqs)))
        self._next = until
        self._broken = True
        if self._unit is not None and self._unit.problem is None:  # a fragment of it is missing
            self._unit.problem, self._unit.pieces = INCOMPLETE, []

    # -- reassembly ------------------------------------------------------------------------------------------

    def _reassemble(self, datagram: Datagram) -> None:
        unit = self._unit
        if unit is not None and (datagram.start or datagram.kind != unit.kind or datagram.timestamp != unit.timestamp):
            self._drop_unit(INCOMPLETE)  # a unit began (or a fragment of another one came) before it ended
            unit = None
        if unit is None:
            # A fragment other than the first with nothing before it: the first was lost or dropped.
            unit = self._unit = _Unit(datagram.kind, datagram.timestamp, [], [],
                                      problem=None if datagram.start else INCOMPLETE,
                                      first_byte=datagram.fragment[0] if datagram.start and datagram.kind == UNIT_PACKET
                                      else None)
        unit.seqs.append(datagram.sequence)
        if unit.problem is None:
            unit.size += len(datagram.fragment)
            if unit.size > (MAX_HEADER_UNIT if unit.kind == UNIT_HEADER else MAX_PACKET_UNIT):
                unit.problem, unit.pieces = TOO_LARGE, []
            else:
                unit.pieces.append(datagram.fragment)
        if datagram.end:
            if unit.problem is not None:
                self._drop_unit(unit.problem)
            else:
                self._complete(unit)

    def _drop_unit(self, reason: str) -> None:
        unit, self._unit = self._unit, None
        self.stats.dropped[reason] += len(unit.seqs)
        self._broken = True
        self._events.append(UnitDropEvent(reason, unit.kind, unit.timestamp, tuple(unit.seqs), unit.first_byte))

    def _use(self, unit: _Unit) -> None:
        self._unit = None
        self.stats.used += len(unit.seqs)

    def _complete(self, unit: _Unit) -> None:
        data = b"".join(unit.pieces)
        if unit.kind == UNIT_HEADER:
            if header_id(data) != self.header_id or _header_problem(data) or \
                    (self.header_bytes is not None and data != self.header_bytes):
                self._drop_unit(BAD_HEADER)
                return
            self._use(unit)
            self._last_frame = None  # decoding may start again here: frame indices are checked from the next one
            if self.header_bytes is None:
                self.header, _, self.version = parse_header(data)
                self.header_bytes = data
                self._events.append(HeaderEvent(self.header, self.version, self.header_id, data))
            return
        if self.header is None:
            self._drop_unit(NO_HEADER)
            return
        packet, reason = self._packet(data, unit.timestamp)
        if packet is None:
            if reason == FRAME_INDEX:
                # Either this timestamp is wrong or the last one was: forget it, so that one bad timestamp that got
                # through after a loss costs one packet more, not every packet up to the next header unit.
                self._last_frame = None
            self._drop_unit(reason)
            return
        self._use(unit)
        self.stats.packets += 1
        self._events.append(PacketEvent(packet, unit.timestamp, unit.seqs[0], unit.seqs[-1], self._broken, data))
        if isinstance(packet, (KeyframePacket, MotionPacket)):
            self._last_frame, self._broken = unit.timestamp, False

    def _packet(self, data: bytes, timestamp: int) -> tuple[Packet | None, str | None]:
        """The packet a unit holds, checked on its own (spec §12.6), or (None, the drop reason)."""
        packet_type = data[0]
        try:
            length, pos = decode_varint(data, 1)
        except BitstreamError:
            return None, BAD_PACKET
        if packet_type == 0 or length > body_cap(packet_type, self.version) or pos + length + CRC.size != len(data):
            return None, BAD_PACKET
        if CRC.unpack_from(data, pos + length)[0] != zlib.crc32(data[:pos + length]):
            return None, BAD_CRC
        body = data[pos:pos + length]
        try:
            if packet_type == PacketType.MOTION or (packet_type == PacketType.RESYNC and defines(packet_type,
                                                                                                  self.version)):
                delta, _ = decode_varint(body, 0)
                previous = timestamp - delta
                if previous < 0 or (not self._broken and self._last_frame is not None and previous != self._last_frame):
                    return None, FRAME_INDEX
                packet = decode_body(packet_type, body, previous, self.version, self.header.keyframe_codec)
            else:
                packet = decode_body(packet_type, body, 0, self.version, self.header.keyframe_codec)
        except BitstreamError:
            return None, BAD_PACKET
        if isinstance(packet, (KeyframePacket, MotionPacket)):
            if packet.frame_index != timestamp or timestamp > MAX_FRAME_INDEX or \
                    (self._last_frame is not None and timestamp <= self._last_frame):
                return None, FRAME_INDEX
        if isinstance(packet, (KeyframePacket, UseSlotPacket)) and packet.slot >= self.header.ref_slots:
            return None, BAD_PACKET
        if isinstance(packet, KeyframePacket) and annexb_problem(packet.annexb, self.header.predicted_keyframes,
                                                                 self.header.keyframe_codec):
            return None, BAD_PACKET
        if isinstance(packet, NotePacket) and note_problem(packet.body):
            return None, BAD_PACKET
        return packet, None


def _header_run(datagrams: list[Datagram], last: Datagram) -> list[Datagram] | None:
    """Consecutive datagrams from a start to an end fragment, of one timestamp, that include `last`."""
    by_seq = {d.sequence: d for d in datagrams}
    for start in (d for d in datagrams if d.start and d.timestamp == last.timestamp):
        run, seq = [start], start.sequence
        while not run[-1].end:
            seq = (seq + 1) % SEQ_MODULUS
            d = by_seq.get(seq)
            if d is None or d.start or d.timestamp != start.timestamp or len(run) == len(datagrams):
                break
            run.append(d)
        if run[-1].end and any(d is last for d in run):
            return run
    return None


def _header_problem(data: bytes) -> bool:
    """Whether `data` is not exactly one valid stream header."""
    try:
        _, size, _ = parse_header(data)
    except BitstreamError:
        return True
    return size != len(data)
