"""`fvc send`: encode a video in real time and send it over UDP (spec §12), answering keyframe requests."""
from __future__ import annotations

import itertools
import sys
from fractions import Fraction
from pathlib import Path
from statistics import mean

from .. import __version__
from ..errors import InputError
from ..model_loading import load_model_spec
from .common import EXIT_OK, count_text, frames_text, progress, refuse_fvc_stream, resolve_crop, warn_untrained


def run(args) -> int:
    """`fvc send IN udp://HOST:PORT`."""
    from .. import video
    from ..encoder import Encoder
    from ..live import LiveSender, parse_udp_url, udp_socket
    from .encode import encoder_config

    host, port = parse_udp_url(args.url)
    src = Path(args.input)
    if not src.exists():
        raise InputError(f"{args.input}: no such file or device")
    if src.is_file():
        refuse_fvc_stream(src)
    if args.kbps is not None:
        raise InputError("--kbps needs the whole clip (rate control codes it more than once); a live sender sets "
                         "--keyframe-qp")
    info = video.probe(src)
    loaded = load_model_spec(args.model, args.device)
    warn_untrained(loaded)
    fps = Fraction(args.fps).limit_denominator(1001) if args.fps else Fraction(info.fps)
    crop = resolve_crop(args, src, info, args.quiet)
    frames = video.read_frames(src, size=args.size, crop=crop, fps=args.fps)
    if args.frames:
        frames = itertools.islice(frames, args.frames)
    config = encoder_config(args, fps, info, crop)
    encoder = Encoder(loaded.model, config, loaded.model_id)
    sock, address = udp_socket(host, port, bind=False)
    counts = [n for n in (None if args.fps else info.frames, args.frames) if n]
    total = min(counts) if counts else None
    try:
        sender = LiveSender(encoder, sock, address, payload_type=args.payload_type, max_datagram=args.max_datagram,
                            note={"writer": f"fvc {__version__} send", **config.note}, retransmit=args.nack)
        with progress(total, "send", args.quiet) as bar:
            def update(stats):
                bar.set_postfix(keyframes=stats.keyframes, plis=stats.plis)
                bar.update(1)
            stats = sender.run(frames, fps, realtime=args.realtime, on_frame=update)
    finally:
        sock.close()
    if not args.quiet:
        print(send_summary(args.url, stats, fps, encoder, retransmit=args.nack), file=sys.stderr)
    return EXIT_OK


def send_summary(url: str, stats, fps: Fraction, encoder, retransmit: bool = True) -> str:
    """The lines `fvc send` prints when the input ends (`retransmit`: --nack)."""
    seconds = max(stats.seconds, 1e-9)
    resync = encoder.stats.resync_packets
    ms = sorted(stats.encode_ms) or [0.0]
    return "\n".join([
        f"sent {frames_text(stats.frames)} to {url} in {stats.seconds:.1f} s ({stats.frames / seconds:.2f} fps, "
        f"input {float(fps):g} fps); {count_text(stats.late_frames, 'frame', 'frames')} started late",
        f"datagrams: {stats.datagrams:,}, {stats.bytes:,} B ({stats.bytes * 8 / seconds / 1000:.1f} kbps with RTP "
        f"headers); {stats.keyframes} keyframes, {resync} RESYNC packets",
        f"feedback: {count_text(stats.plis, 'keyframe request', 'keyframe requests')} (PLI), "
        f"{stats.answered_plis} answered with an IDR; {stats.nacked} sequence numbers named missing (NACK), "
        + (f"{stats.resent} datagrams re-sent ({stats.resent_bytes:,} B)" if retransmit else "none re-sent (--no-nack)")
        + f"; {stats.feedback_dropped} feedback datagrams dropped",
        f"encode: mean {mean(ms):.0f} ms a frame, p95 {ms[int(0.95 * (len(ms) - 1))]:.0f} ms",
    ])
