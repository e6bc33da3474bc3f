"""`fvc animate`: a still portrait driven by the motion of a video."""
from __future__ import annotations

import time

from ..errors import InputError
from ..model_loading import load_model_spec
from .common import (EXIT_OK, check_input, check_output, frames_text, progress, refuse_fvc_stream, resolve_crop,
                     speed_text, video_format, warn_untrained)


def run(args) -> int:
    """`fvc animate ARGS`."""
    from .. import video
    from ..decoder import Animator

    source_path, driving_path = check_input(args.source), check_input(args.driving)
    refuse_fvc_stream(source_path)
    refuse_fvc_stream(driving_path)
    out = check_output(args.output, args.force)
    container = video_format(out)
    info = video.probe(driving_path)
    source = next(iter(video.read_frames(source_path, size=args.size)), None)
    if source is None:
        raise InputError(f"{args.source}: no image in it")
    loaded = load_model_spec(args.model, args.device)
    warn_untrained(loaded)
    crop = resolve_crop(args, driving_path, info, args.quiet)
    animator = Animator(loaded.model, source, args.size)
    writer = video.VideoWriter(out, fps=info.fps, crf=args.crf, format=container, force=args.force)
    latency = []
    start = time.perf_counter()
    try:
        with progress(info.frames or None, "animate", args.quiet) as bar:
            for frame in video.read_frames(driving_path, size=args.size, crop=crop):
                t0 = time.perf_counter()
                animated = animator.push(frame)
                latency.append((time.perf_counter() - t0) * 1000.0)
                writer.write(animated)
                bar.update(1)
        if not latency:
            raise InputError(f"{args.driving}: no video frames")
    except BaseException:
        writer.abort()
        raise
    writer.close()
    seconds = time.perf_counter() - start
    if not args.quiet:
        print(f"wrote {frames_text(len(latency))} {args.size}x{args.size} at {info.fps.numerator}/"
              f"{info.fps.denominator} fps to {out} {speed_text(len(latency), seconds, latency, 'animation')}")
    return EXIT_OK

