"""fvc in real time over UDP (spec §12): the sender and receiver loops behind `fvc send` and `fvc receive`.

The sender encodes frames as they come due (frame k at start + k / fps), sends each packet's RTP datagrams,
answers a keyframe request (RTCP PLI) with an IDR and re-sends the datagrams a NACK names while it holds them. The
receiver reassembles the datagrams, decodes them with concealment (codec.decoder.ConcealingDecoder), and sends PLI
and NACK back to where the datagrams come from. A seeded NetworkSimulator on the receiver drops and delays
datagrams in-process, so loss is reproducible on loopback.

Latency is measured from capture to display on one clock: the sender's first NOTE carries the wall-clock time
of frame 0 (member "live_start", seconds since the epoch), frame k is captured at live_start + k / fps, and
the receiver reads the clock when the frame is ready to show. Sender and receiver must share that clock (one
machine, or synchronised ones).
"""
from __future__ import annotations

import heapq
import random
import select
import socket
import time
from dataclasses import dataclass, field
from fractions import Fraction
from statistics import median
from typing import Callable, Iterable
from urllib.parse import urlsplit

import numpy as np

from bitstream import EndPacket, KeyframePacket, NotePacket, StreamHeader
from bitstream.constants import NOTE_MINOR
from bitstream.packets import ReasonNotes
from bitstream.transport import (DEFAULT_MAX_DATAGRAM, DEFAULT_PAYLOAD_TYPE, Depacketizer, FeedbackParser,
                                 HeaderEvent, MissingEvent, Packetizer, PacketEvent, SentHistory, feedback_datagrams,
                                 parse_datagram)

from .errors import InputError

LIVE_START = "live_start"  # NOTE member: wall-clock time (s since the epoch) at which frame 0 was captured
MAX_UDP = 65535
RECEIVE_BUFFER = 4 << 20
PLI_INTERVAL = 0.5  # s between repeated keyframe requests while a receiver waits for an IDR
PLI_HOLDOFF = 0.25  # s after a requested IDR during which a sender takes further PLIs as repeats of the same one
END_REPEATS = 3  # the END datagrams go out this many times: the receiver stops at the first
# After END the sender still answers NACKs this long: a receiver waits its max delay (100 ms by default) for a
# datagram missing before END, and the NACK and the copy need a round trip on top.
LINGER = 0.3
# A receiver NACKs a number still missing again this long after its last NACK: the re-sent copy was lost too, or the
# NACK was. A loopback or LAN round trip (the NACK and the copy, plus the sender's wait between frames) is well under
# it, and with fvc receive's max delay of 100 ms a number found missing gets NACKs at 0, 30 and 60 ms, each early
# enough for its copy to beat the deadline.
NACK_RETRY_INTERVAL = 0.03
# NACKs per sequence number, the first one included: as many as the sender re-sends one datagram (MAX_RESENDS in
# bitstream.transport.history), so a NACK is never wasted on a datagram the sender will not send again.
MAX_NACKS = 3


def parse_udp_url(text: str) -> tuple[str, int]:
    """(host, port) of `udp://HOST:PORT`; InputError for anything else."""
    parts = urlsplit(text)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "udp" or not parts.hostname or port is None or parts.path not in ("", "/") or parts.query:
        raise InputError(f"{text!r} is not udp://HOST:PORT")
    return parts.hostname, port


def udp_socket(host: str, port: int, bind: bool) -> tuple[socket.socket, tuple]:
    """A UDP socket for `host`'s address family, bound to (host, port) when `bind` (a receiver) or to an ephemeral
    port (a sender, whose feedback comes back to it); returns it and the address (host, port) resolves to."""
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    except socket.gaierror as exc:
        raise InputError(f"udp://{host}:{port}: {exc.strerror}") from None
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.bind(address if bind else (address[0], 0))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock, address


def drain(sock: socket.socket) -> list[tuple[bytes, tuple]]:
    """Every datagram waiting on the non-blocking `sock`, with its source address."""
    out = []
    while True:
        try:
            out.append(sock.recvfrom(MAX_UDP))
        except (BlockingIOError, InterruptedError):
            return out
        except ConnectionRefusedError:  # an ICMP error from an earlier send (nobody listened yet): ignored
            continue


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))] if ordered else float("nan")


# ---------------------------------------------------------------- sender

@dataclass
class SenderStats:
    frames: int = 0
    datagrams: int = 0
    bytes: int = 0  # UDP payload bytes, RTP headers included
    keyframes: int = 0
    answered_plis: int = 0  # IDRs coded because a receiver asked
    plis: int = 0  # PLI messages received
    nacked: int = 0  # sequence numbers receivers reported missing
    resent: int = 0  # datagrams re-sent for a NACK (counted in datagrams and bytes too)
    resent_bytes: int = 0
    feedback_dropped: int = 0  # feedback datagrams that were not for this stream or did not parse
    late_frames: int = 0  # frames whose encoding started more than one frame interval after they were due
    encode_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0


class LiveSender:
    """Encodes frames as they come due and sends them to `address`; answers PLI with an IDR and, when `retransmit`,
    a NACK by re-sending the named datagrams still in its history (spec §12.8)."""

    def __init__(self, encoder, sock: socket.socket, address: tuple, *, payload_type: int = DEFAULT_PAYLOAD_TYPE,
                 max_datagram: int = DEFAULT_MAX_DATAGRAM, note: dict | None = None,
                 clock: Callable[[], float] = time.time, retransmit: bool = True, linger: float = LINGER):
        self.encoder = encoder
        self.sock, self.address = sock, address
        self.packetizer = Packetizer(encoder.header.pack(NOTE_MINOR), payload_type=payload_type,
                                     max_datagram=max_datagram)
        self.feedback = FeedbackParser(self.packetizer.header_id)
        self.clock = clock
        self.note = dict(note or {})
        self.stats = SenderStats()
        self.history = SentHistory() if retransmit else SentHistory(limit=0)  # limit 0: NACKs are only counted
        self.reasons = ReasonNotes()
        self.linger = linger
        self._last_answer = -float("inf")

    def _send(self, datagrams: Iterable[bytes], remember: bool = True) -> None:
        for datagram in datagrams:
            try:
                self.sock.sendto(datagram, self.address)
            except (BlockingIOError, ConnectionRefusedError):
                pass  # a full buffer or nobody listening yet: that datagram is lost, as on any network
            self.stats.datagrams += 1
            self.stats.bytes += len(datagram)
            if remember:
                self.history.add(datagram, time.monotonic())

    def read_feedback(self) -> None:
        """Take the feedback waiting on the socket: a PLI asks for an IDR (repeats within PLI_HOLDOFF of the last
        one answered ask for the same one); a NACK re-sends, unchanged, the named datagrams the history holds."""
        for data, _ in drain(self.sock):
            answer = self.feedback.parse(data)
            if answer is None:
                self.stats.feedback_dropped += 1
                continue
            self.stats.nacked += len(answer.lost)
            again = self.history.resend(answer.lost, time.monotonic())
            self._send(again, remember=False)
            self.stats.resent += len(again)
            self.stats.resent_bytes += sum(len(d) for d in again)
            if answer.keyframe_request:
                self.stats.plis += 1
                if self.clock() - self._last_answer >= PLI_HOLDOFF:
                    self._last_answer = self.clock()
                    self.encoder.request_keyframe()
                    self.stats.answered_plis += 1

    def run(self, frames: Iterable[np.ndarray], fps: Fraction, realtime: bool = True,
            on_frame: Callable[[SenderStats], None] | None = None) -> SenderStats:
        """Send every frame of `frames`, frame k due at start + k / fps (at once when not `realtime`), then END.

        The start is when the first frame is read: frame k counts as captured k / fps later.
        """
        began = time.perf_counter()
        interval = 1.0 / float(fps)
        start, first_note = None, None
        for index, frame in enumerate(frames):
            if start is None:
                start = self.clock()
                first_note = NotePacket.of({**self.note, LIVE_START: start})
                self._send(self.packetizer.packetize(first_note))
            due = start + index * interval
            while realtime and (wait := due - self.clock()) > 0:
                select.select([self.sock], [], [], wait)
                self.read_feedback()
            self.read_feedback()
            if self.clock() - due > interval:
                self.stats.late_frames += 1
            t0 = time.perf_counter()
            packets = self.encoder.push(frame)
            self.stats.encode_ms.append((time.perf_counter() - t0) * 1000.0)
            for packet in packets:
                if isinstance(packet, KeyframePacket):
                    self.stats.keyframes += 1
                    if packet.intra and index > 0:
                        # A receiver that joins, or restarts, here needs the header and the capture clock first.
                        self._send(self.packetizer.header_datagrams(packet.frame_index))
                        self._send(self.packetizer.packetize(first_note))
                        self.reasons.reset()
                    reason = self.encoder.stats.keyframe_log[packet.frame_index].value
                    if (note := self.reasons.before(reason)) is not None:
                        self._send(self.packetizer.packetize(note))
                self._send(self.packetizer.packetize(packet))
            self.stats.frames += 1
            if on_frame is not None:
                on_frame(self.stats)
        end = self.packetizer.packetize(self.packetizer.sequence.expected_end(self.packetizer.offset))
        for _ in range(END_REPEATS):
            self._send(end)
        self.read_feedback()
        until = time.monotonic() + self.linger
        while (wait := until - time.monotonic()) > 0:  # NACKs for the last frames come after END
            select.select([self.sock], [], [], wait)
            self.read_feedback()
        self.stats.seconds = time.perf_counter() - began
        return self.stats


# ---------------------------------------------------------------- receiver

@dataclass
class NetworkSimulator:
    """Drops datagrams with probability `loss` and delivers the others `delay` seconds late, seeded (spec §12 tests
    and benchmarks on loopback).

    A datagram's draw depends on the seed, on the position at which its sequence number first arrived and on how
    many copies of it came before: a re-sent copy draws anew and changes no other datagram's fate, so runs with
    and without NACK lose the same first transmissions. `burst` > 0 also drops the first transmissions at positions
    `burst_at` ... `burst_at` + `burst` - 1.
    """

    loss: float = 0.0
    delay: float = 0.0
    seed: int = 0
    burst: int = 0
    burst_at: int = 0
    dropped: int = 0
    passed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.loss <= 1.0:
            raise InputError(f"--loss {self.loss:g} outside 0..1")
        if not self.delay >= 0.0:
            raise InputError(f"--delay must be >= 0 ms, got {self.delay * 1000:g}")
        if self.burst < 0 or self.burst_at < 0:
            raise InputError("a loss burst needs a length and a position >= 0")
        self._queue: list[tuple[float, int, bytes]] = []
        self._count = 0  # first transmissions seen: the next one's position
        self._arrivals = 0  # every arrival, copies included: the queue's tie-breaker
        self._positions: dict[bytes, list[int]] = {}  # RTP sequence number and SSRC -> [position, copies seen]

    def _drops(self, data: bytes) -> bool:
        key = bytes(data[2:4]) + bytes(data[8:12]) if len(data) >= 12 and data[0] >> 6 == 2 else None
        seen = self._positions.get(key) if key is not None else None
        if seen is None:
            seen = [self._count, 0]
            self._count += 1  # a copy takes no position: the first transmissions after it keep theirs
            if key is not None:
                self._positions[key] = seen
        else:
            seen[1] += 1
        position, copy = seen
        if copy == 0 and self.burst_at <= position < self.burst_at + self.burst:
            return True
        return random.Random(f"{self.seed}/{position}/{copy}").random() < self.loss

    def arrive(self, data: bytes, now: float) -> None:
        if self._drops(data):
            self.dropped += 1
            return
        self.passed += 1
        self._arrivals += 1
        heapq.heappush(self._queue, (now + self.delay, self._arrivals, data))

    def due(self, now: float) -> list[bytes]:
        out = []
        while self._queue and self._queue[0][0] <= now:
            out.append(heapq.heappop(self._queue)[2])
        return out

    def next_release(self) -> float | None:
        return self._queue[0][0] if self._queue else None


@dataclass
class ReceiverStats:
    datagrams: int = 0  # arrived on the socket (before the simulator)
    shown: int = 0
    latency_ms: list[float] = field(default_factory=list)  # capture to display, decoded frames
    plis_sent: int = 0
    nacks_sent: int = 0  # sequence numbers named in NACKs (each time it is named)
    renacks_sent: int = 0  # ... of them named again, still missing NACK_RETRY_INTERVAL after the last time
    ended: bool = False  # the END packet arrived
    seconds: float = 0.0


class LiveReceiver:
    """Receives one stream on `sock`, decodes it with concealment and hands every frame it shows to `show`.

    `load_model(header)` returns the model for the stream once its header arrives. `simulator` drops and delays
    datagrams in-process. With `nack`, every sequence number found missing is named in a NACK at once, and a copy
    the sender re-sends is used if it arrives within `max_delay` (the transport holds what follows until then); a
    number still missing `nack_retry` s after its last NACK is named again, up to `max_nacks` NACKs in all, while
    a copy sent then could still arrive in time (`nack_retry` before the transport gives it up).
    """

    def __init__(self, sock: socket.socket, load_model: Callable[[StreamHeader], object],
                 show: Callable[[object], None], *, simulator: NetworkSimulator | None = None,
                 window: int = 16, max_delay: float = 0.1, payload_type: int = DEFAULT_PAYLOAD_TYPE,
                 clock: Callable[[], float] = time.time, nack: bool = True, nack_retry: float = NACK_RETRY_INTERVAL,
                 max_nacks: int = MAX_NACKS):
        if nack_retry <= 0 or max_nacks < 1:
            raise ValueError("nack_retry must be > 0 and max_nacks >= 1")
        self.sock = sock
        self.load_model = load_model
        self.show = show
        self.simulator = simulator or NetworkSimulator()
        self.depacketizer = Depacketizer(window=window, max_delay=max_delay, payload_type=payload_type)
        self.clock = clock
        self.nack, self.nack_retry, self.max_nacks = nack, nack_retry, max_nacks
        self._nacked: dict[int, list] = {}  # sequence number still missing -> [time of its last NACK, NACKs]
        self.decoder = None
        self.header: StreamHeader | None = None
        self.header_id: int | None = None
        self.sender: tuple | None = None  # where datagrams come from: feedback goes there
        self.start_time: float | None = None  # capture clock of frame 0 (the sender's NOTE)
        self.stats = ReceiverStats()
        self._first_arrival: float | None = None
        self._last_pli = -float("inf")
        self._ssrc_seen: int | None = None

    # -- feedback ---------------------------------------------------------------------------------------------

    def _feedback(self, header_id: int, keyframe_request: bool = False, lost: tuple[int, ...] = ()) -> None:
        if self.sender is None:
            return
        for datagram in feedback_datagrams(header_id, keyframe_request, lost):
            try:
                self.sock.sendto(datagram, self.sender)
            except (BlockingIOError, ConnectionRefusedError):
                pass
        self.stats.plis_sent += keyframe_request
        self.stats.nacks_sent += len(lost)

    def request_keyframe(self) -> None:
        """Send a PLI for the stream followed (before its header arrived: the one whose datagrams arrive)."""
        target = self.header_id if self.header_id is not None else self._ssrc_seen
        if target is not None:
            self._last_pli = time.monotonic()
            self._feedback(target, keyframe_request=True)

    # -- the loop ---------------------------------------------------------------------------------------------

    def run(self, timeout: float = 5.0, max_frames: int | None = None, first_timeout: float | None = None) -> ReceiverStats:
        """Receive until the END packet, `max_frames` frames shown, or `timeout` s without a datagram
        (`first_timeout` s for the first one, default `timeout`)."""
        began = time.perf_counter()
        last_arrival = time.monotonic()
        limit = first_timeout if first_timeout is not None else timeout
        while not self.stats.ended and (max_frames is None or self.stats.shown < max_frames):
            now = time.monotonic()
            deadlines = [last_arrival + limit, now + 0.05]
            if (release := self.simulator.next_release()) is not None:
                deadlines.append(release)
            if (renack := self._next_renack()) is not None:
                deadlines.append(renack)
            readable, _, _ = select.select([self.sock], [], [], max(0.0, min(deadlines) - now))
            now = time.monotonic()
            if readable:
                arrivals = drain(self.sock)
                for data, address in arrivals:
                    self.stats.datagrams += 1
                    self.sender = address
                    self.simulator.arrive(data, now)
                if arrivals:
                    last_arrival, limit = now, timeout
                    if self._first_arrival is None:
                        self._first_arrival = now
            for data in self.simulator.due(now):
                if self.header_id is None:
                    parsed = parse_datagram(data)[0]
                    if parsed is not None:
                        self._ssrc_seen = parsed.header_id
                self._handle(self.depacketizer.push(data, now=now))
            self._handle(self.depacketizer.poll(now))
            self._renack(now)
            self._keep_asking(now)
            if now - last_arrival >= limit:
                break
        self._handle(self.depacketizer.flush())
        self.stats.seconds = time.perf_counter() - began
        return self.stats

    def _next_renack(self) -> float | None:
        """When a number is next due for another NACK, if one may be."""
        return min(last for last, _ in self._nacked.values()) + self.nack_retry if self._nacked else None

    def _renack(self, now: float) -> None:
        """NACK again the numbers still missing nack_retry after their last NACK, fewer than max_nacks times named,
        whose copy could still arrive before the transport gives them up (spec §12.8); forget the others."""
        if not self._nacked:
            return
        missing = dict(self.depacketizer.missing_now())
        # Forget what arrived or was declared lost, was named max_nacks times, or is given up on before a copy asked
        # for now could come (a number's deadline never moves: the datagrams above it wait until it is released).
        self._nacked = {seq: entry for seq, entry in self._nacked.items() if seq in missing
                        and entry[1] < self.max_nacks and (missing[seq] is None or now + self.nack_retry <= missing[seq])}
        # A microsecond's slack: select() wakes at the deadline to within float rounding, and must not spin.
        again = [seq for seq, (last, _) in self._nacked.items() if now - last >= self.nack_retry - 1e-6]
        if again and self.header_id is not None:
            for seq in again:
                self._nacked[seq] = [now, self._nacked[seq][1] + 1]
            self._feedback(self.header_id, lost=tuple(again))
            self.stats.renacks_sent += len(again)

    def _keep_asking(self, now: float) -> None:
        """Repeat the keyframe request while one is needed; before any header, ask for one too (a late join)."""
        waiting = self.decoder.keyframe_needed if self.decoder is not None else (
            self._first_arrival is not None and now - self._first_arrival >= PLI_INTERVAL)
        if waiting and now - self._last_pli >= PLI_INTERVAL:
            self.request_keyframe()

    def _handle(self, events) -> None:
        for event in events:
            if isinstance(event, HeaderEvent) and self.decoder is None:
                from .decoder import ConcealingDecoder

                self.header, self.header_id = event.header, event.header_id
                self.decoder = ConcealingDecoder(self.load_model(event.header), event.header,
                                                 on_keyframe_request=self.request_keyframe)
                continue
            if isinstance(event, MissingEvent) and self.nack and self.header_id is not None:
                self._feedback(self.header_id, lost=event.seqs)
                now = time.monotonic()
                for seq in event.seqs:
                    self._nacked[seq] = [now, 1]
            if isinstance(event, PacketEvent):
                if isinstance(event.packet, NotePacket):
                    start = event.packet.fields.get(LIVE_START)
                    if isinstance(start, (int, float)) and not isinstance(start, bool):
                        self.start_time = float(start)
                elif isinstance(event.packet, EndPacket):
                    self.stats.ended = True
            if self.decoder is None:
                continue
            for frame in self.decoder.handle(event):
                self._display(frame)

    def _display(self, frame) -> None:
        from .decoder import FrameSource

        if self.start_time is not None and frame.source != FrameSource.CONCEALED:
            capture = self.start_time + frame.index * float(self.header.fps_den) / self.header.fps_num
            self.stats.latency_ms.append((self.clock() - capture) * 1000.0)
        self.stats.shown += 1
        self.show(frame)


def latency_text(latency_ms: list[float]) -> str:
    if not latency_ms:
        return "latency: not measured (no decoded frame, or no capture clock from the sender)"
    return (f"latency capture to display: median {median(latency_ms):.0f} ms, p95 {percentile(latency_ms, 0.95):.0f} "
            f"ms, max {max(latency_ms):.0f} ms over {len(latency_ms)} decoded frames")
