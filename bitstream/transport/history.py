"""The sender's recent datagrams by sequence number, so that it can re-send, unchanged, those a NACK names (§12.8)."""
from __future__ import annotations

import struct
from collections import OrderedDict

# A receiver gives a missing number up after its max delay (100 ms in fvc receive); a second leaves room for a
# slow path's round trip and a longer delay, and a datagram older than that would arrive after its frame was shown.
HISTORY_SECONDS = 1.0
# ... and at most this many (1.2 MB of full datagrams): bounds memory when a clock stands still or keyframes are large.
HISTORY_DATAGRAMS = 1024
# Re-sends of one datagram: a repeated NACK may mean the copy was lost too, but a NACK flood must not multiply traffic.
MAX_RESENDS = 3
SEQUENCE = struct.Struct(">H")  # the RTP sequence number, at byte 2


class SentHistory:
    """The datagrams sent in the last `seconds` (at most `limit` of them); `resend` returns those still held."""

    def __init__(self, seconds: float = HISTORY_SECONDS, limit: int = HISTORY_DATAGRAMS):
        if seconds < 0 or limit < 0:
            raise ValueError("history seconds and limit must be >= 0")
        self.seconds, self.limit = seconds, limit
        self._sent: OrderedDict[int, list] = OrderedDict()  # seq -> [time sent, datagram, re-sends]

    def __len__(self) -> int:
        return len(self._sent)

    def add(self, datagram: bytes, now: float) -> None:
        """Remember a datagram just sent (a later one with the same number replaces it)."""
        seq = SEQUENCE.unpack_from(datagram, 2)[0]
        self._sent.pop(seq, None)
        self._sent[seq] = [now, bytes(datagram), 0]
        self._expire(now)

    def resend(self, seqs, now: float) -> list[bytes]:
        """The datagrams numbered `seqs` still held and re-sent fewer than MAX_RESENDS times, in the order named."""
        self._expire(now)
        out = []
        for seq in dict.fromkeys(seqs):
            entry = self._sent.get(seq)
            if entry is not None and entry[2] < MAX_RESENDS:
                entry[2] += 1
                out.append(entry[1])
        return out

    def _expire(self, now: float) -> None:
        while self._sent and (len(self._sent) > self.limit or now - next(iter(self._sent.values()))[0] > self.seconds):
            self._sent.popitem(last=False)
