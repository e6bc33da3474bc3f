"""The `fvc` command: encode, decode, info, animate, demo, prepare, train.

Heavy modules (torch, PyAV) are imported inside the commands, so `fvc --help` and `fvc info` start fast.
Every user error ends as one line on stderr and a non-zero exit code, never a traceback.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Sequence

from .coding_defaults import (DEFAULT_IDR_PERIOD, DEFAULT_KEYFRAME_QP, DEFAULT_KP_THRESHOLD, DEFAULT_MAX_GOP,
                              DEFAULT_PREDICT_KEYFRAMES, DEFAULT_PRESET, DEFAULT_REFRESH_DB, DEFAULT_REFS,
                              DEFAULT_REUSE_MARGIN_DB, DEFAULT_SWITCH_MARGIN_DB, PRESETS)
from .errors import InputError, OutputError, TruncatedDecode, is_user_error, one_line
from .model_loading import UNTRAINED_PREFIX, LoadedModel, load_model_spec, model_for_stream

EXIT_OK = 0
EXIT_ERROR = 1  # bad input, refused output, damaged stream (frames before the damage are kept)
EXIT_INTERRUPTED = 130
DEFAULT_SIZE = 512
# The extensions of codec.video.VIDEO_CONTAINERS, spelled out here because that module needs PyAV.
VIDEO_NAMES = ".mp4, .mkv, .mov or .avi"
# Names that promise a picture or a video, which an .fvc stream is not.
MEDIA_SUFFIXES = frozenset(".mp4 .m4v .mkv .mov .avi .webm .flv .wmv .mpg .mpeg .ts .3gp .y4m .yuv .gif .png .jpg "
                           ".jpeg .bmp .tif .tiff .webp".split())


# ---------------------------------------------------------------- arguments shared by commands

def _crop(text: str) -> tuple[int, int, int]:
    parts = text.split(",")
    try:
        x, y, size = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--crop needs x,y,size in pixels, got {text!r}") from None
    if x < 0 or y < 0 or size < 2:
        raise argparse.ArgumentTypeError(f"--crop {text!r}: x and y must be >= 0 and size >= 2")
    return x, y, size


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _margin_or(word: str):
    """An argparse type: a number of dB, or `word` for None."""
    def parse(text: str) -> float | None:
        if text == word:
            return None
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is neither a number of dB nor '{word}'") from None
    return parse


def _frame_index(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a frame index (0 or more)")
    return value


def _add_model_args(p: argparse.ArgumentParser, decoding: bool = False) -> None:
    default = "the stream's model (shipped weights of its kind)" if decoding else "the shipped fv2v weights"
    p.add_argument("--model", metavar="PATH|fv2v|fomm|untrained-CONFIG",
                   help=f"motion model weights (default: {default}); untrained-small is the randomly "
                        f"initialised development model, fomm:untrained-small its FOMM twin")
    p.add_argument("--device", default="cpu", help="torch device: cpu or cuda (default cpu)")


def _add_input_geometry_args(p: argparse.ArgumentParser, what: str = "input") -> None:
    p.add_argument("--size", type=_positive_int, default=DEFAULT_SIZE,
                   help=f"model resolution: frames are cropped square and resized to SIZE² (default {DEFAULT_SIZE})")
    crop = p.add_mutually_exclusive_group()
    crop.add_argument("--crop", type=_crop, metavar="X,Y,SIZE",
                      help=f"square crop in {what} pixels (default: centre crop to the shorter side)")
    crop.add_argument("--face-crop", action="store_true",
                      help=f"crop the {what} to one stable square around the face, framed as the training "
                           "data is (needs mediapipe: pip install 'fvc[prepare]')")


def _count(count: int, one: str, many: str) -> str:
    """"1 switch", "5 switches"."""
    return f"{count} {one if count == 1 else many}"


def _frames_text(count: int) -> str:
    return _count(count, "frame", "frames")


def _add_coding_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keyframe-qp", "--qp", type=int, default=DEFAULT_KEYFRAME_QP, metavar="QP",
                   help=f"constant H.264 QP of keyframes (default {DEFAULT_KEYFRAME_QP})")
    p.add_argument("--preset", choices=tuple(PRESETS), default=DEFAULT_PRESET,
                   help="speed/quality: " + "; ".join(f"{p.name}: {p.summary}" for p in PRESETS.values())
                        + f" (default {DEFAULT_PRESET})")
    p.add_argument("--refresh-threshold", type=float, metavar="DB",
                   help="code a keyframe when the decoder's frame falls below this luma PSNR in dB at the "
                        f"model's analysis size (default: the preset's, {DEFAULT_REFRESH_DB:g} for medium and "
                        "slow; 0 = off, and without the search the encoder renders nothing)")
    p.add_argument("--max-gop", "--keyint", type=_positive_int, default=DEFAULT_MAX_GOP, metavar="N",
                   help=f"most frames per keyframe (default {DEFAULT_MAX_GOP})")
    p.add_argument("--kp-threshold", type=int, default=DEFAULT_KP_THRESHOLD, metavar="T",
                   help="skip an expression keypoint whose quantised change is at most T steps (default "
                        f"{DEFAULT_KP_THRESHOLD}: send every keypoint, the smallest stream with trained weights; 0: "
                        "skip only unchanged ones)")
    p.add_argument("--refs", type=int, default=DEFAULT_REFS, metavar="N",
                   help="reference slots: the decoder keeps up to N keyframes (a new one replaces the least "
                        "recently used), and each frame is shown from the one that renders it best. When the last "
                        "keyframe renders a frame below the refresh threshold, an older one that clears it is "
                        f"reused instead of a new keyframe (1..8, default {DEFAULT_REFS}; N > 1 needs bitstream 2.0 or later, "
                        "which 1.x decoders refuse)")
    p.add_argument("--reuse-margin", type=_margin_or("any"), default=DEFAULT_REUSE_MARGIN_DB, metavar="DB",
                   help="with --refs > 1: reuse an older keyframe in place of a new one only if it renders the frame "
                        f"within DB dB of what a new keyframe of the frame would (default {DEFAULT_REUSE_MARGIN_DB:g}: "
                        "a true return; 'any': any that clears the refresh threshold, fewer keyframes at a worse "
                        "picture)")
    p.add_argument("--switch-margin", type=_margin_or("off"), default=DEFAULT_SWITCH_MARGIN_DB, metavar="DB",
                   help="with --refs > 1: show a frame from another stored keyframe when it renders the frame more "
                        f"than DB dB better than the current one (default {DEFAULT_SWITCH_MARGIN_DB:g}; 'off': only "
                        "on a reuse); which slot shows a frame never decides a refresh")
    p.add_argument("--predict-keyframes", action=argparse.BooleanOptionalAction, default=DEFAULT_PREDICT_KEYFRAMES,
                   help="code keyframes as H.264 P pictures predicted from the last few keyframes, except the "
                        "first and those --idr-period frames or more after the last IDR (where decoding can "
                        "start); writes bitstream 3.0, which 1.x and 2.x decoders refuse (default "
                        f"{'on' if DEFAULT_PREDICT_KEYFRAMES else 'off'}; --no-predict-keyframes codes every "
                        "keyframe as a lone IDR picture)")
    p.add_argument("--idr-period", type=_positive_int, default=DEFAULT_IDR_PERIOD, metavar="N",
                   help="with --predict-keyframes: the first keyframe N or more frames after the last IDR is an "
                        f"IDR again (default {DEFAULT_IDR_PERIOD}, the --max-gop default: a random access point at "
                        f"least every {DEFAULT_IDR_PERIOD}-{DEFAULT_IDR_PERIOD + DEFAULT_MAX_GOP} frames)")
    p.add_argument("--kbps", type=float, metavar="TARGET",
                   help="rate control: pick the keyframe QP that lands the clip within ±15%% of TARGET kbps "
                        "(out of reach: the nearest reachable rate is written, with a warning)")
    p.add_argument("--strict-rate", action="store_true",
                   help="with --kbps: refuse a target out of reach (after the first pass) instead of writing "
                        "the nearest rate")


def version_text() -> str:
    """Package and bitstream versions and the shipped weights with their model ids."""
    from importlib.metadata import PackageNotFoundError, version

    from bitstream.constants import FVC_VERSION_MAJOR, NOTE_MINOR, PREDICTION_MAJOR, SLOTS_MAJOR

    from . import motion_model

    try:
        package = version("fvc")
    except PackageNotFoundError:
        package = "(not installed)"
    weights = [f"{path.stem} ({motion_model.model_id(path).hex()[:8]}…)"
               for kind in motion_model.REGISTRY for path in motion_model.shipped_weights(kind)]
    return (f"fvc {package}, writes bitstream {PREDICTION_MAJOR}.0 (predicted keyframes, the default), "
            f"{SLOTS_MAJOR}.0 with --no-predict-keyframes --refs > 1, {FVC_VERSION_MAJOR}.{NOTE_MINOR} with "
            f"--no-predict-keyframes; reads {FVC_VERSION_MAJOR}.x, {SLOTS_MAJOR}.x and {PREDICTION_MAJOR}.x; "
            f"weights: {', '.join(weights) or 'none shipped'}")


class _VersionAction(argparse.Action):
    """--version, computed only when asked (it hashes the weights files)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, help="print versions and the shipped weights, then exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(version_text())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    """The `fvc` argument parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(
        prog="fvc", description="fvc: a neural video codec for talking heads (H.264 keyframes + coded 3D "
                                "keypoint motion, face-vid2vid design).")
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("encode", help="encode a video into an .fvc stream",
                       description="Encode any video PyAV can read (audio is ignored) into an .fvc stream.")
    p.add_argument("input", help="input video")
    p.add_argument("output", help="output .fvc stream")
    _add_input_geometry_args(p)
    p.add_argument("--fps", type=float, help="resample the input to this frame rate (default: keep it)")
    p.add_argument("--frames", type=_positive_int, metavar="N", help="encode only the first N frames")
    _add_coding_args(p)
    _add_model_args(p)
    p.add_argument("--force", action="store_true", help="overwrite the output if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")

    p = sub.add_parser("decode", help="decode an .fvc stream into a video or frames",
                       description="Decode an .fvc stream. A damaged stream is decoded up to the damage; "
                                   "those frames are written and the exit code is 1.")
    p.add_argument("input", help="input .fvc stream")
    p.add_argument("output", help=f"output video ({VIDEO_NAMES}), a folder for --format png, or - for raw "
                                  "rgb24 on stdout")
    p.add_argument("--format", choices=("video", "png"), default="video",
                   help="H.264 video in the container the output's extension names, or a folder of PNG frames "
                        "(default video; output - is always raw rgb24)")
    p.add_argument("--start", type=_frame_index, default=0, metavar="N",
                   help="write from frame N on (counted from 0; default 0); earlier frames are decoded, not written")
    p.add_argument("--frames", type=_positive_int, metavar="N", help="write at most N frames")
    p.add_argument("--crf", type=int, default=18, help="x264 CRF of the video output (default 18)")
    for axis in ("yaw", "pitch", "roll"):
        p.add_argument(f"--{axis}", type=float, default=0.0, metavar="DEG",
                       help=f"free view (fv2v): add DEG degrees of {axis} to the head rotation")
    p.add_argument("--frontalize", action="store_true", help="free view (fv2v): set the head rotation to zero")
    _add_model_args(p, decoding=True)
    p.add_argument("--force", action="store_true", help="overwrite the output if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")

    p = sub.add_parser("info", help="describe an .fvc stream",
                       description="Print what an .fvc stream holds. A damaged stream is described up to the "
                                   "damage, which is named on stderr, and the exit code is 1.")
    p.add_argument("input", help="input .fvc stream")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--packets", action="store_true", help="also list every packet: index, type, frame, offset, size")

    p = sub.add_parser("animate", help="animate a still portrait with the motion of a driving video",
                       description="Cross-identity animation with relative motion: the source's own motion "
                                   "plus the driving video's change since its first frame.")
    p.add_argument("source", help="source portrait (any image PyAV can read)")
    p.add_argument("driving", help="driving video")
    p.add_argument("output", help=f"output video ({VIDEO_NAMES})")
    _add_input_geometry_args(p, "driving-video")
    p.add_argument("--crf", type=int, default=18, help="x264 CRF of the output (default 18)")
    _add_model_args(p)
    p.add_argument("--force", action="store_true", help="overwrite the output if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("demo", help="encode and decode the built-in astronaut clip, print rate and quality",
                       description="Builds demo/astronaut.mp4 (scikit-image's public-domain astronaut portrait on a "
                                   "smooth head-motion path), encodes, decodes, and compares with x264.")
    p.add_argument("--out-dir", default="demo", metavar="DIR",
                   help="folder for the clip, stream and decoded video (default demo)")
    p.add_argument("--seconds", type=float, default=3.0, help="clip length (default 3 s at 25 fps)")
    p.add_argument("--size", type=_positive_int, default=DEFAULT_SIZE, help=f"frame side (default {DEFAULT_SIZE})")
    _add_coding_args(p)
    _add_model_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")

    for name, text in (("prepare", "build the training cache from raw clips"), ("train", "train a motion model")):
        # Only listed here: main() hands their arguments to `target` untouched.
        sub.add_parser(name, help=f"{text} (fvc {name} --help lists its options)", add_help=False)
    return parser


# ---------------------------------------------------------------- models

def _warn_untrained(loaded: LoadedModel) -> None:
    if loaded.untrained:
        print(f"WARNING: {loaded.label} is the randomly initialised development model.\n"
              f"WARNING: its output is NOT meaningful (motion frames are noise); it only exercises the pipeline.",
              file=sys.stderr)


# ---------------------------------------------------------------- files

def check_input(path: str) -> Path:
    """`path` as a Path if it is a readable file, else InputError."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file")
    if not p.is_file():
        raise InputError(f"{path}: not a file")
    if not os.access(p, os.R_OK):
        raise InputError(f"{path}: not readable")
    return p


def check_output(path: str, force: bool) -> Path:
    """`path` as a Path if it may be written (absent, or force), in a writable folder; else OutputError."""
    p = Path(path)
    if p.exists() and not force:
        raise OutputError(f"{path} exists (pass --force to overwrite)")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"cannot write {path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write {path}: folder {parent} is not writable")
    return p


def check_encode_files(src: Path, out: Path) -> None:
    """Refuses an .fvc stream as the input and a video or image name for the output stream."""
    refuse_fvc_stream(src)
    if out.suffix.lower() in MEDIA_SUFFIXES:
        raise OutputError(f"{out}: fvc streams are written as .fvc files, not {out.suffix} "
                          f"(name it e.g. {out.with_suffix('.fvc').name})")


def refuse_fvc_stream(path: Path) -> None:
    """InputError when the video or image input `path` is an .fvc stream."""
    from bitstream.constants import FVC_MAGIC

    with open(path, "rb") as f:
        if f.read(len(FVC_MAGIC)) == FVC_MAGIC:
            raise InputError(f"{path} is an fvc stream; did you mean fvc decode?")


def _video_format(out: Path, alternative: str = "") -> str:
    """The video format `out`'s extension names; OutputError for any other name."""
    from . import video

    container = video.video_format(out)
    if container is None:
        raise OutputError(f"cannot write {out}: video output is H.264 in {VIDEO_NAMES}{alternative}")
    return container


def _progress(total: int | None, desc: str, quiet: bool):
    """A progress bar on stderr that counts frames ("5 frames", "3/6 frames") and their rate in fps."""
    from tqdm import tqdm

    class FrameBar(tqdm):
        @property
        def format_dict(self):
            values = super().format_dict
            elapsed = values["elapsed"]
            rate = values["rate"] or (values["n"] / elapsed if elapsed else None)
            # tqdm's own texts read "5frame" and, below one per second, "2.50s/frame".
            return {**values, "frames": _frames_text(values["n"]), "fps": f"{rate:.2f} fps" if rate else "? fps"}

    if total:
        counted = "{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} frames [{elapsed}<{remaining}"
    else:
        counted = "{frames} [{elapsed}"
    return FrameBar(total=total, desc=desc, disable=quiet, file=sys.stderr, dynamic_ncols=True,
                    bar_format="{desc}: " + counted + ", {fps}{postfix}]")


def _speed_text(frames: int, seconds: float, latency: list[float], what: str) -> str:
    """The timing end of a summary: "in 2.0 s (3.00 fps; per-frame decode latency mean 330 ms, p95 350 ms)"."""
    ms = sorted(latency)
    return (f"in {seconds:.1f} s ({frames / seconds:.2f} fps; per-frame {what} latency mean "
            f"{sum(ms) / len(ms):.0f} ms, p95 {ms[int(0.95 * (len(ms) - 1))]:.0f} ms)")


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit cannot fail again on a closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def resolve_crop(args, path: Path, info, quiet: bool) -> tuple[int, int, int] | None:
    """The --crop box, or with --face-crop the clip's stable face box (MediaPipe), or None (centre crop)."""
    if not args.face_crop:
        return args.crop
    from .data.face_track import FaceLandmarker, FaceTrackError, mediapipe_available, native_stderr_silenced
    from .data.prepare import clip_face_box, landmarker_path

    if not mediapipe_available():
        raise InputError("--face-crop needs mediapipe: pip install 'fvc[prepare]' (or pass --crop X,Y,SIZE)")
    try:
        with native_stderr_silenced(), FaceLandmarker(landmarker_path(None)) as landmarker:
            box = clip_face_box(path, info, landmarker)
    except FaceTrackError as exc:
        raise InputError(f"--face-crop: {exc}") from None
    if box is None:
        raise InputError(f"--face-crop: no face found in {path}; pass --crop X,Y,SIZE")
    if not quiet:
        print(f"face crop: {box.x},{box.y},{box.side}", file=sys.stderr)
    return box.x, box.y, box.side


# ---------------------------------------------------------------- commands

def _encode_frames(frame_source, total: int | None, loaded: LoadedModel, config, kbps: float | None,
                   strict_rate: bool, out: Path, force: bool, quiet: bool):
    """Encode the clip `frame_source()` yields into `out` (with rate control when `kbps` is set)."""
    from .encoder import encode_clip, encode_to_rate, rate_knob

    def bar_callback(bar):
        def update(stats):
            bar.set_postfix(keyframes=stats.keyframes, refresh=False)
            bar.update(1)
        return update

    if kbps is None:
        with _progress(total, "encode", quiet) as bar:
            clip = encode_clip(frame_source(), loaded.model, config, loaded.model_id, bar_callback(bar))
        choice = None
    else:
        bars = []

        def on_pass(number, cfg):
            if bars:
                bars[-1].close()
            bars.append(_progress(total, f"pass {number} (QP {cfg.keyframe_qp})", quiet))
            return bar_callback(bars[-1])
        try:
            clip, choice = encode_to_rate(frame_source, loaded.model, config, loaded.model_id, kbps,
                                          strict=strict_rate, on_pass=on_pass)
        finally:
            if bars:
                bars[-1].close()
        if choice.missed:
            low, high = choice.reachable
            print(f"warning: --kbps {kbps:g} is out of reach ({low:.1f}..{high:.1f} kbps with this clip's keyframes); "
                  f"wrote the nearest, {choice.kbps:.1f} kbps at keyframe QP {choice.keyframe_qp} "
                  f"({rate_knob(kbps, low, clip.stats.keyframes)}; --strict-rate refuses instead)", file=sys.stderr)
    clip.write(out, force=force)
    return clip, choice


def _cmd_encode(args) -> int:
    from . import video
    from .encoder import EncoderConfig

    src = check_input(args.input)
    out = check_output(args.output, args.force)
    check_encode_files(src, out)
    if out.exists() and out.resolve() == src.resolve():
        raise OutputError(f"{args.output} is the input; choose another output path")
    info = video.probe(src)
    loaded = load_model_spec(args.model, args.device)
    _warn_untrained(loaded)
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

    preset = PRESETS[args.preset]
    refresh = preset.refresh_threshold if args.refresh_threshold is None else args.refresh_threshold
    config = EncoderConfig(width=args.size, height=args.size, fps=fps, keyframe_qp=args.keyframe_qp,
                           refresh_threshold=refresh, max_gop=args.max_gop, kp_threshold=args.kp_threshold,
                           search=preset.search, refs=args.refs, predict_keyframes=args.predict_keyframes,
                           idr_period=args.idr_period, reuse_margin=args.reuse_margin,
                           switch_margin=args.switch_margin,
                           note={"preset": preset.name, "source": {"width": info.width, "height": info.height},
                                 "crop": [int(v) for v in crop] if crop else None})
    start = time.perf_counter()
    clip, choice = _encode_frames(frame_source, total, loaded, config, args.kbps, args.strict_rate, out,
                                  args.force, args.quiet)
    seconds = time.perf_counter() - start
    if not args.quiet:
        print(encode_summary(out, clip, choice, seconds, geometry_text(info, crop, args.size)))
    return EXIT_OK


def geometry_text(info, crop: tuple[int, int, int] | None, size: int) -> str:
    """What happened to the input's picture on its way to the codec: crop and resize, or neither."""
    from .video import crop_region

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

    s = summarize(out)
    stats = clip.stats
    preset = PRESETS[(clip.config.note or {}).get("preset", DEFAULT_PRESET)]
    reasons = ", ".join(f"{r.value} {n}" for r, n in sorted(stats.keyframe_reasons.items(), key=lambda x: x[0].value))
    by_type = s["bytes_by_type"]
    motion_frames = s["motion_packets"]
    saved = stats.unmasked_motion_bytes - stats.motion_bytes
    lines = [
        f"wrote {out}: {_frames_text(s['frames'])} {s['width']}x{s['height']} at {s['fps']} fps ({s['duration_s']:.2f} s)",
        f"keyframes: {stats.keyframes} ({reasons}) at QP {clip.config.keyframe_qp}"
        + (f"; {sum(k['predicted'] for k in s['keyframe_list'])} predicted" if clip.config.predict_keyframes else ""),
        "bytes: " + ", ".join(f"{k} {v:,}" for k, v in by_type.items() if v) + f"; total {s['bytes']:,}",
        f"rate: {s['bits_per_pixel']:.5f} bpp, {s['kbps']:.1f} kbps",
        geometry,
        f"preset: {preset.name} ({preset.summary})"
        + (f"; the search changed {stats.searched} of {motion_frames} motion frames" if clip.config.search else ""),
    ]
    if clip.config.refs > 1:
        reuses = _count(stats.slot_reuses, "refresh", "refreshes")
        switches = _count(stats.slot_switches, "switch", "switches")
        lines.append(f"reference slots: {clip.config.refs}; {reuses} answered by an older keyframe instead of a new "
                     f"one, {switches} (USE_SLOT)")
    if choice is not None:
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
    if motion_frames:
        lines.append(f"motion: {s['motion_bytes_per_packet']:.1f} B/frame payload+framing; adaptive keypoints "
                     f"saved {saved:,} of {stats.unmasked_motion_bytes:,} payload bytes "
                     f"({saved / max(1, stats.unmasked_motion_bytes):.1%}, --kp-threshold {clip.config.kp_threshold})")
    ms = sorted(stats.frame_ms)
    lines.append(f"speed: {stats.frames / seconds:.2f} fps overall; per-frame encode latency mean "
                 f"{mean(ms):.0f} ms, p95 {ms[int(0.95 * (len(ms) - 1))]:.0f} ms")
    return "\n".join(lines)


def _cmd_decode(args) -> int:
    try:
        return _decode(args)
    except BrokenPipeError:
        # `fvc decode s.fvc - | head`: the reader has what it wants; stop quietly, as cat does.
        _silence_stdout()
        return EXIT_OK


def _decode(args) -> int:
    from bitstream import BitstreamError, StreamReader

    from . import video
    from .decoder import Decoder, DecoderOptions

    src = check_input(args.input)
    to_stdout = args.output == "-"
    out = None if to_stdout else check_output(args.output, args.force)
    if to_stdout:
        container = "raw"
    elif args.format == "png":
        container = "png"
    else:
        container = _video_format(out, " (--format png writes PNG frames into a folder)")
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
        _warn_untrained(loaded)
        decoder = Decoder(loaded.model, header, options)
        sink = video.VideoWriter(video.STDOUT if to_stdout else out, fps=header.fps, crf=args.crf,
                                 format=container, force=args.force)
        seen, written, damage, latency = 0, 0, None, []
        start = time.perf_counter()
        try:
            with _progress(min(ends) - args.start if ends else None, "decode", args.quiet or to_stdout) as bar:
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
                              f"wrote the {_frames_text(written)} before it to {where}", written)
    if not args.quiet:
        print(f"wrote {_frames_text(written)} {header.width}x{header.height} at {header.fps_num}/{header.fps_den} fps "
              f"to {where} {_speed_text(written, seconds, latency, 'decode')}", file=report)
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
    return InputError(f"{src}: --start {start} is past the end of the stream ({_frames_text(count)}; the first "
                      f"is frame 0)")


def _cmd_info(args) -> int:
    from collections import Counter

    from bitstream import BitstreamError, summarize
    from bitstream.header import weights_model_id

    try:
        summary = summarize(check_input(args.input), packets=args.packets)
    except BitstreamError as exc:
        raise InputError(f"{args.input}: {exc}") from None
    # Hashes the shipped weights here: codec.motion_model would import torch, seconds for a quick look.
    weights = Path(__file__).resolve().with_name("weights")
    summary["model_name"] = next((path.stem for path in sorted(weights.glob(f"{summary['motion_kind']}-*.pt"))
                                  if weights_model_id(path).hex() == summary["model_id"]), None)
    error = summary["error"]
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        model_id, name = summary["model_id"], summary["model_name"]
        model = f"{name} ({model_id[:8]}…)" if name else f"{model_id} (unknown weights)"
        print(f"{args.input}: fvc {summary['version']}, {summary['motion_kind']} motion, "
              f"{summary['num_keypoints']} keypoints, model {model}")
        if summary["notes"]:
            print("notes: " + ", ".join(f"{k} {v if isinstance(v, str) else json.dumps(v, separators=(',', ':'))}"
                                        for k, v in summary["notes"].items()))
        print(f"video: {summary['width']}x{summary['height']} at {summary['fps']} fps, "
              f"{_frames_text(summary['frames'])} ({summary['duration_s']:.2f} s)")
        keyframes = summary["keyframe_list"]
        if keyframes:
            line = f"keyframes: {len(keyframes)}"
            reasons = Counter(str(k["reason"]) for k in keyframes if k["reason"] is not None)
            if reasons:
                line += " (" + ", ".join(f"{reason} {n}" for reason, n in reasons.items()) + ")"
            predicted = sum(k.get("predicted", False) for k in keyframes)
            line += f", {predicted} predicted" if predicted else ""
            qps = sorted({k["qp"] for k in keyframes if k["qp"] is not None})
            if qps:
                line += f", QP {qps[0]}" + (f"..{qps[-1]}" if len(qps) > 1 else "")
            print(line + f", {sum(k['bytes'] for k in keyframes) / len(keyframes):,.0f} B on average")
        if summary["ref_slots"] > 1:
            switches = _count(summary["slot_switches"], "switch", "switches")
            print(f"reference slots: {summary['ref_slots']}, {switches} to a stored keyframe (USE_SLOT)")
        print(f"packets: {summary['keyframes']} keyframes, {summary['motion_packets']} motion"
              + (f", {summary['note_packets']} notes" if summary["note_packets"] else "")
              + (f", {summary['unknown_packets']} unknown (skipped)" if summary["unknown_packets"] else ""))
        print("bytes: " + ", ".join(f"{k} {v:,}" for k, v in summary["bytes_by_type"].items() if v)
              + f"; total {summary['bytes']:,}")
        print(f"rate: {summary['bits_per_pixel']:.5f} bpp, {summary['kbps']:.1f} kbps, motion "
              f"{summary['motion_bytes_per_packet']:.1f} B/packet")
        for group, g in summary["groups"].items():
            print(f"group {group}: step {g['step']:g}, radius {g['radius']}, decay {g['decay']}, "
                  f"escape {g['escape_freq']}" + (f", mask {g['mask_freq']}" if g["mask_freq"] else ""))
        for packet in summary.get("packets", []):
            print(f"packet {packet['index']} at byte {packet['offset']}: {packet['type']}"
                  + (f" frame {packet['frame']}" if packet["frame"] is not None else "")
                  + (f" slot {packet['slot']}" if "slot" in packet else "") + f", {packet['bytes']:,} B")
        if error is not None:
            print(f"damaged at byte {error['offset']}: the lines above describe the {summary['bytes']:,} bytes "
                  "before it")
    if error is not None:
        raise InputError(f"{args.input}: {BitstreamError(**error)}")
    return EXIT_OK


def _cmd_animate(args) -> int:
    from . import video
    from .decoder import Animator

    source_path, driving_path = check_input(args.source), check_input(args.driving)
    refuse_fvc_stream(source_path)
    refuse_fvc_stream(driving_path)
    out = check_output(args.output, args.force)
    container = _video_format(out)
    info = video.probe(driving_path)
    source = next(iter(video.read_frames(source_path, size=args.size)), None)
    if source is None:
        raise InputError(f"{args.source}: no image in it")
    loaded = load_model_spec(args.model, args.device)
    _warn_untrained(loaded)
    crop = resolve_crop(args, driving_path, info, args.quiet)
    animator = Animator(loaded.model, source, args.size)
    writer = video.VideoWriter(out, fps=info.fps, crf=args.crf, format=container, force=args.force)
    latency = []
    start = time.perf_counter()
    try:
        with _progress(info.frames or None, "animate", args.quiet) as bar:
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
        print(f"wrote {_frames_text(len(latency))} {args.size}x{args.size} at {info.fps.numerator}/"
              f"{info.fps.denominator} fps to {out} {_speed_text(len(latency), seconds, latency, 'animation')}")
    return EXIT_OK


def _cmd_demo(args) -> int:
    from . import motion_model as mm
    from .demo import run_demo

    spec = args.model
    if spec is None:
        shipped = mm.default_weights("fv2v")
        spec = str(shipped) if shipped else UNTRAINED_PREFIX + mm.REGISTRY["fv2v"].default_config
    run_demo(args, spec, load_model_spec(spec, args.device).untrained, main)
    return EXIT_OK


PASS_THROUGH = {"prepare": ("codec.data.prepare", "data preparation"),
                "train": ("codec.train.trainer", "the trainer")}
COMMANDS = {"encode": _cmd_encode, "decode": _cmd_decode, "info": _cmd_info, "animate": _cmd_animate,
            "demo": _cmd_demo}


def _pass_through(name: str, argv: list[str]) -> int:
    import importlib

    module_name, what = PASS_THROUGH[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise InputError(f"fvc {name}: {what} is not part of this build yet ({module_name} is missing)") from None
        raise InputError(f"fvc {name} needs the Python package {exc.name!r}: pip install 'fvc[{name}]'") from None
    return int(module.main(argv) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `fvc` with `argv` (default: the command line); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in PASS_THROUGH:
            return _pass_through(argv[0], argv[1:])
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("fvc: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if not is_user_error(exc):
            raise
        print(f"fvc: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
