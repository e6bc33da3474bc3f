"""`fvc encode`: a video into an .fvc stream, with rate control when asked, and the summary it prints."""
from __future__ import annotations

import itertools
import sys
import time
from fractions import Fraction
from pathlib import Path

from bitstream.constants import KeyframeCodec

from ..coding_defaults import DEFAULT_KEYFRAME_QP, DEFAULT_PRESET, PRESETS
from ..errors import InputError, OutputError
from ..model_loading import LoadedModel, load_model_spec
from .common import (EXIT_OK, check_encode_files, check_input, check_output, count_text, frames_text, progress,
                     resolve_crop, warn_untrained)


def encode_frames(frame_source, total: int | None, loaded: LoadedModel, config, kbps: float | None,
                  strict_rate: bool, out: Path, force: bool, quiet: bool, quality: float | None = None):
    """Encode the clip `frame_source()` yields into `out` (with rate control when `kbps` is set: on the keyframe
    QP, or on `quality` when given)."""
    from ..encoder import encode_clip, encode_to_rate, rate_knob
    from ..quality_rate import RATE_TOLERANCE, encode_quality_to_rate

    def bar_callback(bar):
        def update(stats):
            bar.set_postfix(keyframes=stats.keyframes, refresh=False)
            bar.update(1)
        return update

    if kbps is None:
        with progress(total, "encode", quiet) as bar:
            clip = encode_clip(frame_source(), loaded.model, config, loaded.model_id, bar_callback(bar))
        choice = None
    else:
        bars = []

        def on_pass(number, cfg):
            if bars:
                bars[-1].close()
            bars.append(progress(total, f"pass {number} (QP {cfg.keyframe_qp})", quiet))
            return bar_callback(bars[-1])
        def on_quality_pass(number, q):
            if bars:
                bars[-1].close()
            bars.append(progress(total, f"pass {number} (quality {q:g})", quiet))
            return bar_callback(bars[-1])
        try:
            if quality is not None:
                clip, choice = encode_quality_to_rate(frame_source, loaded.model, config, loaded.model_id, kbps,
                                                      quality, strict=strict_rate, on_pass=on_quality_pass)
            else:
                clip, choice = encode_to_rate(frame_source, loaded.model, config, loaded.model_id, kbps,
                                              strict=strict_rate, on_pass=on_pass)
        finally:
            if bars:
                bars[-1].close()
        if choice.missed and quality is not None:
            low, high = choice.reachable
            print(f"warning: --kbps {kbps:g} not reached within ±{RATE_TOLERANCE:.0%}: passes gave {low:.1f}..{high:.1f} kbps; wrote "
                  f"the nearest, {choice.kbps:.1f} kbps at --quality {choice.quality:g} (--strict-rate refuses "
                  "instead)", file=sys.stderr)
        elif choice.missed:
            low, high = choice.reachable
            print(f"warning: --kbps {kbps:g} is out of reach ({low:.1f}..{high:.1f} kbps with this clip's keyframes); "
                  f"wrote the nearest, {choice.kbps:.1f} kbps at keyframe QP {choice.keyframe_qp} "
                  f"({rate_knob(kbps, low, clip.stats.keyframes)}; --strict-rate refuses instead)", file=sys.stderr)
    clip.write(out, force=force)
    return clip, choice


def run(args) -> int:
    """`fvc encode ARGS`."""
    from .. import video

    src = check_input(args.input)
    out = check_output(args.output, args.force)
    check_encode_files(src, out)
    if out.exists() and out.resolve() == src.resolve():
        raise OutputError(f"{args.output} is the input; choose another output path")
    info = video.probe(src)
    loaded = load_model_spec(args.model, args.device)
    warn_untrained(loaded)
    if info.has_audio and not args.quiet:
        print(f"note: {src.name} has audio; fvc codes video only, the audio is ignored", file=sys.stderr)
    fps = Fraction(args.fps).limit_denominator(1001) if args.fps else Fraction(info.fps)
    total = info.frames if not args.fps else None
    if args.frames:
        total = min(total, args.frames) if total else args.frames

    crop = resolve_crop(args, src, info, args.quiet)

    def frame_source():
        frames = video.read_frames(src, size=args.size, crop=crop, fps=args.fps)
        return itertools.islice(frames, args.frames) if args.frames else frames

    config = encoder_config(args, fps, info, crop)
    start = time.perf_counter()
    clip, choice = encode_frames(frame_source, total, loaded, config, args.kbps, args.strict_rate, out,
                                 args.force, args.quiet, args.quality)
    seconds = time.perf_counter() - start
    if not args.quiet:
        print(encode_summary(out, clip, choice, seconds, geometry_text(info, crop, args.size)))
    return EXIT_OK


def encoder_config(args, fps: Fraction, info, crop: tuple[int, int, int] | None):
    """The EncoderConfig the coding options in `args` ask for (encode, send), with the stream NOTE's members."""
    from ..encoder import EncoderConfig

    preset = PRESETS[args.preset]
    refresh = preset.refresh_threshold if args.refresh_threshold is None else args.refresh_threshold
    coding = {"keyframe_qp": args.keyframe_qp, "refresh_threshold": refresh,
              "refresh_landmarks": args.refresh_landmarks or 0.0}
    if getattr(args, "quality", None) is not None:
        coding = quality_options(args).encoder_fields()
    return EncoderConfig(width=args.size, height=args.size, fps=fps, **coding, max_gop=args.max_gop,
                         kp_threshold=args.kp_threshold, search=preset.search, refs=args.refs, predict_keyframes=args.predict_keyframes,
                         idr_period=args.idr_period, reuse_margin=args.reuse_margin,
                         switch_margin=args.switch_margin, resync_period=args.resync_period,
                         keyframe_codec=KeyframeCodec[args.keyframe_codec.upper()], motion_step=args.motion_step,
                         note={"preset": preset.name, "source": {"width": info.width, "height": info.height},
                               "crop": [int(v) for v in crop] if crop else None})


def quality_options(args):
    """The QualitySettings of --quality; refuses the options it sets itself."""
    from ..quality import quality_settings

    for given, option in ((args.refresh_threshold is not None, "--refresh-threshold"),
                          (args.refresh_landmarks is not None, "--refresh-landmarks"),
                          (args.keyframe_qp != DEFAULT_KEYFRAME_QP, "--keyframe-qp")):
        if given:
            raise InputError(f"--quality sets the keyframe QPs and the refresh thresholds itself; drop {option}")
    return quality_settings(args.quality)


def geometry_text(info, crop: tuple[int, int, int] | None, size: int) -> str:
    """What happened to the input's picture on its way to the codec: crop and resize, or neither."""
    from ..video import crop_region

    x, y, side = crop_region(crop, info)
    steps = []
    if (x, y, side) != (0, 0, info.width) or info.width != info.height:
        how = "cropped" if crop is not None else "centre-cropped"
        steps.append(f"{how} to {side}x{side} at ({x},{y})")
    if side != size:
        steps.append(f"{'up' if side < size else 'down'}scaled to {size}x{size}")
    return f"input: {info.width}x{info.height}, " + (", ".join(steps) if steps else "used as it is")


def encode_summary(out: Path, clip, choice, seconds: float, geometry: str) -> str:
    """The lines `fvc encode` prints when it is done."""
    from statistics import mean

    from bitstream import summarize

    from ..quality_rate import QualityRateChoice

    s = summarize(out)
    stats = clip.stats
    preset = PRESETS[(clip.config.note or {}).get("preset", DEFAULT_PRESET)]
    reasons = ", ".join(f"{r.value} {n}" for r, n in sorted(stats.keyframe_reasons.items(), key=lambda x: x[0].value))
    by_type = s["bytes_by_type"]
    motion_frames = s["motion_packets"]
    saved = stats.unmasked_motion_bytes - stats.motion_bytes
    lines = [
        f"wrote {out}: {frames_text(s['frames'])} {s['width']}x{s['height']} at {s['fps']} fps ({s['duration_s']:.2f} s)",
        f"keyframes: {stats.keyframes} ({reasons}) at QP {clip.config.keyframe_qp}"
        + (f", {s['keyframe_codec'].upper()}" if s["keyframe_codec"] != "h264" else "")
        + (f"; {sum(k['predicted'] for k in s['keyframe_list'])} predicted" if clip.config.predict_keyframes else ""),
        "bytes: " + ", ".join(f"{k} {v:,}" for k, v in by_type.items() if v) + f"; total {s['bytes']:,}",
        f"rate: {s['bits_per_pixel']:.5f} bpp, {s['kbps']:.1f} kbps",
        geometry,
        f"preset: {preset.name} ({preset.summary})"
        + (f"; the search changed {stats.searched} of {motion_frames} motion frames" if clip.config.search else ""),
    ]
    if clip.config.resync_period:
        lines.append(f"resync: {stats.resync_packets} RESYNC packets (every {clip.config.resync_period} motion "
                     f"packets and after each keyframe), {stats.resync_bytes:,} of {stats.motion_bytes:,} motion "
                     f"payload bytes")
    if clip.config.refs > 1:
        reuses = count_text(stats.slot_reuses, "refresh", "refreshes")
        switches = count_text(stats.slot_switches, "switch", "switches")
        lines.append(f"reference slots: {clip.config.refs}; {reuses} answered by an older keyframe instead of a new "
                     f"one, {switches} (USE_SLOT)")
    if isinstance(choice, QualityRateChoice):
        tried = ", ".join(f"Q {q:g}: {r:.1f}" for q, r in choice.passes)
        lines.append(f"rate control: target {choice.target_kbps:g} kbps -> --quality {choice.quality:g}, "
                     f"{choice.kbps:.1f} kbps ({choice.kbps / choice.target_kbps - 1:+.1%}); {len(choice.passes)} "
                     f"full passes ({tried} kbps; {sum(choice.pass_seconds):.1f} s)")
    elif choice is not None:
        passes = ", ".join(f"{t:.1f}" for t in choice.pass_seconds)
        moved = (f"; keyframe positions from the QP {choice.decided_at_qp} pass"
                 if choice.decided_at_qp != choice.keyframe_qp else "")
        lines.append(f"rate control: target {choice.target_kbps:g} kbps -> keyframe QP {choice.keyframe_qp}, "
                     f"{choice.kbps:.1f} kbps ({choice.kbps / choice.target_kbps - 1:+.1%}); "
                     f"{choice.full_passes} full passes ({passes} s) + {choice.fast_passes} fast{moved}")
    if stats.motion_proxy_db:
        lines.append(f"closed-loop quality: motion frames {mean(stats.motion_proxy_db):.1f} dB mean luma PSNR "
                     f"at the model's analysis size (min {min(stats.motion_proxy_db):.1f}; refresh below "
                     f"{clip.config.refresh_threshold:g} dB)")
    elif motion_frames:
        lines.append("closed-loop quality: not measured (--refresh-threshold 0 encodes open loop)")
    if clip.config.refresh_landmarks:
        lines.append(f"landmark refresh: {count_text(stats.landmark_refreshes, 'keyframe', 'keyframes')} coded for "
                     f"landmarks more than {clip.config.refresh_landmarks:g} px off (at 512²) where PSNR cleared")
    if motion_frames:
        lines.append(f"motion: {s['motion_bytes_per_packet']:.1f} B/frame payload+framing; adaptive keypoints "
                     f"saved {saved:,} of {stats.unmasked_motion_bytes:,} payload bytes "
                     f"({saved / max(1, stats.unmasked_motion_bytes):.1%}, --kp-threshold {clip.config.kp_threshold})")
    ms = sorted(stats.frame_ms)
    lines.append(f"speed: {stats.frames / seconds:.2f} fps overall; per-frame encode latency mean "
                 f"{mean(ms):.0f} ms, p95 {ms[int(0.95 * (len(ms) - 1))]:.0f} ms")
    return "\n".join(lines)

