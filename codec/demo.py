"""`fvc demo`: the built-in default input (a moving astronaut portrait) encoded, decoded and scored."""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

# Face centre and crop side in skimage.data.astronaut() (512x512, public domain, NASA): a
# face-centred crop like the talking-head training clips, with the hair and chin inside.
_FACE_CENTRE_XY = (224.0, 128.0)
_FACE_CROP = 250.0


@dataclass(frozen=True)
class DemoClipConfig:
    """The synthetic clip: seconds of head motion at `fps`, frames `size` pixels square."""

    seconds: float = 3.0
    fps: int = 25
    size: int = 512

    @property
    def frame_count(self) -> int:
        return max(1, round(self.seconds * self.fps))


@dataclass(frozen=True)
class HeadPose:
    """In-plane pose of the face crop: roll in degrees, shift in source pixels, zoom factor."""

    roll: float
    dx: float
    dy: float
    zoom: float


def head_motion_path(t: float) -> HeadPose:
    """A smooth, non-periodic-looking head motion: sums of slow sines with unrelated frequencies."""
    def wave(amplitude: float, *freqs_phases: tuple[float, float]) -> float:
        return amplitude * sum(math.sin(2 * math.pi * f * t + p) for f, p in freqs_phases) / len(freqs_phases)

    return HeadPose(roll=wave(6.0, (0.23, 0.0), (0.61, 1.3)),
                    dx=wave(12.0, (0.31, 0.4), (0.83, 2.1)),
                    dy=wave(7.0, (0.19, 1.7), (0.57, 0.2)),
                    zoom=1.0 + wave(0.06, (0.13, 0.9), (0.47, 2.8)))


def _source_matrix(pose: HeadPose, size: int) -> np.ndarray:
    """3x3 map from output pixel (x, y, 1) to astronaut pixel coordinates."""
    scale = _FACE_CROP / size / pose.zoom
    c, s = math.cos(math.radians(pose.roll)), math.sin(math.radians(pose.roll))
    half = (size - 1) / 2
    centre = (_FACE_CENTRE_XY[0] + pose.dx, _FACE_CENTRE_XY[1] + pose.dy)
    linear = scale * np.array([[c, -s], [s, c]])
    offset = np.array(centre) - linear @ np.array([half, half])
    return np.array([[*linear[0], offset[0]], [*linear[1], offset[1]], [0.0, 0.0, 1.0]])


def astronaut_frames(config: DemoClipConfig) -> Iterator[np.ndarray]:
    """The clip's frames, (size, size, 3) uint8, generated on the fly."""
    from skimage import data, transform

    image = data.astronaut().astype(np.float32) / 255.0
    for i in range(config.frame_count):
        matrix = _source_matrix(head_motion_path(i / config.fps), config.size)
        frame = transform.warp(image, transform.AffineTransform(matrix=matrix),
                               output_shape=(config.size, config.size), order=1, mode="edge")
        yield np.clip(np.rint(frame * 255.0), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Scored:
    """Rate and quality of one coded version of the demo clip against the frames the encoder read."""

    name: str
    bytes: int
    bpp: float
    kbps: float
    psnr_db: float
    lpips: float


def _score(name: str, size: int, reference: np.ndarray, decoded: np.ndarray, fps: int) -> Scored:
    from .metrics import lpips_distance, psnr

    n, height, width, _ = reference.shape
    return Scored(name, size, size * 8 / (width * height * n), size * 8 * fps / n / 1000.0,
                  float(np.mean(psnr(reference, decoded))), float(np.mean(lpips_distance(reference, decoded))))


def _x264_near(frames_path: Path, size: int, target_bytes: int, out_dir: Path, fps: int) -> tuple[int, Path]:
    """(crf, mp4) of the x264 encode of the clip whose file size is nearest `target_bytes` (CRF bisection)."""
    from .video import VideoWriter, read_frames

    sizes: dict[int, int] = {}

    def size_at(crf: int) -> int:
        if crf not in sizes:
            path = out_dir / f"x264_crf{crf}.mp4"
            writer = VideoWriter(path, fps=fps, crf=crf, format="mp4", force=True)
            for frame in read_frames(frames_path, size=size):
                writer.write(frame)
            writer.close()
            sizes[crf] = path.stat().st_size
        return sizes[crf]

    lo, hi = 0, 51  # size(lo) > target >= size(hi) once bracketed
    if size_at(hi) >= target_bytes:
        best = hi
    elif size_at(lo) <= target_bytes:
        best = lo
    else:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if size_at(mid) > target_bytes else (lo, mid)
        best = min((lo, hi), key=lambda crf: abs(math.log(size_at(crf) / target_bytes)))
    for crf in sizes:
        if crf != best:
            (out_dir / f"x264_crf{crf}.mp4").unlink()
    return best, out_dir / f"x264_crf{best}.mp4"


def run_demo(args, model_spec: str, untrained: bool, fvc: Callable[[list[str]], int],
             coding: Sequence[str] = ()) -> list[Scored]:
    """Build the clip, run `fvc encode` (with the options `coding`) and `fvc decode` through `fvc` (argv -> exit
    code), score both against x264.

    The command runner and the coding options (derived from the encode parser) are passed in so that the demo shows
    real CLI use without depending on the CLI module or listing the CLI's options again.
    """
    from .errors import CodecError
    from PIL import Image

    from .video import VideoWriter, read_frames

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = DemoClipConfig(seconds=args.seconds, size=args.size)
    clip, stream, decoded_dir = out_dir / "astronaut.mp4", out_dir / "astronaut.fvc", out_dir / "decoded"
    if untrained:
        print(_UNTRAINED_BANNER, file=sys.stderr)

    # The clip is written near-losslessly: it stands for a camera's output, which the codec then reads.
    writer = VideoWriter(clip, fps=config.fps, crf=_CLIP_CRF, format="mp4", force=True)
    for frame in astronaut_frames(config):
        writer.write(frame)
    writer.close()
    print(f"built {clip}: {config.frame_count} frames {config.size}x{config.size} at {config.fps} fps")

    quiet = ["--quiet"] if args.quiet else []
    steps = (["encode", str(clip), str(stream), "--size", str(config.size), "--model", model_spec,
              "--device", args.device, "--force", *coding, *quiet],
             ["decode", str(stream), str(decoded_dir), "--format", "png", "--model", model_spec,
              "--device", args.device, "--force", *quiet])
    for step in steps:
        print("$ fvc " + " ".join(step))
        if fvc(step) != 0:
            raise CodecError(f"demo stopped: fvc {step[0]} failed (its message is above)")

    reference = np.stack(list(read_frames(clip, size=config.size)))
    decoded = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(decoded_dir.glob("*.png"))])
    crf, x264_path = _x264_near(clip, config.size, stream.stat().st_size, out_dir, config.fps)
    x264 = np.stack(list(read_frames(x264_path, size=config.size)))
    rows = [_score("fvc" + (" (UNTRAINED model)" if untrained else ""), stream.stat().st_size, reference,
                   decoded, config.fps),
            _score(f"x264 crf {crf} (mp4)", x264_path.stat().st_size, reference, x264, config.fps)]
    print(f"\n{'codec':<26}{'bytes':>10}{'bpp':>9}{'kbps':>9}{'PSNR dB':>9}{'LPIPS':>8}")
    for r in rows:
        print(f"{r.name:<26}{r.bytes:>10,}{r.bpp:>9.4f}{r.kbps:>9.1f}{r.psnr_db:>9.2f}{r.lpips:>8.3f}")
    print(f"(quality against the {config.frame_count} frames the encoder read from {clip}; LPIPS alex v0.1, "
          f"lower is better)")
    if untrained:
        print(_UNTRAINED_BANNER, file=sys.stderr)
    return rows


_CLIP_CRF = 12
_UNTRAINED_BANNER = (
    "=" * 78 + "\n"
    "NOTE: no trained weights ship yet, so this demo runs the UNTRAINED development model\n"
    "(random weights). Its motion frames are noise: quality refresh turns nearly every frame\n"
    "into an H.264 keyframe, and its fvc numbers measure the pipeline, not the codec.\n"
    + "=" * 78)
