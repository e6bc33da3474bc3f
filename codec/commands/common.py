"""What the `fvc` commands share: exit codes, file checks, progress bars and summary texts.

Heavy modules (torch, PyAV, tqdm, MediaPipe) are imported inside the functions, so `fvc --help` starts fast.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import InputError, OutputError
from ..model_loading import LoadedModel

EXIT_OK = 0
EXIT_ERROR = 1  # bad input, refused output, damaged stream (frames before the damage are kept)
EXIT_INTERRUPTED = 130
# The extensions of codec.video.VIDEO_CONTAINERS, spelled out here because that module needs PyAV.
VIDEO_NAMES = ".mp4, .mkv, .mov or .avi"
# Names that promise a picture or a video, which an .fvc stream is not.
MEDIA_SUFFIXES = frozenset(".mp4 .m4v .mkv .mov .avi .webm .flv .wmv .mpg .mpeg .ts .3gp .y4m .yuv .gif .png .jpg "
                           ".jpeg .bmp .tif .tiff .webp".split())


def count_text(count: int, one: str, many: str) -> str:
    """"1 switch", "5 switches"."""
    return f"{count} {one if count == 1 else many}"


def frames_text(count: int) -> str:
    return count_text(count, "frame", "frames")


def warn_untrained(loaded: LoadedModel) -> None:
    if loaded.untrained:
        print(f"WARNING: {loaded.label} is the randomly initialised development model.\n"
              f"WARNING: its output is NOT meaningful (motion frames are noise); it only exercises the pipeline.",
              file=sys.stderr)


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


def video_format(out: Path, alternative: str = "") -> str:
    """The video format `out`'s extension names; OutputError for any other name."""
    from .. import video

    container = video.video_format(out)
    if container is None:
        raise OutputError(f"cannot write {out}: video output is H.264 in {VIDEO_NAMES}{alternative}")
    return container


def progress(total: int | None, desc: str, quiet: bool):
    """A progress bar on stderr that counts frames ("5 frames", "3/6 frames") and their rate in fps."""
    from tqdm import tqdm

    class FrameBar(tqdm):
        @property
        def format_dict(self):
            values = super().format_dict
            elapsed = values["elapsed"]
            rate = values["rate"] or (values["n"] / elapsed if elapsed else None)
            # tqdm's own texts read "5frame" and, below one per second, "2.50s/frame".
            return {**values, "frames": frames_text(values["n"]), "fps": f"{rate:.2f} fps" if rate else "? fps"}

    if total:
        counted = "{percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} frames [{elapsed}<{remaining}"
    else:
        counted = "{frames} [{elapsed}"
    return FrameBar(total=total, desc=desc, disable=quiet, file=sys.stderr, dynamic_ncols=True,
                    bar_format="{desc}: " + counted + ", {fps}{postfix}]")


def speed_text(frames: int, seconds: float, latency: list[float], what: str) -> str:
    """The timing end of a summary: "in 2.0 s (3.00 fps; per-frame decode latency mean 330 ms, p95 350 ms)"."""
    ms = sorted(latency)
    return (f"in {seconds:.1f} s ({frames / seconds:.2f} fps; per-frame {what} latency mean "
            f"{sum(ms) / len(ms):.0f} ms, p95 {ms[int(0.95 * (len(ms) - 1))]:.0f} ms)")


def silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit cannot fail again on a closed pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def resolve_crop(args, path: Path, info, quiet: bool) -> tuple[int, int, int] | None:
    """The --crop box, or with --face-crop the clip's stable face box (MediaPipe), or None (centre crop)."""
    if not args.face_crop:
        return args.crop
    from ..data.face_track import FaceLandmarker, FaceTrackError, mediapipe_available, native_stderr_silenced
    from ..data.prepare import clip_face_box, landmarker_path

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

