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
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

from .coding_defaults import DEFAULT_REFRESH_DB
from .errors import InputError, ModelMismatchError, OutputError, TruncatedDecode, is_user_error, one_line

EXIT_OK = 0
EXIT_ERROR = 1  # bad input, refused output, damaged stream (frames before the damage are kept)
EXIT_INTERRUPTED = 130
UNTRAINED_PREFIX = "untrained-"
DEFAULT_SIZE = 512


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


def _frames_text(count: int) -> str:
    """"1 frame", "5 frames"."""
    return f"{count} frame" if count == 1 else f"{count} frames"


def _add_coding_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keyframe-qp", type=int, default=30, help="constant H.264 QP of keyframes (default 30)")
    p.add_argument("--refresh-threshold", type=float, default=DEFAULT_REFRESH_DB, metavar="DB",
                   help="code a keyframe when the decoder's frame falls below this luma PSNR in dB at the "
                        f"model's analysis size (default {DEFAULT_REFRESH_DB:g}; 0 = off, and the encoder "
                        "renders nothing)")
    p.add_argument("--max-gop", type=_positive_int, default=250, help="most frames per keyframe (default 250)")
    p.add_argument("--kp-threshold", type=int, default=0,
                   help="skip an expression keypoint whose quantised change is at most this many steps "
                        "(default 0: only unchanged ones; -1: send every keypoint)")
    p.add_argument("--kbps", type=float, metavar="TARGET",
                   help="rate control: pick the keyframe QP that lands the clip within ±15%% of TARGET kbps")


def version_text() -> str:
    """Package and bitstream versions and the shipped weights with their model ids."""
    from importlib.metadata import PackageNotFoundError, version

    from bitstream.constants import FVC_VERSION_MAJOR, FVC_VERSION_MINOR

    from . import motion_model

    try:
        package = version("fvc")
    except PackageNotFoundError:
        package = "(not installed)"
    weights = [f"{path.stem} ({motion_model.model_id(path).hex()[:8]}…)"
               for kind in motion_model.REGISTRY for path in motion_model.shipped_weights(kind)]
    return (f"fvc {package}, bitstream {FVC_VERSION_MAJOR}.{FVC_VERSION_MINOR}, "
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
    p.add_argument("output", help="output video (.mp4), a folder for --format png, or - for raw rgb24 on stdout")
    p.add_argument("--format", choices=("mp4", "png"), default="mp4",
                   help="mp4 video or a folder of PNG frames (default mp4; output - is always raw rgb24)")
    p.add_argument("--crf", type=int, default=18, help="x264 CRF of the mp4 output (default 18)")
    for axis in ("yaw", "pitch", "roll"):
        p.add_argument(f"--{axis}", type=float, default=0.0, metavar="DEG",
                       help=f"free view (fv2v): add DEG degrees of {axis} to the head rotation")
    p.add_argument("--frontalize", action="store_true", help="free view (fv2v): set the head rotation to zero")
    _add_model_args(p, decoding=True)
    p.add_argument("--force", action="store_true", help="overwrite the output if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")

    p = sub.add_parser("info", help="describe an .fvc stream", description="Print what an .fvc stream holds.")
    p.add_argument("input", help="input .fvc stream")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("animate", help="animate a still portrait with the motion of a driving video",
                       description="Cross-identity animation with relative motion: the source's own motion "
                                   "plus the driving video's change since its first frame.")
    p.add_argument("source", help="source portrait (any image PyAV can read)")
    p.add_argument("driving", help="driving video")
    p.add_argument("output", help="output .mp4")
    _add_input_geometry_args(p, "driving-video")
    p.add_argument("--crf", type=int, default=18, help="x264 CRF of the output (default 18)")
    _add_model_args(p)
    p.add_argument("--force", action="store_true", help="overwrite the output if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("demo", help="encode and decode the built-in astronaut clip, print rate and quality",
                       description="Builds demo/astronaut.mp4 (scikit-image's public-domain astronaut portrait on a "
                                   "smooth head-motion path), encodes, decodes, and compares with x264.")
    p.add_argument("--out-dir", default="demo", help="folder for the clip, stream and decoded video (default demo)")
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

@dataclass(frozen=True)
class LoadedModel:
    """A motion model ready to run, the id streams carry for it and a label for messages."""

    model: Any
    model_id: bytes
    label: str
    untrained: bool


def _device(name: str):
    import torch

    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine")
    try:
        return torch.device(name)
    except RuntimeError:
        raise InputError(f"--device {name!r} is not a torch device (use cpu or cuda)") from None


def load_model_spec(spec: str | None, device: str, kind: str = "fv2v") -> LoadedModel:
    """The model a --model value names: a weights path, a kind's shipped weights, or an untrained recipe."""
    from . import motion_model as mm

    torch_device = _device(device)
    spec = spec or kind
    recipe_kind, _, recipe = spec.partition(":") if ":" in spec else (kind, "", spec)
    if recipe.startswith(UNTRAINED_PREFIX) and recipe_kind in mm.REGISTRY:
        config = recipe[len(UNTRAINED_PREFIX):]
        model = mm.build_untrained(recipe_kind, config, 0).to(torch_device)
        return LoadedModel(model, mm.untrained_model_id(recipe_kind, config, 0),
                           f"UNTRAINED {recipe_kind} '{config}' (random weights, seed 0)", True)
    if spec in mm.REGISTRY:
        path = mm.default_weights(spec)
        if path is None:
            config = mm.REGISTRY[spec].default_config
            suggestion = f"{'' if spec == 'fv2v' else spec + ':'}{UNTRAINED_PREFIX}{config}"
            raise InputError(f"no trained {spec} weights ship with this build yet; pass --model PATH, or "
                             f"--model {suggestion} for the randomly initialised development model "
                             f"(its output is not meaningful)")
    else:
        path = Path(spec)
    ident = mm.model_id(path)
    return LoadedModel(mm.load_model(path, torch_device), ident, f"{path} ({ident.hex()})", False)


def model_for_stream(header, spec: str | None, device: str) -> LoadedModel:
    """The model to decode a stream with; refuses one whose id differs from the stream's."""
    from . import motion_model as mm

    kind = mm.kind_name(header.kind)
    if spec is None:
        shipped = mm.shipped_weights(kind)
        # Any shipped weights of the kind may have coded the stream, not only the best ones.
        spec = next((str(p) for p in shipped if mm.model_id(p) == header.model_id), None)
        if not shipped:
            config = mm.REGISTRY[kind].default_config
            # Streams from `--model untrained-small` decode without repeating the flag.
            if header.model_id != mm.untrained_model_id(kind, config, 0):
                raise ModelMismatchError(f"the stream was coded with model {header.model_id.hex()}, and no "
                                         f"trained {kind} weights ship with this build; pass --model PATH (or "
                                         f"the --model untrained-CONFIG it was coded with)")
            spec = f"{kind}:{UNTRAINED_PREFIX}{config}"
    loaded = load_model_spec(spec, device, kind)
    if loaded.model_id != header.model_id:
        raise ModelMismatchError(f"the stream was coded with model {header.model_id.hex()} but the available "
                                 f"weights are {loaded.model_id.hex()} ({loaded.label}); pass --model PATH "
                                 f"with the weights it was coded with")
    return loaded


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


def _progress(total: int | None, desc: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=" frames", disable=quiet, file=sys.stderr, dynamic_ncols=True)


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
                   out: Path, force: bool, quiet: bool):
    """Encode the clip `frame_source()` yields into `out` (with rate control when `kbps` is set)."""
    from .encoder import encode_clip, encode_to_rate

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
            clip, choice = encode_to_rate(frame_source, loaded.model, config, loaded.model_id, kbps, on_pass=on_pass)
        finally:
            if bars:
                bars[-1].close()
    clip.write(out, force=force)
    return clip, choice


def _cmd_encode(args) -> int:
    from . import video
    from .encoder import EncoderConfig

    src = check_input(args.input)
    out = check_output(args.output, args.force)
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

    config = EncoderConfig(width=args.size, height=args.size, fps=fps, keyframe_qp=args.keyframe_qp,
                           refresh_threshold=args.refresh_threshold, max_gop=args.max_gop,
                           kp_threshold=args.kp_threshold)
    start = time.perf_counter()
    clip, choice = _encode_frames(frame_source, total, loaded, config, args.kbps, out, args.force, args.quiet)
    seconds = time.perf_counter() - start
    if not args.quiet:
        print(encode_summary(out, clip, choice, seconds))
    return EXIT_OK


def encode_summary(out: Path, clip, choice, seconds: float) -> str:
    """The lines `fvc encode` prints when it is done."""
    from statistics import mean

    from bitstream import summarize

    s = summarize(out)
    stats = clip.stats
    reasons = ", ".join(f"{r.value} {n}" for r, n in sorted(stats.keyframe_reasons.items(), key=lambda x: x[0].value))
    by_type = s["bytes_by_type"]
    motion_frames = s["motion_packets"]
    saved = stats.unmasked_motion_bytes - stats.motion_bytes
    lines = [
        f"wrote {out}: {_frames_text(s['frames'])} {s['width']}x{s['height']} at {s['fps']} fps ({s['duration_s']:.2f} s)",
        f"keyframes: {stats.keyframes} ({reasons}) at QP {clip.config.keyframe_qp}",
        "bytes: " + ", ".join(f"{k} {v:,}" for k, v in by_type.items() if v) + f"; total {s['bytes']:,}",
        f"rate: {s['bits_per_pixel']:.5f} bpp, {s['kbps']:.1f} kbps",
    ]
    if choice is not None:
        lines.append(f"rate control: target {choice.target_kbps:g} kbps -> keyframe QP {choice.keyframe_qp}, "
                     f"{choice.kbps:.1f} kbps ({choice.kbps / choice.target_kbps - 1:+.1%}); "
                     f"{choice.full_passes} full + {choice.fast_passes} fast passes")
    if motion_frames:
        lines.append(f"motion: {s['motion_bytes_per_packet']:.1f} B/frame payload+framing; adaptive keypoints "
                     f"saved {saved:,} of {stats.unmasked_motion_bytes:,} payload bytes "
                     f"({saved / max(1, stats.unmasked_motion_bytes):.1%}, --kp-threshold {clip.config.kp_threshold})")
    ms = sorted(stats.frame_ms)
    lines.append(f"speed: {stats.frames / seconds:.2f} fps overall; per-frame encode latency mean "
                 f"{mean(ms):.0f} ms, p95 {ms[int(0.95 * (len(ms) - 1))]:.0f} ms")
    return "\n".join(lines)


def _cmd_decode(args) -> int:
    from bitstream import BitstreamError, StreamReader

    from . import video
    from .decoder import Decoder, DecoderOptions

    src = check_input(args.input)
    to_stdout = args.output == "-"
    out = None if to_stdout else check_output(args.output, args.force)
    report = sys.stderr if to_stdout else sys.stdout
    options = DecoderOptions(args.yaw, args.pitch, args.roll, args.frontalize)
    try:
        reader = StreamReader(src)
    except BitstreamError as exc:
        raise InputError(f"{src}: {exc}") from None
    with reader:
        header = reader.header
        loaded = model_for_stream(header, args.model, args.device)
        _warn_untrained(loaded)
        decoder = Decoder(loaded.model, header, options)
        sink = video.VideoWriter(video.STDOUT if to_stdout else out, fps=header.fps, crf=args.crf,
                                 format="raw" if to_stdout else args.format, force=args.force)
        written, damage, latency = 0, None, []
        start = time.perf_counter()
        try:
            with _progress(header.frame_count or None, "decode", args.quiet or to_stdout) as bar:
                try:
                    for record in reader.records():
                        t0 = time.perf_counter()
                        frames = decoder.push(record.packet, record.offset)
                        if frames:
                            latency.append((time.perf_counter() - t0) * 1000.0)
                        for frame in frames:
                            sink.write(frame)
                            written += 1
                            bar.update(1)
                except BitstreamError as exc:
                    damage = exc
        except BaseException:
            sink.abort()
            raise
        if damage is not None and written == 0:
            sink.abort()
            raise damage
        sink.close()
    seconds = time.perf_counter() - start
    where = "stdout" if to_stdout else str(out)
    if damage is not None:
        raise TruncatedDecode(f"{src}: decoding stopped at byte {damage.offset} ({damage.message}); "
                              f"wrote the {_frames_text(written)} before it to {where}", written)
    if not args.quiet:
        latency.sort()
        print(f"wrote {_frames_text(written)} {header.width}x{header.height} at {header.fps_num}/{header.fps_den} fps "
              f"to {where} in {seconds:.1f} s ({written / seconds:.2f} fps; per-frame decode latency mean "
              f"{sum(latency) / len(latency):.0f} ms, p95 {latency[int(0.95 * (len(latency) - 1))]:.0f} ms)",
              file=report)
    return EXIT_OK


def _cmd_info(args) -> int:
    from bitstream import summarize

    from bitstream import BitstreamError

    try:
        summary = summarize(check_input(args.input))
    except BitstreamError as exc:
        raise InputError(f"{args.input}: {exc}") from None
    if args.json:
        print(json.dumps(summary, indent=2))
        return EXIT_OK
    by_type = summary["bytes_by_type"]
    print(f"{args.input}: fvc {summary['version']}, {summary['motion_kind']} motion, "
          f"{summary['num_keypoints']} keypoints, model {summary['model_id']}")
    print(f"video: {summary['width']}x{summary['height']} at {summary['fps']} fps, {_frames_text(summary['frames'])} "
          f"({summary['duration_s']:.2f} s)")
    print(f"packets: {summary['keyframes']} keyframes, {summary['motion_packets']} motion"
          + (f", {summary['unknown_packets']} unknown (skipped)" if summary["unknown_packets"] else ""))
    print("bytes: " + ", ".join(f"{k} {v:,}" for k, v in by_type.items() if v) + f"; total {summary['bytes']:,}")
    print(f"rate: {summary['bits_per_pixel']:.5f} bpp, {summary['kbps']:.1f} kbps, motion "
          f"{summary['motion_bytes_per_packet']:.1f} B/packet")
    for name, g in summary["groups"].items():
        print(f"group {name}: step {g['step']:g}, radius {g['radius']}, decay {g['decay']}, "
              f"escape {g['escape_freq']}" + (f", mask {g['mask_freq']}" if g["mask_freq"] else ""))
    return EXIT_OK


def _cmd_animate(args) -> int:
    from . import video
    from .decoder import Animator

    source_path, driving_path = check_input(args.source), check_input(args.driving)
    out = check_output(args.output, args.force)
    info = video.probe(driving_path)
    source = next(iter(video.read_frames(source_path, size=args.size)), None)
    if source is None:
        raise InputError(f"{args.source}: no image in it")
    loaded = load_model_spec(args.model, args.device)
    _warn_untrained(loaded)
    crop = resolve_crop(args, driving_path, info, args.quiet)
    animator = Animator(loaded.model, source, args.size)
    writer = video.VideoWriter(out, fps=info.fps, crf=args.crf, format="mp4", force=args.force)
    written = 0
    try:
        with _progress(info.frames or None, "animate", args.quiet) as bar:
            for frame in video.read_frames(driving_path, size=args.size, crop=crop):
                writer.write(animator.push(frame))
                written += 1
                bar.update(1)
        if written == 0:
            raise InputError(f"{args.driving}: no video frames")
    except BaseException:
        writer.abort()
        raise
    writer.close()
    if not args.quiet:
        print(f"wrote {out}: {_frames_text(written)} {args.size}x{args.size}")
    return EXIT_OK


def _cmd_demo(args) -> int:
    from . import motion_model as mm
    from .demo import run_demo

    spec = args.model
    if spec is None:
        shipped = mm.default_weights("fv2v")
        spec = str(shipped) if shipped else UNTRAINED_PREFIX + mm.REGISTRY["fv2v"].default_config
    run_demo(args, spec, load_model_spec(spec, args.device).untrained)
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
