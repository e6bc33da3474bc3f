""".fvc over UDP (spec §12): RTP datagrams carrying the stream header and packets, fragmented to fit the MTU,
the receiving side's jitter window, loss detection and reassembly, RTCP feedback (PLI and NACK), and the
sender's history for re-sending what a NACK names.

Torch-free like the rest of `bitstream`: a sender, a receiver and tests use it without a model.
"""
from .depacketizer import (DropEvent, Depacketizer, Event, HeaderEvent, LossEvent, MissingEvent, PacketEvent,
                           ResyncEvent, TransportStats, UnitDropEvent)
from .feedback import Feedback, FeedbackParser, feedback_datagrams, nack_entries, parse_feedback
from .history import SentHistory
from .rtp import (DEFAULT_MAX_DATAGRAM, DEFAULT_PAYLOAD_TYPE, DROP_REASONS, UNIT_HEADER, UNIT_PACKET, Datagram,
                  Packetizer, build_datagram, header_id, packetize_stream, parse_datagram)

__all__ = [
    "DEFAULT_MAX_DATAGRAM", "DEFAULT_PAYLOAD_TYPE", "DROP_REASONS", "Datagram", "Depacketizer", "DropEvent", "Event",
    "Feedback", "FeedbackParser", "HeaderEvent", "LossEvent", "MissingEvent", "PacketEvent", "Packetizer",
    "ResyncEvent", "SentHistory", "TransportStats", "UNIT_HEADER", "UNIT_PACKET", "UnitDropEvent", "build_datagram",
    "feedback_datagrams", "header_id", "nack_entries", "packetize_stream", "parse_datagram", "parse_feedback",
]
