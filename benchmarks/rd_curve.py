"""Rate-distortion benchmark: bpp vs LPIPS (alex, vgg)/DISTS/PSNR/SSIM, AKD, mouth LPIPS and temporal error
(whole frame, face and rest) on 512x512 talking heads.

Every clip is read once through `codec.video.read_frames` (same resize and fps for every method),
each method codes it at each operating point, and the metrics compare decoded and source frames.
Writes benchmarks/results/<run-name>/{rd.csv, summary.csv, bd_rate.csv, quality.csv, run.json,
rd_lpips.png, rd_psnr.png, rd_motion.png, rd_perceptual.png, rd_regions.png}; rerunning skips the rows
already in rd.csv. By default the first 250 frames of every clip are coded, the frame metrics are
measured on every 10th, the face/rest temporal error on every frame pair and the mouth LPIPS on every
frame. AKD (motion fidelity: distance between face landmarks of decoded and source frames), the face
region and the mouth crop need MediaPipe; --no-akd runs without them. Usage:
    .venv/bin/python benchmarks/rd_curve.py --quick
    .venv/bin/python benchmarks/rd_curve.py --methods x264,x264-zerolatency --run-name bench512
"""
from __future__ import annotations

import argparse
import contextlib
import fnmatch
import hashlib
import importlib.metadata
import itertools
import math
import os
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))  # siblings, also when imported from tests

from bd_rate import CurveError, bd_rate, pareto_front, rate_for_quality  # noqa: E402
from protocol import DEFAULT_FRAMES, portable, portable_label  # noqa: E402,F401 (DEFAULT_FRAMES: interface)
from codec.data.face_track import FaceLandmarker, FaceTrackError, mesh_points, native_stderr_silenced  # noqa: E402
from rdcodecs import X265, BenchmarkError, Codec, SvtAv1, X264, X264Settings  # noqa: E402
from rdcodecs.hold import Hold  # noqa: E402
from results_folder import (PROVENANCE_COLUMNS, UNKNOWN, Table, changed_keys, clear, code_version,  # noqa: E402
                            command_line, provenance, read_run_info, refuse_other_settings, write_run_info)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "bench512"
RESULTS = REPO / "benchmarks" / "results"
VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v"}
VARIANTS = ("x264-lowdelay", "fvc-slow", "fvc-refs4", "fvc-pred", "fvc-refs4-pred", "fvc-q", "fvc-hevc")
ALL_METHODS = ("x264", "x264-zerolatency", "x265", "svtav1", "fvc", "fomm", "hold", *VARIANTS)
# fvc-slow encodes at ~1 frame/s on the 2-core CPU, the other fvc variants are coding options and x264-lowdelay
# codes the pictures x264-zerolatency does: they run only when named.
DEFAULT_METHODS = ALL_METHODS[:-len(VARIANTS)]
# Motion fidelity (AKD, MediaPipe face mesh) and temporal consistency: rows written before these columns
# existed lack them, and read as NaN ("not measured").
MOTION_COLUMNS = ["akd", "akd_lips", "face_found", "temporal"]
# The field's other perceptual metrics (issue 28): LPIPS on VGG16 and DISTS, on every PERCEPTUAL_STRIDE-th frame.
PERCEPTUAL_COLUMNS = ["lpips_vgg", "dists"]
# Where the temporal error lies (issue 30), on every frame pair: in the face region taken from the source's
# landmarks and in the rest of the frame, beside the source's own change there; face_area is the face
# region's share of the pixels.
REGION_COLUMNS = ["temporal_face", "temporal_rest", "source_change_face", "source_change_rest", "face_area"]
# LPIPS of a crop around the source's lips on every frame: the mean and the 95th percentile.
MOUTH_COLUMNS = ["mouth_lpips", "mouth_lpips_p95"]
MEASURED_COLUMNS = ["lpips", "psnr", "ssim", *PERCEPTUAL_COLUMNS, *MOTION_COLUMNS, *REGION_COLUMNS, *MOUTH_COLUMNS]
RD_COLUMNS = ["clip", "method", "point", "frames", "width", "height", "fps", "bytes", "bpp", "kbps",
              *MEASURED_COLUMNS, "encode_fps", "decode_fps", *PROVENANCE_COLUMNS, "device", "weights"]
# Columns rows written before them lack: not measured (NaN), or unknown.
OLDER_COLUMNS = {**dict.fromkeys([*PERCEPTUAL_COLUMNS, *MOTION_COLUMNS, *REGION_COLUMNS, *MOUTH_COLUMNS], "nan"),
                 **dict.fromkeys(PROVENANCE_COLUMNS, UNKNOWN)}
LEGACY_COLUMNS = [c for c in RD_COLUMNS if c not in OLDER_COLUMNS]  # the first rd.csv files
# The standard protocol: the first 10 s of every clip, metrics on every 10th frame. Whole clips at
# stride 1 would take LPIPS alone ~0.2 s x 5000 frames per operating point on a 2-core CPU.
DEFAULT_METRIC_STRIDE = 10
# LPIPS-vgg and DISTS see frames with the shorter side brought down to this (DISTS's own prepare_image rule;
# JVET's generative face video conditions score 256² sequences), on every PERCEPTUAL_STRIDE-th frame (5 of the
# 250): four VGG16 passes a frame cost 2.8 s at 256² on one shared core (11 s at 512²), 8x LPIPS-alex's.
PERCEPTUAL_SIZE = 256
PERCEPTUAL_STRIDE = 50
# What a resumed run must share with the rows already written, or its rows would not be comparable.
RUN_KEYS = ("size", "fps", "frames", "metric_stride", "lpips", "akd", "temporal", "perceptual", "regions", "mouth")
TEMPORAL_METHOD = "mean |(d_t - d_t-1) - (r_t - r_t-1)|, BT.601 luma 0-255, t = every scored frame but 0"
NO_AKD = "off (--no-akd)"


@dataclass
class BenchConfig:
    """One benchmark run; everything here is recorded in run.json."""

    data: Path
    out: Path
    methods: list[str]
    clips: list[str] | None = None  # None = all; a single number = the first N clips
    frames: int | None = None  # None = all frames of each clip
    size: int = 512
    fps: float = 25.0
    metric_stride: int = 1
    points_per_method: int | None = None  # None = all operating points
    point_pattern: str | None = None  # comma-separated fnmatch patterns on point labels; None = every point
    device: str = "cpu"
    model: str | None = None  # fvc weights (codec.cli --model syntax); None = the shipped weights
    fomm_model: str | None = None
    untrained_fallback: bool = False  # without shipped weights, use the development model (--quick)
    force: bool = False
    allow_mixed: bool = False  # add rows of other data or devices; report a method's rows of other weights
    akd: bool = True  # False = --no-akd: run without MediaPipe, AKD, region and mouth columns NaN
    landmarker: Path | None = None  # MediaPipe's face_landmarker.task; None = codec.data.prepare's default
    perceptual_size: int | None = PERCEPTUAL_SIZE  # LPIPS-vgg/DISTS shorter side; None = the coded size
    perceptual_stride: int = PERCEPTUAL_STRIDE  # LPIPS-vgg/DISTS on frames 0, n, 2n, ...


def device_description(device: str) -> str:
    """Where the numbers were measured: metric/model device and the CPU that ran the codecs."""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    cpu = f"{cpu} x{os.cpu_count()}"
    if device.startswith("cuda"):
        import torch

        return f"{torch.cuda.get_device_name(torch.device(device))} + {cpu}"
    return cpu


def add_clip_options(p: argparse.ArgumentParser) -> None:
    """--data, --clips, --frames and --size as the per-clip benchmarks beside rd_curve take them."""
    p.add_argument("--data", type=Path, default=DEFAULT_DATA,
                   help=f"folder of clips (default {DEFAULT_DATA}; evaluation data is only evaluated, never tuned on)")
    p.add_argument("--clips", nargs="+", help="N (the first N clips by name) or clip names (stems); default all")
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES, help=f"frames per clip (default {DEFAULT_FRAMES})")
    p.add_argument("--size", type=int, default=512, help="frame side (default 512)")


def find_clips(data: Path, wanted: list[str] | None) -> list[Path]:
    """Video files of `data`, sorted by name; `wanted` is ["N"] (first N) or clip names (stems)."""
    if not data.is_dir():
        raise BenchmarkError(f"clip folder {data} does not exist; pass --data <folder of talking-head clips>")
    clips = sorted(p for p in data.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not clips:
        raise BenchmarkError(f"no video files ({', '.join(sorted(VIDEO_SUFFIXES))}) in {data}")
    if not wanted:
        return clips
    if len(wanted) == 1 and wanted[0].isdigit():
        return clips[: int(wanted[0])]
    by_name = {p.stem: p for p in clips}
    missing = [w for w in wanted if w not in by_name]
    if missing:
        raise BenchmarkError(f"clips not in {data}: {', '.join(missing)}")
    return [by_name[w] for w in wanted]


def spread(points: list[str], count: int | None) -> list[str]:
    """`count` points spread evenly over `points` (ends included), or all of them."""
    if count is None or count >= len(points):
        return points
    return [points[round(i * (len(points) - 1) / (count - 1))] for i in range(count)] if count > 1 else points[:1]


class Metrics:
    """Decoded vs source frames: LPIPS (AlexNet v0.1), PSNR, SSIM, AKD and the temporal error on every
    `stride`-th frame, (`perceptual`) LPIPS-vgg and DISTS on every `perceptual_stride`-th, the temporal error
    split into face and rest on every frame pair and the mouth-crop LPIPS on every frame. What needs face
    landmarks is NaN without a landmarker."""

    PSNR_CAP = 100.0  # a frame identical to its source counts as this many dB
    CHUNK = 32  # frames per metric call: bounds float copies of long 512² clips

    def __init__(self, device: str, stride: int, landmarker: FaceLandmarker | None = None, perceptual: bool = False,
                 perceptual_size: int | None = PERCEPTUAL_SIZE, perceptual_stride: int = PERCEPTUAL_STRIDE):
        from codec import metrics

        self._metrics = metrics
        self.device = device
        self.stride = stride
        self.landmarker = landmarker
        self.perceptual = perceptual
        self.perceptual_size = perceptual_size
        self.perceptual_stride = perceptual_stride
        self.lpips_variant = metrics.LPIPS_VARIANT

    def describe(self) -> dict[str, str]:
        """How each measurement is made, as run.json records it (a resume must measure the same way)."""
        m = self._metrics
        size = (f"shorter side resized to {self.perceptual_size} (antialiased bilinear) when larger"
                if self.perceptual_size else "at the coded size")
        regions = (f"temporal_face/_rest: mean |(d_t - d_t-1) - (r_t - r_t-1)|, source_change_face/_rest: mean "
                   f"|r_t - r_t-1|, BT.601 luma 0-255, every frame pair with a face in both source frames, pooled over "
                   f"the pixels of the face region (convex hull of the source's 478 mesh points at t-1 and at t grown "
                   f"by {m.TEMPORAL_FACE_MARGIN:g} face sizes) and of the rest")
        mouth = (f"LPIPS {m.LPIPS_VARIANT} of the square of {m.MOUTH_CROP_SCALE:g} face sizes around the source's "
                 f"{len(m.AKD_LIPS)} lip points at {m.MOUTH_CROP_SIZE}², every frame with a face in the source: "
                 f"mean, 95th percentile")
        return {"lpips": self.lpips_variant, "temporal": TEMPORAL_METHOD,
                "perceptual": (f"lpips_vgg {m.LPIPS_VGG_VARIANT}, dists {m.DISTS_VARIANT}, frames 0, "
                               f"{self.perceptual_stride}, {2 * self.perceptual_stride}, ..., {size}"
                               if self.perceptual else "off"),
                "regions": regions if self.landmarker else NO_AKD, "mouth": mouth if self.landmarker else NO_AKD}

    def face_points(self, frames: np.ndarray) -> np.ndarray | None:
        """Face-mesh points (pixels) of every frame, None without a landmarker; a source's are found once per clip."""
        return None if self.landmarker is None else mesh_points(self.landmarker, frames)

    def frame_scores(self, ref: np.ndarray, test: np.ndarray, ref_points: np.ndarray | None) -> dict[str, float]:
        """Means over all the frames given: LPIPS, PSNR, SSIM, and AKD from `ref_points` = face_points(ref) (NaN
        when None)."""
        values: dict[str, list[np.ndarray]] = {"lpips": [], "psnr": [], "ssim": []}
        for start in range(0, len(ref), self.CHUNK):
            a, b = ref[start:start + self.CHUNK], test[start:start + self.CHUNK]
            values["lpips"].append(self._metrics.lpips_distance(a, b, device=self.device))
            values["psnr"].append(np.minimum(self._metrics.psnr(a, b), self.PSNR_CAP))
            values["ssim"].append(self._metrics.ssim(a, b))
        scores = {name: float(np.concatenate(v).mean()) if v else math.nan for name, v in values.items()}
        if ref_points is None or self.landmarker is None:
            return {**scores, **dict.fromkeys(("akd", "akd_lips", "face_found"), math.nan)}
        return {**scores, **self._metrics.akd_scores(ref_points, self.face_points(test))}

    def perceptual_scores(self, ref: np.ndarray, test: np.ndarray) -> dict[str, float]:
        """Mean LPIPS-vgg and DISTS of the frames given, resized to the perceptual size."""
        values: dict[str, list[np.ndarray]] = {"lpips_vgg": [], "dists": []}
        for start in range(0, len(ref), self.CHUNK):
            pair = [x[start:start + self.CHUNK] for x in (ref, test)]
            if self.perceptual_size:
                pair = [self._metrics.resize_shorter_side(x, self.perceptual_size) for x in pair]
            values["lpips_vgg"].append(self._metrics.lpips_vgg_distance(*pair, device=self.device))
            values["dists"].append(self._metrics.dists(*pair, device=self.device))
        return {name: float(np.concatenate(v).mean()) for name, v in values.items()}

    def __call__(self, source: np.ndarray, decoded: np.ndarray, source_points: np.ndarray | None) -> dict[str, float]:
        """Every MEASURED_COLUMNS value (NaN where not measured); `source_points` = face_points(source)."""
        s = self.stride
        scores = dict.fromkeys(MEASURED_COLUMNS, math.nan)
        scored_points = None if source_points is None else source_points[::s]
        scores.update(self.frame_scores(source[::s], decoded[::s], scored_points))
        # Each scored frame t >= 1 with frame t-1: slices of the clips already in memory, nothing copied.
        pairs = (source[s - 1:-1:s], source[s::s], decoded[s - 1:-1:s], decoded[s::s])
        temporal = [self._metrics.temporal_error(*(p[start:start + self.CHUNK] for p in pairs))
                    for start in range(0, len(pairs[0]), self.CHUNK)]
        scores["temporal"] = float(np.concatenate(temporal).mean()) if temporal else math.nan
        if self.perceptual:
            scores.update(self.perceptual_scores(source[::self.perceptual_stride], decoded[::self.perceptual_stride]))
        if source_points is not None:
            scores.update(self._metrics.temporal_error_regions(source, decoded, source_points))
            mouth = self._metrics.mouth_lpips(source, decoded, source_points, device=self.device)
            mouth = mouth[np.isfinite(mouth)]
            if mouth.size:
                scores.update(mouth_lpips=float(mouth.mean()), mouth_lpips_p95=float(np.percentile(mouth, 95)))
        return scores


def open_landmarker(config: BenchConfig) -> tuple[FaceLandmarker | None, str]:
    """MediaPipe's face landmarker for AKD and how run.json names it, (None, NO_AKD) with --no-akd; refuses
    in one line when mediapipe or the model file is missing, as AKD is never dropped silently."""
    if not config.akd:
        return None, NO_AKD
    from codec.data.prepare import LANDMARKER_ENV, landmarker_path
    from codec.metrics import AKD_POINTS

    path = landmarker_path(config.landmarker)
    try:
        with native_stderr_silenced():  # MediaPipe's C++ start-up log ignores every log level
            landmarker = FaceLandmarker(path)
    except FaceTrackError as exc:
        raise BenchmarkError(f"AKD needs MediaPipe's face landmarker: {exc}; --landmarker PATH (or ${LANDMARKER_ENV}) "
                             "names the model file, --no-akd runs without AKD") from None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return landmarker, (f"mediapipe {importlib.metadata.version('mediapipe')}, {path.name} ({digest}), "
                        f"{len(AKD_POINTS)} face-mesh points")


def load_clip(path: Path, config: BenchConfig) -> np.ndarray:
    """The clip's frames at the benchmark size and rate, (N, S, S, 3) uint8, cut to --frames."""
    from codec.video import read_frames

    frames = np.stack(list(itertools.islice(read_frames(path, size=config.size, fps=config.fps), config.frames)))
    if len(frames) < 2:
        raise BenchmarkError(f"{path.name}: only {len(frames)} frame(s) at {config.fps:g} fps")
    return frames


def build_codec(name: str, config: BenchConfig) -> Codec:
    """The wrapper of method `name` (one of ALL_METHODS) as configured."""
    if name == "x264":
        return X264()
    if name == "x264-zerolatency":
        return X264(X264Settings(tune="zerolatency"))
    if name == "x264-lowdelay":  # x265's and svtav1's low-delay settings, on x264
        return X264(X264Settings(low_delay=True), name="x264-lowdelay")
    if name == "x265":
        return X265()
    if name == "svtav1":
        return SvtAv1()
    if name == "hold":
        return Hold()
    from rdcodecs.fvc import Fomm, Fvc, FvcHevc, FvcPredicted, FvcQuality, FvcRefs4, FvcRefs4Predicted, FvcSlow

    cls, given = {"fvc": (Fvc, config.model), "fvc-slow": (FvcSlow, config.model),
                  "fvc-refs4": (FvcRefs4, config.model), "fvc-pred": (FvcPredicted, config.model),
                  "fvc-refs4-pred": (FvcRefs4Predicted, config.model), "fvc-q": (FvcQuality, config.model),
                  "fvc-hevc": (FvcHevc, config.model), "fomm": (Fomm, config.fomm_model)}[name]
    if given is None and config.untrained_fallback:
        from codec import motion_model as mm
        from codec.model_loading import UNTRAINED_PREFIX

        if mm.default_weights(cls.kind) is None:
            given = UNTRAINED_PREFIX + mm.REGISTRY[cls.kind].default_config
    codec = cls(given, config.device)
    codec.weights = portable_label(codec.weights)  # no machine path in the results
    return codec


def chosen_points(codec: Codec, pattern: str | None) -> list[str]:
    """The codec's operating points whose labels match one of the comma-separated `pattern`s (all when None)."""
    points = codec.operating_points()
    if pattern is None:
        return points
    patterns = [part.strip() for part in pattern.split(",") if part.strip()]
    return [p for p in points if any(fnmatch.fnmatchcase(p, one) for one in patterns)]


def rd_table(out: Path) -> Table:
    """The results folder's rd.csv: one row per clip, method and point."""
    return Table(out / "rd.csv", RD_COLUMNS, OLDER_COLUMNS)


def check_resume(config: BenchConfig, run_info: dict, codecs: list[Codec]) -> None:
    """Refuse to mix rows from runs with different settings into one rd.csv (unless --force)."""
    old = read_run_info(config.out)
    if old is None:
        return
    # Another data folder may hold other frames under the same clip names: only --allow-mixed adds them.
    changed = changed_keys(old, run_info, RUN_KEYS if config.allow_mixed else (*RUN_KEYS, "data"))
    changed += [f"{c.name} settings" for c in codecs
                if c.name in old.get("methods", {}) and old["methods"][c.name] != run_info["methods"][c.name]]
    refuse_other_settings(config.out, changed, ", or --allow-mixed to add to it" if changed == ["data"] else "")


def warn_untrained(codecs: list[Codec]) -> None:
    for c in codecs:
        if c.untrained:
            print(f"!!! {c.name} runs with {c.weights}: its numbers say nothing about the codec's quality !!!",
                  file=sys.stderr)


def run(config: BenchConfig) -> Path:
    """Fill rd.csv for every clip x method x point not already there, then write the reports."""
    clips = find_clips(config.data, config.clips)
    landmarker, akd_method = open_landmarker(config)
    with landmarker or contextlib.nullcontext():
        metrics = Metrics(config.device, config.metric_stride, landmarker, perceptual=True,
                          perceptual_size=config.perceptual_size, perceptual_stride=config.perceptual_stride)
        return fill(config, clips, metrics, akd_method)


def fill(config: BenchConfig, clips: list[Path], metrics: Metrics, akd_method: str) -> Path:
    """`run` once the clips are found and the landmarker (if any) is open."""
    from tqdm import tqdm

    codecs = [build_codec(name, config) for name in config.methods]
    device = device_description(config.device)
    commit = code_version()
    run_info = {"size": config.size, "fps": config.fps, "frames": config.frames, "metric_stride": config.metric_stride,
                "akd": akd_method, **metrics.describe(), "device": device, "data": portable(config.data),
                "clips": [p.stem for p in clips],
                "methods": {c.name: {**c.settings(), "weights": c.weights, "points": c.operating_points()}
                            for c in codecs},
                "commands": [command_line()]}

    table = rd_table(config.out)
    rd_path = table.path
    if config.force and config.out.exists():
        clear(config.out, ["rd.csv", "run.json"])
    config.out.mkdir(parents=True, exist_ok=True)
    check_resume(config, run_info, codecs)
    rows = table.read()
    done = {(r["clip"], r["method"], r["point"]) for r in rows}
    jobs = [(clip, codec, point) for clip in clips for codec in codecs
            for point in spread(chosen_points(codec, config.point_pattern), config.points_per_method)
            if (clip.stem, codec.name, point) not in done]
    if not config.allow_mixed:
        # Before hours of coding: the reports would refuse the rows this run adds.
        pending = {codec.name: {"method": codec.name, "weights": codec.weights, "device": device}
                   for _, codec, _ in jobs}
        check_mixed(pd.DataFrame([*rows, *pending.values()], columns=["method", "weights", "device"]))
    write_run_info(config.out, run_info)
    warn_untrained(codecs)

    print(f"{len(done)} rows already in {rd_path}, {len(jobs)} to run; metrics on every "
          f"{config.metric_stride}. frame, LPIPS {metrics.lpips_variant} on {device}, AKD {akd_method}",
          file=sys.stderr)
    loaded: tuple[Path, np.ndarray, np.ndarray | None] | None = None
    for clip, codec, point in tqdm(jobs, unit="point", file=sys.stderr):
        if loaded is None or loaded[0] != clip:
            source = load_clip(clip, config)
            # The source's landmarks (every frame) do not depend on the method: found once per clip.
            loaded = (clip, source, metrics.face_points(source))
        _, source, source_points = loaded
        coded = codec.code(source, config.fps, point)
        if coded.frames.shape != source.shape:
            raise BenchmarkError(f"{codec.name} {point} on {clip.stem}: decoded {coded.frames.shape}, "
                                 f"source {source.shape}")
        n, height, width, _ = source.shape
        bits = 8 * len(coded.stream)
        table.append({
            "clip": clip.stem, "method": codec.name, "point": point, "frames": n, "width": width,
            "height": height, "fps": config.fps, "bytes": len(coded.stream),
            "bpp": f"{bits / (width * height * n):.6g}", "kbps": f"{bits / (n / config.fps) / 1000:.6g}",
            **{k: f"{v:.6g}" for k, v in metrics(source, coded.frames, source_points).items()},
            "encode_fps": f"{n / coded.encode_seconds:.4g}", "decode_fps": f"{n / coded.decode_seconds:.4g}",
            **provenance(commit), "device": device, "weights": codec.weights})
    write_reports(config.out, config.allow_mixed)
    warn_untrained(codecs)
    return config.out


# Reports: everything below reads only rd.csv, so a resumed or merged run reports all its rows.
BD_PAIRS = (("fvc", "x264"), ("fvc-q", "x264"), ("fvc-q", "x264-lowdelay"), ("fvc-q", "x265"), ("fvc-q", "svtav1"),
            ("fvc-q", "fvc"), ("fvc-hevc", "fvc"), ("fvc-hevc", "x264"),
            ("fvc", "x264-zerolatency"), ("fvc", "x265"), ("fvc", "svtav1"), ("fvc", "fomm"), ("fomm", "x264"), ("x264-zerolatency", "x264"), ("x264-lowdelay", "x264"), ("x265", "x264-lowdelay"),
            ("svtav1", "x264-lowdelay"), ("x265", "x264"), ("svtav1", "x264"))
# Plotted metric -> (axis label, higher is better).
AXES = {"lpips": ("LPIPS AlexNet v0.1 (lower is better)", False), "psnr": ("PSNR RGB (dB)", True),
        "lpips_vgg": ("LPIPS VGG16 v0.1 (lower is better)", False), "dists": ("DISTS (lower is better)", False),
        "akd": ("AKD, px at the coded size (lower is better)", False),
        "temporal": ("temporal error, luma 0-255 (lower is better)", False),
        "temporal_face": ("temporal error in the face, every frame pair", False),
        "temporal_rest": ("temporal error outside the face, every frame pair", False),
        "mouth_lpips_p95": ("mouth-crop LPIPS, 95th percentile of the frames", False)}
# The source's own change in a region, drawn beside that region's temporal error.
SOURCE_CHANGE = {"temporal_face": "source_change_face", "temporal_rest": "source_change_rest"}
BD_METRICS = {metric: AXES[metric][1] for metric in ("lpips", "psnr", "lpips_vgg", "dists")}
LPIPS_TARGETS = (0.20, 0.15)
# quality.csv's joint target: LPIPS 0.20 with AKD at most the anchor's where the anchor's LPIPS is 0.20.
JOINT_LPIPS, ANCHOR = 0.20, "x264"
JOINT_COLUMN = f"bpp_for_lpips_{JOINT_LPIPS:.2f}_and_{ANCHOR}_akd"
# What "not measured" (NaN) means in the reports, keyed by the summary column that shows it.
NOT_MEASURED = {"face_found": ("AKD", "rows from before rd_curve measured it, run with --no-akd, or of a clip "
                                      "whose scored source frames show no face"),
                "temporal": ("temporal error", "rows from before rd_curve measured it"),
                "lpips_vgg": ("LPIPS-vgg and DISTS", "rows from before rd_curve measured them"),
                "temporal_face": ("temporal error by region and mouth LPIPS", "rows from before rd_curve measured "
                                  "them, run with --no-akd, or of a clip whose source frames show no face")}
# quality.csv: each of these where the method's LPIPS (alex) is JOINT_LPIPS.
AT_JOINT = ("akd", "temporal", "lpips_vgg", "dists", "temporal_face", "temporal_rest", "mouth_lpips", "mouth_lpips_p95")


def weights_id(label: str) -> str:
    """The model id that ends a weights label ("PATH (ID)"), else the label: a copy elsewhere is the same weights."""
    match = re.search(r"\(([0-9a-f]{32})\)$", label)
    return match.group(1) if match else label


def check_mixed(rd: pd.DataFrame) -> None:
    """Refuse rows of one method that ran with other weights (model id) or on another device: the
    reports' means would describe neither."""
    keys = {"weights": rd["weights"].map(weights_id), "device": rd["device"]}
    differ = []
    for method, rows in rd.groupby("method", sort=False):
        for column, key in keys.items():
            values = rows[column][~key.loc[rows.index].duplicated()]
            if len(values) > 1:
                differ.append(f"{method} {column} {' vs '.join(values)}")
    if differ:
        raise BenchmarkError(f"rows of one method would be averaged across {'; '.join(differ)}: keep them in "
                             "separate runs (--run-name), or pass --allow-mixed")


def summarize(rd: pd.DataFrame) -> pd.DataFrame:
    """Per method and point: means over clips (clips = how many were averaged)."""
    numeric = ["bpp", "kbps", *MEASURED_COLUMNS, "encode_fps", "decode_fps"]
    grouped = rd.groupby(["method", "point"], sort=False)
    summary = grouped[numeric].mean()
    # A metric of a point is not measured (NaN) unless every clip measured it: a mean over some clips would not
    # compare with the others. A measured clip whose decoded frames never showed a face has no AKD: the AKD
    # means skip it, face_found counts it.
    unmeasured = grouped[numeric].count().lt(grouped.size(), axis=0)
    summary.loc[unmeasured.face_found, ["akd", "akd_lips", "face_found"]] = np.nan
    for column in ["temporal", *PERCEPTUAL_COLUMNS, *REGION_COLUMNS, *MOUTH_COLUMNS]:
        summary.loc[unmeasured[column], column] = np.nan
    summary.insert(0, "clips", grouped["clip"].nunique())
    summary["weights"] = grouped["weights"].agg(lambda labels: " + ".join(labels.unique()))
    return summary.reset_index().sort_values(["method", "bpp"], kind="stable", ignore_index=True)


def bd_table(rd: pd.DataFrame) -> pd.DataFrame:
    """BD-rate of each present pair per clip and its mean over the clips where the curves overlap."""
    rows = []
    for test, anchor in BD_PAIRS:
        for metric, higher in BD_METRICS.items():
            per_clip = {}
            for clip, group in rd.dropna(subset=[metric]).groupby("clip"):
                a, t = group[group.method == anchor], group[group.method == test]
                if len(a) < 2 or len(t) < 2:
                    continue
                try:
                    per_clip[clip] = bd_rate(a.bpp, a[metric], t.bpp, t[metric], higher)
                except CurveError:
                    per_clip[clip] = float("nan")
            if not per_clip:
                continue
            values = np.array(list(per_clip.values()))
            valid = values[np.isfinite(values)]
            for clip, value in [*per_clip.items(), ("mean", float(valid.mean()) if len(valid) else float("nan"))]:
                rows.append({"test": test, "anchor": anchor, "metric": metric, "clip": clip,
                             "clips_used": len(valid) if clip == "mean" else int(np.isfinite(value)),
                             "bd_rate_pct": value})
    return pd.DataFrame(rows, columns=["test", "anchor", "metric", "clip", "clips_used", "bd_rate_pct"])


def rate_label(bpp: float, how: str) -> str:
    """A `rate_for_quality` answer as quality.csv writes it."""
    return {"interpolated": f"{bpp:.5g}", "below-range": f"<={bpp:.5g}", "not-reached": "not reached"}[how]


def at_joint_lpips(curve: pd.DataFrame, column: str) -> float:
    """`column` where the curve's LPIPS reaches JOINT_LPIPS, linear in log bpp between the points of its LPIPS
    Pareto front; NaN where that rate is not interpolated (reached below or above the curve's range)."""
    bpp, how = rate_for_quality(curve.bpp, curve.lpips, JOINT_LPIPS, higher_is_better=False)
    if how != "interpolated":
        return math.nan
    front_bpp, _ = pareto_front(curve.bpp, curve.lpips, higher_is_better=False)
    values = curve.sort_values(["bpp", "lpips"]).drop_duplicates("bpp").set_index("bpp")[column]
    return float(np.interp(np.log(bpp), np.log(front_bpp), values.loc[front_bpp]))


def joint_rate(curve: pd.DataFrame, anchor_akd: float) -> str:
    """The bpp at which max(LPIPS / JOINT_LPIPS, AKD / anchor_akd) reaches 1 (both targets met), as quality.csv
    writes it: interpolated like the LPIPS targets, over the points whose AKD was measured."""
    if curve.akd.isna().all():
        return "not measured"
    if not anchor_akd > 0:  # also NaN: no anchor, or its LPIPS 0.20 rate is not interpolated
        return f"no {ANCHOR} AKD at LPIPS {JOINT_LPIPS:.2f}"
    score = np.maximum(curve.lpips / JOINT_LPIPS, curve.akd / anchor_akd)
    kept = score.notna()
    return rate_label(*rate_for_quality(curve.bpp[kept], score[kept], 1.0, higher_is_better=False))


def quality_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Per method: LPIPS at its lowest rate, the bpp it needs for each LPIPS target, AKD and temporal error
    where its LPIPS is 0.20, and the bpp it needs for LPIPS 0.20 with AKD at most x264's there."""
    curves = dict(list(summary.groupby("method", sort=False)))
    anchor_akd = at_joint_lpips(curves[ANCHOR], "akd") if ANCHOR in curves else math.nan
    rows = []
    for method, curve in curves.items():
        lowest = curve.loc[curve.bpp.idxmin()]
        row = {"method": method, "lowest_bpp": lowest.bpp, "lpips_at_lowest_bpp": lowest.lpips}
        for target in LPIPS_TARGETS:
            row[f"bpp_for_lpips_{target:.2f}"] = rate_label(*rate_for_quality(curve.bpp, curve.lpips, target,
                                                                              higher_is_better=False))
        for column in AT_JOINT:
            if column not in curve or curve[column].isna().all():
                row[f"{column}_at_lpips_{JOINT_LPIPS:.2f}"] = "not measured"
                continue
            value = at_joint_lpips(curve, column)
            row[f"{column}_at_lpips_{JOINT_LPIPS:.2f}"] = f"{value:.4g}" if math.isfinite(value) else "-"
        row[JOINT_COLUMN] = joint_rate(curve, anchor_akd)
        rows.append(row)
    return pd.DataFrame(rows)


def plot(summary: pd.DataFrame, metrics: tuple[str, ...], path: Path, title: str) -> None:
    """One panel per metric against bpp, side by side; a metric no row measured says so in its panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {method: f"C{i}" for i, method in enumerate(summary.method.unique())}  # the same in every panel
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.4 * len(metrics), 4.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        label, higher = AXES[metric]
        measured = summary.dropna(subset=[metric])
        if metric in SOURCE_CHANGE and measured[SOURCE_CHANGE[metric]].notna().any():
            # The source's own change does not depend on the method: one line, the mean over the points.
            ax.axhline(measured[SOURCE_CHANGE[metric]].mean(), color="grey", linestyle="--", linewidth=0.8,
                       label="the source's own change")
        for method, curve in measured.groupby("method", sort=False):
            weights = curve.weights.iloc[0]
            # Markers for every point; the line joins the Pareto front, which is what BD-rate integrates.
            front_bpp, front_metric = pareto_front(curve.bpp, curve[metric], higher_is_better=higher)
            ax.plot(front_bpp, front_metric, color=colours[method],
                    label=method if weights == "-" else f"{method} ({weights})")
            ax.plot(curve.bpp, curve[metric], linestyle="none", marker="o", markersize=4, color=colours[method])
        if measured.empty:
            ax.text(0.5, 0.5, f"{metric}: not measured", transform=ax.transAxes, ha="center", va="center")
        else:
            ax.set_xscale("log")
            ax.legend(fontsize=7)
        if metric == "lpips":
            for target in LPIPS_TARGETS:
                ax.axhline(target, color="grey", linewidth=0.6, linestyle=":")
        ax.set_xlabel("bits per pixel (all stream bytes)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", linewidth=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_reports(out: Path, allow_mixed: bool = False) -> None:
    """summary.csv, bd_rate.csv, quality.csv and the three plots from rd.csv; prints the tables."""
    rd = pd.read_csv(out / "rd.csv").reindex(columns=RD_COLUMNS)  # columns older rows lack: NaN
    if not allow_mixed:
        check_mixed(rd)
    summary = summarize(rd)
    bd = bd_table(rd)
    quality = quality_table(summary)
    summary.to_csv(out / "summary.csv", index=False, float_format="%.6g", na_rep="nan")
    bd.to_csv(out / "bd_rate.csv", index=False, float_format="%.4g")
    quality.to_csv(out / "quality.csv", index=False, float_format="%.6g")
    frames = f"{rd.frames.min()}" if rd.frames.min() == rd.frames.max() else f"{rd.frames.min()}-{rd.frames.max()}"
    title = (f"{out.name}: {rd['clip'].nunique()} clips, {frames} frames, "
             f"{rd.width.iloc[0]}x{rd.height.iloc[0]} @ {rd.fps.iloc[0]:g} fps")
    for name, metrics in (("lpips", ("lpips",)), ("psnr", ("psnr",)), ("motion", ("lpips", "akd", "temporal")),
                          ("perceptual", ("lpips", "lpips_vgg", "dists")),
                          ("regions", ("temporal_face", "temporal_rest", "mouth_lpips_p95"))):
        plot(summary, metrics, out / f"rd_{name}.png", title)
    printed = summary.drop(columns=["weights", "source_change_face", "source_change_rest", "face_area"])
    with pd.option_context("display.width", 250, "display.max_columns", 40, "display.max_rows", 200):
        print(printed.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        if summary.source_change_face.notna().any():
            print("source's own change (every frame pair, the same for every method): face "
                  f"{summary.source_change_face.mean():.4g}, rest {summary.source_change_rest.mean():.4g}; face "
                  f"region {summary.face_area.mean():.1%} of the pixels")
        for column, (what, why) in NOT_MEASURED.items():
            methods = summary.method[summary[column].isna()].unique()
            if len(methods):
                print(f"{what} not measured (NaN) on points of {', '.join(methods)}: {why}")
        means = bd[bd["clip"] == "mean"]
        print("\nBD-rate (PCHIP, mean over clips; negative = test needs fewer bits for the same quality):")
        print(means.to_string(index=False, float_format=lambda v: f"{v:.1f}") if len(means) else "  (no pair present)")
        print("\nreached quality (curves averaged over clips):")
        print(quality.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA if DEFAULT_DATA.is_dir() else None,
                   help=f"folder of clips (default {DEFAULT_DATA} when it exists)")
    p.add_argument("--run-name", default=None, help="results go to benchmarks/results/<run-name> (default: dev, quick)")
    p.add_argument("--out", type=Path, default=None, help="results folder (overrides --run-name)")
    p.add_argument("--methods", default=",".join(DEFAULT_METHODS),
                   help=f"comma-separated, of {', '.join(ALL_METHODS)} (default: all but {', '.join(VARIANTS)})")
    p.add_argument("--clips", nargs="+", default=None, help="N (the first N clips by name) or clip names (stems)")
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                   help=f"first N frames of each clip after resampling, 0 = all (default {DEFAULT_FRAMES}: 10 s)")
    p.add_argument("--size", type=int, default=512, help="frame side every method codes and is measured at")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate every clip is resampled to")
    p.add_argument("--metric-stride", type=int, default=DEFAULT_METRIC_STRIDE,
                   help=f"metrics on frames 0, n, 2n, ... of every method (all frames are coded; "
                        f"default {DEFAULT_METRIC_STRIDE})")
    p.add_argument("--points", type=int, default=None, help="use only N operating points per method, spread evenly")
    p.add_argument("--point-pattern", default=None,
                   help="only operating points whose label matches one of these comma-separated patterns, "
                        "e.g. '*-refresh0,*-every250' (one keyframe per clip); methods without a match are skipped")
    p.add_argument("--device", default="cpu", help="torch device for the metrics and the neural codecs")
    p.add_argument("--model", default=None,
                   help="fvc weights: PATH or untrained-CONFIG (the development model); default the shipped ones")
    p.add_argument("--fomm-model", default=None, help="FOMM weights, same syntax as --model")
    p.add_argument("--quick", action="store_true",
                   help="1 clip, 16 frames, 3 points per method, metric stride 2; the untrained development "
                        "models when no weights ship")
    p.add_argument("--no-akd", action="store_true",
                   help="run without MediaPipe: the columns that need face landmarks (akd, akd_lips, face_found, "
                        "the face/rest temporal error and the mouth LPIPS) read nan and the reports say they were "
                        "not measured; the whole-frame temporal error is still measured")
    p.add_argument("--perceptual-size", type=int, default=PERCEPTUAL_SIZE, metavar="N",
                   help=f"LPIPS-vgg and DISTS see frames with the shorter side resized to N when larger, 0 = at the "
                        f"coded size (default {PERCEPTUAL_SIZE}; a VGG16 pass at 512² costs 4x as much)")
    p.add_argument("--perceptual-stride", type=int, default=PERCEPTUAL_STRIDE, metavar="N",
                   help=f"LPIPS-vgg and DISTS on frames 0, N, 2N, ... (default {PERCEPTUAL_STRIDE}: 5 of the 250; "
                        "with four VGG16 passes a frame they cost 8x LPIPS-alex)")
    p.add_argument("--landmarker", type=Path, default=None, metavar="PATH",
                   help="MediaPipe face_landmarker.task for AKD (default: $FVC_FACE_LANDMARKER, else "
                        "models/face_landmarker.task in the shared folder beside the checkout)")
    p.add_argument("--force", action="store_true", help="discard the rows of an earlier run in the same folder")
    p.add_argument("--allow-mixed", action="store_true",
                   help="add rows from another data folder or device to a run, and report one method's rows made "
                        "with other weights or on other devices (refused by default, naming what differs)")
    a = p.parse_args(argv)
    if a.data is None:
        p.error(f"no clips: {DEFAULT_DATA} does not exist; pass --data <folder of talking-head clips>")
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in ALL_METHODS]
    if unknown or not methods:
        p.error(f"unknown method(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(ALL_METHODS)}")
    a.frames = a.frames or None
    for name in ("frames", "size", "metric_stride", "perceptual_stride", "points"):
        value = getattr(a, name)
        if value is not None and value < (2 if name == "points" else 1):
            p.error(f"--{name.replace('_', '-')} must be at least {2 if name == 'points' else 1}, got {value}")
    if a.perceptual_size < 0:
        p.error(f"--perceptual-size must be 0 (the coded size) or a side in pixels, got {a.perceptual_size}")
    if a.size % 2:
        p.error(f"--size must be even (x264 codes 4:2:0), got {a.size}")
    if a.quick:
        a.clips = a.clips or ["1"]
        a.frames = 16 if a.frames == DEFAULT_FRAMES else a.frames
        a.points = a.points or 3
        a.metric_stride = 2 if a.metric_stride == DEFAULT_METRIC_STRIDE else a.metric_stride
    out = a.out or RESULTS / (a.run_name or ("quick" if a.quick else "dev"))
    return BenchConfig(data=a.data, out=out, methods=methods, clips=a.clips, frames=a.frames, size=a.size,
                       fps=a.fps, metric_stride=a.metric_stride, points_per_method=a.points,
                       point_pattern=a.point_pattern, device=a.device, model=a.model, fomm_model=a.fomm_model,
                       untrained_fallback=a.quick, force=a.force, allow_mixed=a.allow_mixed, akd=not a.no_akd,
                       landmarker=a.landmarker, perceptual_size=a.perceptual_size or None,
                       perceptual_stride=a.perceptual_stride)


def run_reporting(name: str, job: Callable[[], Path], expected: tuple[type[Exception], ...]) -> int:
    """Run a benchmark: its results folder and time on stderr; an expected or user error is one line, exit 2."""
    start = time.perf_counter()
    try:
        out = job()
    except expected as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from codec.errors import is_user_error, one_line

        if not is_user_error(exc):
            raise
        print(f"{name}: error: {one_line(exc)}", file=sys.stderr)
        return 2
    print(f"results in {out} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    return run_reporting("rd_curve", lambda: run(config), (BenchmarkError, CurveError))


if __name__ == "__main__":
    sys.exit(main())
