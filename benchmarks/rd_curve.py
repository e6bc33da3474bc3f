"""Rate-distortion benchmark: bpp vs LPIPS/PSNR/SSIM, AKD and temporal error on 512x512 talking heads.

Every clip is read once through `codec.video.read_frames` (same resize and fps for every method),
each method codes it at each operating point, and the metrics compare decoded and source frames.
Writes benchmarks/results/<run-name>/{rd.csv, summary.csv, bd_rate.csv, quality.csv, run.json,
rd_lpips.png, rd_psnr.png, rd_motion.png}; rerunning skips the rows already in rd.csv. By default the
first 250 frames of every clip are coded and every 10th is measured. AKD (motion fidelity: distance
between face landmarks of decoded and source frames) needs MediaPipe; --no-akd runs without it. Usage:
    .venv/bin/python benchmarks/rd_curve.py --quick
    .venv/bin/python benchmarks/rd_curve.py --methods x264,x264-zerolatency --run-name bench512
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import fnmatch
import hashlib
import importlib.metadata
import io
import itertools
import json
import math
import os
import platform
import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))  # siblings, also when imported from tests

from bd_rate import CurveError, bd_rate, pareto_front, rate_for_quality  # noqa: E402
from protocol import DEFAULT_FRAMES  # noqa: E402,F401 (part of rd_curve's interface)
from codec.data.face_track import FaceLandmarker, FaceTrackError, mesh_points, native_stderr_silenced  # noqa: E402
from rdcodecs import BenchmarkError, Codec, X264, X264Settings  # noqa: E402
from rdcodecs.hold import Hold  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "bench512"
RESULTS = REPO / "benchmarks" / "results"
VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v"}
VARIANTS = ("fvc-slow", "fvc-refs4", "fvc-pred", "fvc-refs4-pred")
ALL_METHODS = ("x264", "x264-zerolatency", "fvc", "fomm", "hold", *VARIANTS)
# fvc-slow encodes at ~1 frame/s on the 2-core CPU and the others are coding options: they run only when named.
DEFAULT_METHODS = ALL_METHODS[:-len(VARIANTS)]
# Motion fidelity (AKD, MediaPipe face mesh) and temporal consistency: rows written before these columns
# existed lack them, and read as NaN ("not measured").
MOTION_COLUMNS = ["akd", "akd_lips", "face_found", "temporal"]
RD_COLUMNS = ["clip", "method", "point", "frames", "width", "height", "fps", "bytes", "bpp", "kbps",
              "lpips", "psnr", "ssim", *MOTION_COLUMNS, "encode_fps", "decode_fps", "device", "weights"]
LEGACY_COLUMNS = [c for c in RD_COLUMNS if c not in MOTION_COLUMNS]
# The standard protocol: the first 10 s of every clip, metrics on every 10th frame. Whole clips at
# stride 1 would take LPIPS alone ~0.2 s x 5000 frames per operating point on a 2-core CPU.
DEFAULT_METRIC_STRIDE = 10
# What a resumed run must share with the rows already written, or its rows would not be comparable.
RUN_KEYS = ("size", "fps", "frames", "metric_stride", "lpips", "akd", "temporal")
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
    akd: bool = True  # False = --no-akd: run without MediaPipe, AKD columns NaN
    landmarker: Path | None = None  # MediaPipe's face_landmarker.task; None = codec.data.prepare's default


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
    """LPIPS (AlexNet v0.1), PSNR, SSIM, AKD and temporal error of decoded vs source frames, on every
    `stride`-th frame; AKD is NaN without a landmarker (--no-akd)."""

    PSNR_CAP = 100.0  # a frame identical to its source counts as this many dB
    CHUNK = 32  # frames per metric call: bounds float copies of long 512² clips

    def __init__(self, device: str, stride: int, landmarker: FaceLandmarker | None = None):
        from codec import metrics

        self._metrics = metrics
        self.device = device
        self.stride = stride
        self.landmarker = landmarker
        self.lpips_variant = metrics.LPIPS_VARIANT

    def face_points(self, frames: np.ndarray) -> np.ndarray | None:
        """Face-mesh points (pixels) of the scored frames, None without a landmarker."""
        return None if self.landmarker is None else mesh_points(self.landmarker, frames[:: self.stride])

    def __call__(self, source: np.ndarray, decoded: np.ndarray, source_points: np.ndarray | None) -> dict[str, float]:
        """Means over the scored frames; `source_points` = face_points(source), found once per clip."""
        s = self.stride
        ref, test = source[::s], decoded[::s]
        values: dict[str, list[np.ndarray]] = {"lpips": [], "psnr": [], "ssim": [], "temporal": []}
        for start in range(0, len(ref), self.CHUNK):
            a, b = ref[start:start + self.CHUNK], test[start:start + self.CHUNK]
            values["lpips"].append(self._metrics.lpips_distance(a, b, device=self.device))
            values["psnr"].append(np.minimum(self._metrics.psnr(a, b), self.PSNR_CAP))
            values["ssim"].append(self._metrics.ssim(a, b))
        # Each scored frame t >= 1 with frame t-1: slices of the clips already in memory, nothing copied.
        pairs = (source[s - 1:-1:s], source[s::s], decoded[s - 1:-1:s], decoded[s::s])
        for start in range(0, len(pairs[0]), self.CHUNK):
            values["temporal"].append(self._metrics.temporal_error(*(p[start:start + self.CHUNK] for p in pairs)))
        scores = {name: float(np.concatenate(v).mean()) if v else math.nan for name, v in values.items()}
        if source_points is None:
            return {**scores, **dict.fromkeys(("akd", "akd_lips", "face_found"), math.nan)}
        return {**scores, **self._metrics.akd_scores(source_points, self.face_points(decoded))}


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
    if name == "hold":
        return Hold()
    from rdcodecs.fvc import Fomm, Fvc, FvcPredicted, FvcRefs4, FvcRefs4Predicted, FvcSlow

    cls, given = {"fvc": (Fvc, config.model), "fvc-slow": (FvcSlow, config.model),
                  "fvc-refs4": (FvcRefs4, config.model), "fvc-pred": (FvcPredicted, config.model),
                  "fvc-refs4-pred": (FvcRefs4Predicted, config.model), "fomm": (Fomm, config.fomm_model)}[name]
    if given is None and config.untrained_fallback:
        from codec import motion_model as mm
        from codec.model_loading import UNTRAINED_PREFIX

        if mm.default_weights(cls.kind) is None:
            given = UNTRAINED_PREFIX + mm.REGISTRY[cls.kind].default_config
    return cls(given, config.device)


def chosen_points(codec: Codec, pattern: str | None) -> list[str]:
    """The codec's operating points whose labels match one of the comma-separated `pattern`s (all when None)."""
    points = codec.operating_points()
    if pattern is None:
        return points
    patterns = [part.strip() for part in pattern.split(",") if part.strip()]
    return [p for p in points if any(fnmatch.fnmatchcase(p, one) for one in patterns)]


def read_rows(path: Path) -> list[dict[str, str]]:
    """Complete rows of an rd.csv; a row cut short by an interrupted run is dropped (and redone)."""
    if not path.exists():
        return []
    text = path.read_text()
    if not text.endswith("\n"):  # the last row was being written when the run stopped
        text = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames not in (RD_COLUMNS, LEGACY_COLUMNS):
        raise BenchmarkError(f"{path} has columns {reader.fieldnames}, expected {RD_COLUMNS}")
    rows = [{**dict.fromkeys(MOTION_COLUMNS, "nan"), **row} for row in reader]  # legacy rows: not measured
    return [row for row in rows if all(row.get(c) not in (None, "") for c in RD_COLUMNS)]


def write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    """Replace rd.csv with `rows` atomically, so an interruption never loses finished rows."""
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=RD_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def check_resume(config: BenchConfig, run_info: dict, codecs: list[Codec]) -> None:
    """Refuse to mix rows from runs with different settings into one rd.csv (unless --force)."""
    info_path = config.out / "run.json"
    if not info_path.exists():
        return
    old = json.loads(info_path.read_text())
    # Another data folder may hold other frames under the same clip names: only --allow-mixed adds them.
    keys = RUN_KEYS if config.allow_mixed else (*RUN_KEYS, "data")
    changed = [k for k in keys if old.get(k) != run_info[k]]
    changed += [f"{c.name} settings" for c in codecs
                if c.name in old.get("methods", {}) and old["methods"][c.name] != run_info["methods"][c.name]]
    if changed:
        mixable = ", or --allow-mixed to add to it" if changed == ["data"] else ""
        raise BenchmarkError(f"{config.out} holds a run with other {', '.join(changed)}; "
                             f"use another --run-name, or --force to start it over{mixable}")


def write_run_info(config: BenchConfig, run_info: dict) -> None:
    """run.json: this run's settings merged with the methods recorded by earlier runs in the folder."""
    info_path = config.out / "run.json"
    if info_path.exists():
        old = json.loads(info_path.read_text())
        # Keys this run does not write (notes such as "superseded") stay.
        run_info = {**old, **run_info, "methods": {**old.get("methods", {}), **run_info["methods"]},
                    "clips": sorted(set(old.get("clips", [])) | set(run_info["clips"])),
                    "commands": old.get("commands", []) + run_info["commands"]}
    tmp = info_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(run_info, indent=2) + "\n")
    tmp.replace(info_path)


def append_row(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=RD_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow(row)
        f.flush()
        os.fsync(f.fileno())


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
        return fill(config, clips, Metrics(config.device, config.metric_stride, landmarker), akd_method)


def fill(config: BenchConfig, clips: list[Path], metrics: Metrics, akd_method: str) -> Path:
    """`run` once the clips are found and the landmarker (if any) is open."""
    from tqdm import tqdm

    codecs = [build_codec(name, config) for name in config.methods]
    device = device_description(config.device)
    run_info = {"size": config.size, "fps": config.fps, "frames": config.frames, "metric_stride": config.metric_stride,
                "lpips": metrics.lpips_variant, "akd": akd_method, "temporal": TEMPORAL_METHOD,
                "device": device, "data": str(config.data),
                "clips": [p.stem for p in clips],
                "methods": {c.name: {**c.settings(), "weights": c.weights, "points": c.operating_points()}
                            for c in codecs},
                "commands": [shlex.join([Path(sys.executable).name, *sys.argv])]}

    rd_path = config.out / "rd.csv"
    if config.force and config.out.exists():
        for name in ("rd.csv", "run.json"):
            (config.out / name).unlink(missing_ok=True)
    config.out.mkdir(parents=True, exist_ok=True)
    check_resume(config, run_info, codecs)
    rows = read_rows(rd_path)
    done = {(r["clip"], r["method"], r["point"]) for r in rows}
    jobs = [(clip, codec, point) for clip in clips for codec in codecs
            for point in spread(chosen_points(codec, config.point_pattern), config.points_per_method)
            if (clip.stem, codec.name, point) not in done]
    if not config.allow_mixed:
        # Before hours of coding: the reports would refuse the rows this run adds.
        pending = {codec.name: {"method": codec.name, "weights": codec.weights, "device": device}
                   for _, codec, _ in jobs}
        check_mixed(pd.DataFrame([*rows, *pending.values()], columns=["method", "weights", "device"]))
    if rd_path.exists():
        write_rows(rd_path, rows)
    write_run_info(config, run_info)
    warn_untrained(codecs)

    print(f"{len(done)} rows already in {rd_path}, {len(jobs)} to run; metrics on every "
          f"{config.metric_stride}. frame, LPIPS {metrics.lpips_variant} on {device}, AKD {akd_method}",
          file=sys.stderr)
    loaded: tuple[Path, np.ndarray, np.ndarray | None] | None = None
    for clip, codec, point in tqdm(jobs, unit="point", file=sys.stderr):
        if loaded is None or loaded[0] != clip:
            source = load_clip(clip, config)
            # The source's landmarks do not depend on the method: found once per clip.
            loaded = (clip, source, metrics.face_points(source))
        _, source, source_points = loaded
        coded = codec.code(source, config.fps, point)
        if coded.frames.shape != source.shape:
            raise BenchmarkError(f"{codec.name} {point} on {clip.stem}: decoded {coded.frames.shape}, "
                                 f"source {source.shape}")
        n, height, width, _ = source.shape
        bits = 8 * len(coded.stream)
        append_row(rd_path, {
            "clip": clip.stem, "method": codec.name, "point": point, "frames": n, "width": width,
            "height": height, "fps": config.fps, "bytes": len(coded.stream),
            "bpp": f"{bits / (width * height * n):.6g}", "kbps": f"{bits / (n / config.fps) / 1000:.6g}",
            **{k: f"{v:.6g}" for k, v in metrics(source, coded.frames, source_points).items()},
            "encode_fps": f"{n / coded.encode_seconds:.4g}", "decode_fps": f"{n / coded.decode_seconds:.4g}",
            "device": device, "weights": codec.weights})
    write_reports(config.out, config.allow_mixed)
    warn_untrained(codecs)
    return config.out


# Reports: everything below reads only rd.csv, so a resumed or merged run reports all its rows.
BD_PAIRS = (("fvc", "x264"), ("fvc", "x264-zerolatency"), ("fvc", "fomm"), ("fomm", "x264"),
            ("x264-zerolatency", "x264"))
# Plotted metric -> (axis label, higher is better).
AXES = {"lpips": ("LPIPS AlexNet v0.1 (lower is better)", False), "psnr": ("PSNR RGB (dB)", True),
        "akd": ("AKD, px at the coded size (lower is better)", False),
        "temporal": ("temporal error, luma 0-255 (lower is better)", False)}
BD_METRICS = {metric: AXES[metric][1] for metric in ("lpips", "psnr")}
LPIPS_TARGETS = (0.20, 0.15)
# quality.csv's joint target: LPIPS 0.20 with AKD at most the anchor's where the anchor's LPIPS is 0.20.
JOINT_LPIPS, ANCHOR = 0.20, "x264"
JOINT_COLUMN = f"bpp_for_lpips_{JOINT_LPIPS:.2f}_and_{ANCHOR}_akd"
# What "not measured" (NaN) means in the reports, keyed by the summary column that shows it.
NOT_MEASURED = {"face_found": ("AKD", "rows from before rd_curve measured it, run with --no-akd, or of a clip "
                                      "whose scored source frames show no face"),
                "temporal": ("temporal error", "rows from before rd_curve measured it")}


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
    numeric = ["bpp", "kbps", "lpips", "psnr", "ssim", *MOTION_COLUMNS, "encode_fps", "decode_fps"]
    grouped = rd.groupby(["method", "point"], sort=False)
    summary = grouped[numeric].mean()
    # AKD and the temporal error of a point are not measured (NaN) unless every clip was: a mean over some
    # clips would not compare with the others. A measured clip whose decoded frames never showed a face has
    # no AKD: the AKD means skip it, face_found counts it.
    unmeasured = grouped[["face_found", "temporal"]].count().lt(grouped.size(), axis=0)
    summary.loc[unmeasured.face_found, ["akd", "akd_lips", "face_found"]] = np.nan
    summary.loc[unmeasured.temporal, "temporal"] = np.nan
    summary.insert(0, "clips", grouped["clip"].nunique())
    summary["weights"] = grouped["weights"].agg(lambda labels: " + ".join(labels.unique()))
    return summary.reset_index().sort_values(["method", "bpp"], kind="stable", ignore_index=True)


def bd_table(rd: pd.DataFrame) -> pd.DataFrame:
    """BD-rate of each present pair per clip and its mean over the clips where the curves overlap."""
    rows = []
    for test, anchor in BD_PAIRS:
        for metric, higher in BD_METRICS.items():
            per_clip = {}
            for clip, group in rd.groupby("clip"):
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
        for column in ("akd", "temporal"):
            value = at_joint_lpips(curve, column)
            row[f"{column}_at_lpips_{JOINT_LPIPS:.2f}"] = (
                "not measured" if curve[column].isna().all() else f"{value:.4g}" if math.isfinite(value) else "-")
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
    rd = pd.read_csv(out / "rd.csv").reindex(columns=RD_COLUMNS)  # rows from before MOTION_COLUMNS: NaN
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
    for name, metrics in (("lpips", ("lpips",)), ("psnr", ("psnr",)), ("motion", ("lpips", "akd", "temporal"))):
        plot(summary, metrics, out / f"rd_{name}.png", title)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_rows", 200):
        print(summary.drop(columns="weights").to_string(index=False, float_format=lambda v: f"{v:.4g}"))
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
                   help="run without MediaPipe: the AKD columns (akd, akd_lips, face_found) read nan and the "
                        "reports say AKD was not measured; the temporal error is still measured")
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
    for name in ("frames", "size", "metric_stride", "points"):
        value = getattr(a, name)
        if value is not None and value < (2 if name == "points" else 1):
            p.error(f"--{name.replace('_', '-')} must be at least {2 if name == 'points' else 1}, got {value}")
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
                       landmarker=a.landmarker)


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
