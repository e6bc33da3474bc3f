"""The `fvc` command: the argument parser and the dispatch to encode, decode, info, animate, demo, send, receive,
prepare, train.

Each command's body lives in codec/commands/ (prepare and train in codec/data/prepare.py and codec/train/trainer.py).
Heavy modules (torch, PyAV) are imported inside the commands, so `fvc --help` and `fvc info` start fast.
Every user error ends as one line on stderr and a non-zero exit code, never a traceback.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .coding_defaults import (DEFAULT_IDR_PERIOD, DEFAULT_KEYFRAME_CODEC, DEFAULT_KEYFRAME_QP, DEFAULT_KP_THRESHOLD,
                              DEFAULT_MAX_GOP, DEFAULT_MOTION_STEP, DEFAULT_PREDICT_KEYFRAMES, DEFAULT_PRESET,
                              DEFAULT_REFRESH_DB, DEFAULT_REFS, DEFAULT_RESYNC_PERIOD, DEFAULT_REUSE_MARGIN_DB,
                              DEFAULT_SWITCH_MARGIN_DB, KEYFRAME_CODEC_NAMES, LIVE_PRESET, LIVE_RESYNC_PERIOD,
                              MOTION_STEP_MAX, MOTION_STEP_MIN, PRESETS, QUALITY_MAX, QUALITY_MIN)
from .commands import animate, decode, demo, encode, info, receive, send
from .commands.common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, VIDEO_NAMES  # noqa: F401 (EXIT_OK: API)
from .errors import InputError, is_user_error, one_line

DEFAULT_SIZE = 512
# RTP defaults of bitstream.transport, repeated here so that `fvc --help` imports no numpy (test_cli checks them).
DEFAULT_PAYLOAD_TYPE = 96
DEFAULT_MAX_DATAGRAM = 1200


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


def _quality(text: str) -> float:
    value = float(text)
    if not QUALITY_MIN <= value <= QUALITY_MAX:
        raise argparse.ArgumentTypeError(f"{text} is outside {QUALITY_MIN}..{QUALITY_MAX}")
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
    parse.none_word = word  # how coding_argv writes None back
    return parse


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not 0 or a positive integer")
    return value


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


def _add_coding_args(p: argparse.ArgumentParser) -> list[argparse.Action]:
    """Add the options that steer the encoder (encode, demo); returns their actions, for `coding_argv`."""
    actions: list[argparse.Action] = []

    def add(*names, **kwargs) -> None:
        actions.append(p.add_argument(*names, **kwargs))

    add("--keyframe-qp", "--qp", type=int, default=DEFAULT_KEYFRAME_QP, metavar="QP",
        help=f"constant QP of keyframes, H.264's or HEVC's (default {DEFAULT_KEYFRAME_QP})")
    add("--keyframe-codec", choices=KEYFRAME_CODEC_NAMES, default=DEFAULT_KEYFRAME_CODEC.name.lower(),
        help="code keyframes as H.264 (libx264) or HEVC (libx265, about 20%% fewer keyframe bytes at equal LPIPS "
             "for several times the encode time); hevc writes bitstream 5.0, which 4.x and older decoders refuse "
             f"(default {DEFAULT_KEYFRAME_CODEC.name.lower()})")
    add("--quality", type=_quality, metavar="Q",
        help=f"constant quality in x264's CRF sense ({QUALITY_MIN} best .. {QUALITY_MAX} smallest): each frame is "
             "rendered from the last coded picture or coded as an H.264 picture at QP Q, whichever costs less "
             "in LPIPS + λ·bytes, λ following from Q (codec/quality.py); sets the keyframe QPs and the refresh "
             "thresholds, so it takes none of --keyframe-qp, --refresh-threshold and --refresh-landmarks; with "
             "--kbps, rate control searches Q from this one and lands within ±10%% of the target anywhere from one keyframe to every "
             "frame coded")
    add("--preset", choices=tuple(PRESETS), default=DEFAULT_PRESET,
        help="speed/quality: " + "; ".join(f"{p.name}: {p.summary}" for p in PRESETS.values())
             + f" (default {DEFAULT_PRESET})")
    add("--refresh-threshold", type=float, metavar="DB",
        help="code a keyframe when the decoder's frame falls below this luma PSNR in dB at the "
             f"model's analysis size (default: the preset's, {DEFAULT_REFRESH_DB:g} for medium and "
             "slow; 0 = off, and without the search the encoder renders nothing)")
    add("--refresh-landmarks", type=float, metavar="PX",
        help="also code a keyframe when the landmarks the model detects on the decoder's frame lie more than PX "
             "pixels (mean, at 512²) from the input's, where PSNR does not see lips out of place (default 0 = off; "
             "needs the refresh threshold on and a model with a landmark detector, the shipped fv2v)")
    add("--motion-step", type=float, default=DEFAULT_MOTION_STEP, metavar="S",
        help="motion quantisation steps as a multiple of the bitstream's defaults (0.5°, 0.005 and 0.01 of the "
             f"half frame): finer moves the face more smoothly for more bytes ({MOTION_STEP_MIN:g}..{MOTION_STEP_MAX:g}, "
             f"default {DEFAULT_MOTION_STEP:g})")
    add("--max-gop", "--keyint", type=_positive_int, default=DEFAULT_MAX_GOP, metavar="N",
        help=f"most frames per keyframe (default {DEFAULT_MAX_GOP})")
    add("--kp-threshold", type=int, default=DEFAULT_KP_THRESHOLD, metavar="T",
        help="skip an expression keypoint whose quantised change is at most T steps (default "
             f"{DEFAULT_KP_THRESHOLD}: send every keypoint, the smallest stream with trained weights; 0: "
             "skip only unchanged ones)")
    add("--refs", type=int, default=DEFAULT_REFS, metavar="N",
        help="reference slots: the decoder keeps up to N keyframes (a new one replaces the least "
             "recently used), and each frame is shown from the stored one that renders it best "
             "(--switch-margin). When the last keyframe renders a frame below the refresh threshold, an "
             "older one takes the place of a new keyframe only if it renders the frame as well as a new "
             f"one would (--reuse-margin) (1..8, default {DEFAULT_REFS}; with --no-predict-keyframes N > 1 "
             "writes bitstream 2.0, which 1.x decoders refuse; predicted keyframes write 3.0 whatever N)")
    add("--reuse-margin", type=_margin_or("any"), default=DEFAULT_REUSE_MARGIN_DB, metavar="DB",
        help="with --refs > 1: reuse an older keyframe in place of a new one only if it renders the frame "
             f"within DB dB of what a new keyframe of the frame would (default {DEFAULT_REUSE_MARGIN_DB:g}: "
             "a true return; 'any': any that clears the refresh threshold, fewer keyframes at a worse "
             "picture)")
    add("--switch-margin", type=_margin_or("off"), default=DEFAULT_SWITCH_MARGIN_DB, metavar="DB",
        help="with --refs > 1: show a frame from another stored keyframe when it renders the frame more "
             f"than DB dB better than the current one (default {DEFAULT_SWITCH_MARGIN_DB:g}; 'off': only "
             "on a reuse); which slot shows a frame never decides a refresh")
    add("--predict-keyframes", action=argparse.BooleanOptionalAction, default=DEFAULT_PREDICT_KEYFRAMES,
        help="code keyframes as H.264 P pictures predicted from the last few keyframes, except the "
             "first and those --idr-period frames or more after the last IDR (where decoding can "
             "start); writes bitstream 3.0, which 1.x and 2.x decoders refuse (default "
             f"{'on' if DEFAULT_PREDICT_KEYFRAMES else 'off'}; --no-predict-keyframes codes every "
             "keyframe as a lone IDR picture)")
    add("--idr-period", type=_positive_int, default=DEFAULT_IDR_PERIOD, metavar="N",
        help="with --predict-keyframes: the first keyframe N or more frames after the last IDR is an "
             f"IDR again (default {DEFAULT_IDR_PERIOD}, the --max-gop default: a random access point at "
             f"least every {DEFAULT_IDR_PERIOD}-{DEFAULT_IDR_PERIOD + DEFAULT_MAX_GOP} frames)")
    add("--resync-period", type=_non_negative_int, default=DEFAULT_RESYNC_PERIOD, metavar="N",
        help="code the first motion packet after each keyframe and every N-th after it as a RESYNC, against "
             "zeros instead of the packet before, so a receiver that lost packets decodes motion again there "
             f"without a keyframe; writes bitstream 4.0, which 3.x decoders refuse (default {DEFAULT_RESYNC_PERIOD}: "
             f"none, a file is read whole; fvc send uses {LIVE_RESYNC_PERIOD})")
    add("--kbps", type=float, metavar="TARGET",
        help="rate control: pick the keyframe QP that lands the clip within ±15%% of TARGET kbps "
             "(out of reach: the nearest reachable rate is written, with a warning)")
    add("--strict-rate", action="store_true",
        help="with --kbps: refuse a target out of reach (after the first pass) instead of writing "
             "the nearest rate")
    return actions


def coding_argv(args: argparse.Namespace) -> list[str]:
    """`fvc encode` options that reproduce the coding settings in `args` (the demo passes them on): every option
    `_add_coding_args` adds, in its order, so a new option reaches the demo's encode without being listed again."""
    argv = []
    for action in _add_coding_args(argparse.ArgumentParser(add_help=False)):
        value, flag = getattr(args, action.dest), action.option_strings[0]
        if isinstance(action, argparse.BooleanOptionalAction):
            argv.append(flag if value else "--no-" + flag.removeprefix("--"))
        elif action.nargs == 0:  # store_true
            argv += [flag] if value else []
        elif value is None:  # not given, or a word that stands for None ('any', 'off')
            word = getattr(action.type, "none_word", None)
            argv += [flag, word] if word else []
        else:
            argv += [flag, str(value)]
    return argv


def version_text() -> str:
    """Package and bitstream versions and the shipped weights with their model ids."""
    from importlib.metadata import PackageNotFoundError, version

    from bitstream.constants import (FVC_VERSION_MAJOR, HEVC_MAJOR, NOTE_MINOR, PREDICTION_MAJOR, RESYNC_MAJOR,
                                     SLOTS_MAJOR)

    from . import motion_model

    try:
        package = version("fvc")
    except PackageNotFoundError:
        package = "(not installed)"
    weights = [f"{path.stem} ({motion_model.model_id(path).hex()[:8]}…)"
               for kind in motion_model.REGISTRY for path in motion_model.shipped_weights(kind)]
    return (f"fvc {package}, writes bitstream {PREDICTION_MAJOR}.0 (predicted keyframes, the default), "
            f"{HEVC_MAJOR}.0 with --keyframe-codec hevc, {RESYNC_MAJOR}.0 with --resync-period > 0, "
            f"{SLOTS_MAJOR}.0 with --no-predict-keyframes --refs > 1, {FVC_VERSION_MAJOR}.{NOTE_MINOR} with "
            f"--no-predict-keyframes; reads {FVC_VERSION_MAJOR}.x, {SLOTS_MAJOR}.x, {PREDICTION_MAJOR}.x, "
            f"{RESYNC_MAJOR}.x and {HEVC_MAJOR}.x; weights: {', '.join(weights) or 'none shipped'}")


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

    p = sub.add_parser("send", help="encode a video in real time and send it over UDP",
                       description="Encode a video (a file, pipe or device PyAV opens) as its frames come due and send "
                                   "the stream as RTP datagrams (spec §12) to udp://HOST:PORT; a keyframe request "
                                   "(RTCP PLI) from the receiver is answered with an IDR. The coding options are "
                                   f"encode's, but --preset defaults to {LIVE_PRESET} and --resync-period to "
                                   f"{LIVE_RESYNC_PERIOD} (bitstream 4.0). Reports frames, datagrams, feedback and "
                                   "encode time on stderr.")
    p.add_argument("input", help="input video")
    p.add_argument("url", metavar="udp://HOST:PORT", help="where the datagrams go (feedback comes back to the sender)")
    _add_input_geometry_args(p)
    p.add_argument("--fps", type=float, help="resample the input to this frame rate (default: keep it)")
    p.add_argument("--frames", type=_positive_int, metavar="N", help="send only the first N frames")
    p.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=True,
                   help="send frame k at k / fps seconds after the start, as a camera would (default on; "
                        "--no-realtime sends as fast as the encoder goes)")
    p.add_argument("--payload-type", type=int, default=DEFAULT_PAYLOAD_TYPE, metavar="PT",
                   help=f"RTP payload type, 96..127 (default {DEFAULT_PAYLOAD_TYPE})")
    p.add_argument("--max-datagram", type=int, default=DEFAULT_MAX_DATAGRAM, metavar="BYTES",
                   help=f"largest UDP payload, RTP header included (default {DEFAULT_MAX_DATAGRAM})")
    p.add_argument("--nack", action=argparse.BooleanOptionalAction, default=True,
                   help="re-send the datagrams a receiver's NACK names, from the last second's (default on)")
    _add_coding_args(p)
    p.set_defaults(preset=LIVE_PRESET, resync_period=LIVE_RESYNC_PERIOD)
    _add_model_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")

    p = sub.add_parser("receive", help="receive a stream over UDP, decode it with concealment, write a video",
                       description="Receive what fvc send sends to udp://HOST:PORT, decode it with concealment (a "
                                   "lost frame shows the last one again; a lost keyframe is asked for with an RTCP "
                                   "PLI; lost sequence numbers are reported with NACK) and write the frames shown. "
                                   "Stops at the stream's END packet or after --timeout seconds without a datagram. "
                                   "Reports frames, loss, concealed frames, keyframe requests and latency.")
    p.add_argument("url", metavar="udp://HOST:PORT", help="the address and port to listen on")
    p.add_argument("output", help=f"output video ({VIDEO_NAMES}), a folder for --format png, or - for raw "
                                  "rgb24 on stdout")
    p.add_argument("--format", choices=("video", "png"), default="video",
                   help="H.264 video in the container the output's extension names, or a folder of PNG frames "
                        "(default video; output - is always raw rgb24)")
    p.add_argument("--crf", type=int, default=18, help="x264 CRF of the video output (default 18)")
    p.add_argument("--loss", type=float, default=0.0, metavar="P",
                   help="drop each arriving datagram with probability P, in-process (default 0)")
    p.add_argument("--delay", type=float, default=0.0, metavar="MS",
                   help="deliver each arriving datagram MS milliseconds late, in-process (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of --loss (default 0)")
    p.add_argument("--window", type=int, default=16, metavar="W",
                   help="declare a missing datagram lost once W later ones arrived (default 16)")
    p.add_argument("--max-delay", type=float, default=100.0, metavar="MS",
                   help="... or once a later one has waited MS milliseconds for it (default 100)")
    p.add_argument("--nack", action=argparse.BooleanOptionalAction, default=True,
                   help="name missing sequence numbers in RTCP NACKs so the sender re-sends them (default on)")
    p.add_argument("--payload-type", type=int, default=DEFAULT_PAYLOAD_TYPE, metavar="PT",
                   help=f"RTP payload type, 96..127 (default {DEFAULT_PAYLOAD_TYPE})")
    p.add_argument("--timeout", type=float, default=5.0, metavar="S",
                   help="stop after S seconds without a datagram (default 5)")
    p.add_argument("--wait", type=float, default=60.0, metavar="S",
                   help="wait at most S seconds for the first datagram (default 60)")
    p.add_argument("--frames", type=_positive_int, metavar="N", help="stop after N frames")
    _add_model_args(p, decoding=True)
    p.add_argument("--force", action="store_true", help="overwrite the output if it exists")
    p.add_argument("--quiet", action="store_true", help="no summary")

    for name, text in (("prepare", "build the training cache from raw clips"), ("train", "train a motion model")):
        # Only listed here: main() hands their arguments to `target` untouched.
        sub.add_parser(name, help=f"{text} (fvc {name} --help lists its options)", add_help=False)
    return parser


PASS_THROUGH = {"prepare": ("codec.data.prepare", "data preparation"),
                "train": ("codec.train.trainer", "the trainer")}
# The demo runs the CLI itself, through main: handed over, not imported, so commands never import cli.
COMMANDS = {"encode": encode.run, "decode": decode.run, "info": info.run, "animate": animate.run,
            "send": send.run, "receive": receive.run,
            "demo": lambda args: demo.run(args, main, coding_argv(args))}


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
