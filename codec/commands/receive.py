"""`fvc receive`: receive an .fvc stream over UDP (spec §12), decode it with concealment, write what it shows."""
from __future__ import annotations

import sys

from ..errors import InputError
from ..model_loading import model_for_stream
from .common import (EXIT_OK, check_output, count_text, frames_text, silence_stdout, video_format, warn_untrained)


def run(args) -> int:
    """`fvc receive udp://HOST:PORT OUT`."""
    try:
        return _receive(args)
    except BrokenPipeError:
        silence_stdout()  # the player reading raw frames went away
        return EXIT_OK


def _receive(args) -> int:
    from .. import video
    from ..live import LiveReceiver, NetworkSimulator, parse_udp_url, udp_socket

    host, port = parse_udp_url(args.url)
    to_stdout = args.output == "-"
    out = None if to_stdout else check_output(args.output, args.force)
    container = "raw" if to_stdout else "png" if args.format == "png" else video_format(
        out, " (--format png writes PNG frames into a folder)")
    report = sys.stderr if to_stdout else sys.stdout
    simulator = NetworkSimulator(args.loss, args.delay / 1000.0, args.seed)
    if args.window < 1:
        raise InputError(f"--window {args.window} must be >= 1")
    sinks = []

    def load_model(header):
        loaded = model_for_stream(header, args.model, args.device)
        warn_untrained(loaded)
        sinks.append(video.VideoWriter(video.STDOUT if to_stdout else out, fps=header.fps, crf=args.crf,
                                       format=container, force=args.force))
        return loaded.model

    def show(frame):
        if args.frames is None or sinks[0].frames_written < args.frames:
            sinks[0].write(frame.image)

    # Torch and the networks load now, not when the first datagrams wait for them (that would be latency).
    from .. import decoder, motion_model  # noqa: F401

    sock, _ = udp_socket(host, port, bind=True)
    try:
        receiver = LiveReceiver(sock, load_model, show, simulator=simulator, window=args.window,
                                max_delay=args.max_delay / 1000.0, payload_type=args.payload_type, nack=args.nack)
        if not args.quiet:
            print(f"listening on {args.url}", file=sys.stderr)
        stats = receiver.run(timeout=args.timeout, max_frames=args.frames, first_timeout=args.wait)
    except BaseException:
        for sink in sinks:
            sink.abort()
        raise
    finally:
        sock.close()
    if not sinks or sinks[0].frames_written == 0:
        for sink in sinks:
            sink.abort()
        what = "no stream header" if receiver.decoder is None else "no frame to show"
        raise InputError(f"{args.url}: {what} arrived ({stats.datagrams} datagrams)")
    sinks[0].close()
    if not args.quiet:
        print(receive_summary(args, receiver, "stdout" if to_stdout else str(out)), file=report)
    return EXIT_OK


def receive_summary(args, receiver, where: str) -> str:
    """The lines `fvc receive` prints at the end: frames, loss, concealment, keyframe requests and latency."""
    from ..live import latency_text

    stats, shown, transport = receiver.stats, receiver.decoder.stats, receiver.depacketizer.stats
    sim = receiver.simulator
    dropped = ", ".join(f"{reason} {n}" for reason, n in sorted(transport.dropped.items())) or "none"
    header = receiver.header
    return "\n".join([
        f"wrote {frames_text(shown.shown)} {header.width}x{header.height} to {where} "
        f"({'the END packet arrived' if stats.ended else 'no END packet: stopped waiting'})",
        f"frames: {shown.decoded} decoded, {shown.concealed} concealed, {shown.unshown} not shown "
        f"({shown.motion_skipped} motion packets skipped after a loss, {shown.resyncs} RESYNCs resumed decoding)",
        f"loss: {stats.datagrams} datagrams arrived, {sim.dropped} dropped by --loss {args.loss:g} "
        f"(--delay {args.delay:g} ms, --seed {args.seed}); transport: {transport.lost} sequence numbers lost, "
        f"dropped {dropped}",
        f"keyframes: {shown.keyframes_lost} lost or unusable, "
        f"{count_text(shown.keyframe_requests, 'keyframe request', 'keyframe requests')} "
        f"({stats.plis_sent} PLI sent); "
        + (f"{stats.nacks_sent} sequence numbers sent in NACKs" if args.nack else "no NACKs (--no-nack)"),
        latency_text(stats.latency_ms),
    ])
