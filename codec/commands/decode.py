"""`fvc decode`: an .fvc stream into a video, PNG frames or raw rgb24, with free view when asked."""
from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

from ..errors import InputError, TruncatedDecode
from ..model_loading import model_for_stream
from .common import (EXIT_OK, check_input, check_output, frames_text, progress, silence_stdout, speed_text,
                     video_format, warn_untrained)


def run(args) -> int:
    """`fvc decode ARGS`."""
    try:
        return _decode(args)
    except BrokenPipeError:
        # `fvc decode s.fvc - | head`: the reader has what it wants; stop quietly, as cat does.
        silence_stdout()
        return EXIT_OK


def _decode(args) -> int:
    from bitstream import BitstreamError, StreamReader

    from .. import video
    from ..decoder import Decoder, DecoderOptions

    src = check_input(args.input)
    to_stdout = args.output == "-"
    out = None if to_stdout else check_output(args.output, args.force)
    if to_stdout:
        container = "raw"
    elif args.format == "png":
        container = "png"
    else:
        container = video_format(out, " (--format png writes PNG frames into a folder)")
    report = sys.stderr if to_stdout else sys.stdout
    options = DecoderOptions(args.yaw, args.pitch, args.roll, args.frontalize)
    try:
        reader = StreamReader(src)
    except BitstreamError as exc:
        raise InputError(f"{src}: {exc}") from None
    with reader:
        header = reader.header
        if header.frame_count and args.start >= header.frame_count:
            raise _past_the_end(src, args.start, header.frame_count)
        stop = args.start + args.frames if args.frames else None
        ends = [n for n in (stop, header.frame_count) if n]
        loaded = model_for_stream(header, args.model, args.device)
        warn_untrained(loaded)
        decoder = Decoder(loaded.model, header, options)
        sink = video.VideoWriter(video.STDOUT if to_stdout else out, fps=header.fps, crf=args.crf,
                                 format=container, force=args.force)
        seen, written, damage, latency = 0, 0, None, []
        start = time.perf_counter()
        try:
            with progress(min(ends) - args.start if ends else None, "decode", args.quiet or to_stdout) as bar:
                try:
                    # Frames before --start are decoded all the same: motion frames build on their keyframe.
                    frames = itertools.islice(_stream_frames(reader, decoder, latency), stop)
                    for seen, frame in enumerate(frames, 1):
                        if seen > args.start:
                            sink.write(frame)
                            written += 1
                            bar.update(1)
                except BitstreamError as exc:
                    damage = exc
        except BaseException:
            sink.abort()
            raise
        if written == 0:
            sink.abort()
            raise InputError(f"{src}: {damage}") if damage else _past_the_end(src, args.start, seen)
        sink.close()
    seconds = time.perf_counter() - start
    where = "stdout" if to_stdout else str(out)
    if damage is not None:
        where_damaged = f"packet {damage.packet} at byte" if damage.packet is not None else "byte"
        raise TruncatedDecode(f"{src}: decoding stopped at {where_damaged} {damage.offset} ({damage.message}); "
                              f"wrote the {frames_text(written)} before it to {where}", written)
    if not args.quiet:
        print(f"wrote {frames_text(written)} {header.width}x{header.height} at {header.fps_num}/{header.fps_den} fps "
              f"to {where} {speed_text(written, seconds, latency, 'decode')}", file=report)
    return EXIT_OK


def _stream_frames(reader, decoder, latency: list[float]):
    """Every frame of the stream, in order; the time of each packet decode that yields frames goes to `latency`."""
    for record in reader.records():
        t0 = time.perf_counter()
        frames = decoder.push(record.packet, record.offset)
        if frames:
            latency.append((time.perf_counter() - t0) * 1000.0)
        yield from frames


def _past_the_end(src: Path, start: int, count: int) -> InputError:
    """The error for a --start at or beyond the stream's `count` frames."""
    return InputError(f"{src}: --start {start} is past the end of the stream ({frames_text(count)}; the first "
                      f"is frame 0)")

