"""Reenactment benchmark: same-identity reconstruction, cross-identity motion transfer and free view, fv2v vs FOMM.

The paper's other experiments, without a bitstream: each model analyses the first frame of a clip (the source)
and renders the scored frames from the motion it estimates on driving frames, unquantised. Tasks:
  reconstruction  driving = the source's own clip, absolute motion: L1, PSNR, SSIM, LPIPS, AKD
  cross_identity  driving = a clip of another identity, relative motion as `fvc animate` moves a portrait:
                  expression AKD, head-pose error, LPIPS to the source frame (identity kept)
  free_view       fv2v only: the reconstruction re-posed as `fvc decode --yaw/--pitch/--frontalize` does:
                  head-pose error against the pose asked for, faces found, LPIPS outside the face
`hold` (the source frame shown for every frame) is the floor of the first two. Clips: --data (default bench512,
each clip its own identity) and the val split (held-out identities) of a prepared training cache (--cache, at
the cache's size; skipped without it). Frames 0..249 of each clip are read at 25 fps and every 25th after the
first is scored. Writes benchmarks/results/<run-name>/: <task>.csv (one row per dataset, source, driving,
method and view; rerunning skips the rows there), <task>_summary.csv, summary.md, <task>.png (source, driving
and output frames of a few cases) and run.json. Face landmarks and head pose come from MediaPipe, which
--no-akd does without (those columns read nan, free_view is skipped). Usage:
    .venv/bin/python benchmarks/reenactment.py --cache ../cache/c256 --run-name reenactment
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))  # siblings, also when imported from tests

from rd_curve import (DEFAULT_DATA, RESULTS, BenchmarkError, Metrics, device_description, find_clips,  # noqa: E402
                      load_clip, open_landmarker, run_reporting, weights_id)
from results_folder import (PROVENANCE_COLUMNS, UNKNOWN, Table, changed_keys, clear, code_version,  # noqa: E402
                            command_line, provenance, read_run_info, refuse_other_settings, write_run_info)
from codec.data.face_track import FACE_MESH_POINTS, MESH_POINTS, FaceLandmarker  # noqa: E402
from codec.data.landmarks import similarity  # noqa: E402
from codec.decoder import DecoderOptions  # noqa: E402
from codec.metrics import AKD_POINTS, LPIPS_VARIANT  # noqa: E402
from protocol import DEFAULT_FRAMES, portable, portable_label  # noqa: E402

TASKS = ("reconstruction", "cross_identity", "free_view")
METHODS = ("fv2v", "fomm", "hold")
# The redirections `fvc decode` offers, as its --yaw/--pitch/--frontalize set them.
VIEWS = {"yaw-30": DecoderOptions(yaw=-30), "yaw-15": DecoderOptions(yaw=-15), "yaw+15": DecoderOptions(yaw=15),
         "yaw+30": DecoderOptions(yaw=30), "pitch-15": DecoderOptions(pitch=-15), "pitch+15": DecoderOptions(pitch=15),
         "frontalize": DecoderOptions(frontalize=True)}
NO_VIEW = "-"
# 10 s as rd_curve's protocol, 9 scored frames a clip (8 on the 8 s clips): the 30-minute CPU budget allows
# about that many, and spread over 10 s they see more head motion than 100 frames would.
DEFAULT_STRIDE = 25

KEY_COLUMNS = ["dataset", "source", "driving", "method", "view"]
POSE_COLUMNS = ["pose_error", "yaw_error", "pitch_error", "roll_error"]
METRIC_COLUMNS = {"reconstruction": ["l1", "psnr", "ssim", "lpips", "akd", "akd_lips", "face_found"],
                  "cross_identity": ["expression_akd", *POSE_COLUMNS, "identity_lpips", "face_found"],
                  "free_view": [*POSE_COLUMNS, "turn_error", "face_found", "background_lpips"]}
TAIL_COLUMNS = ["frames", "width", "height", "seconds", *PROVENANCE_COLUMNS, "device", "weights"]
# Face-mesh points that expressions hardly move: the nose bridge and tip, and the eye corners.
RIGID_POINTS = [168, 6, 197, 195, 5, 4, 1, 33, 133, 362, 263]
# The face mesh stops at the hairline and the jaw; hair, ears and neck turn with the head, so the region
# free view may change reaches this share of the face's size beyond the mesh.
FACE_MARGIN = 0.25
EXPRESSION_METHOD = (f"mean distance over the {len(AKD_POINTS)} AKD points between the output's face and the source's "
                     "moved by the driving face's change since its first frame, each face aligned by the similarity "
                     "(shift, rotation, scale) that maps its nose and eye-corner points onto the source's")
POSE_METHOD = ("MediaPipe yaw/pitch/roll; cross_identity asks for the source's pose plus the driving pose's change "
               "since its first frame, free_view for the un-redirected output's pose plus the offset (frontalize: 0)")
BACKGROUND_METHOD = (f"LPIPS of the un-redirected output and the redirected one with the face region pasted from the "
                     f"first, over the share of the frame outside it; face region = within {FACE_MARGIN:g} x the face "
                     "size (larger landmark-box side) of the convex hulls of both outputs' face meshes")
# What a resumed run must share with the rows already written.
RUN_KEYS = ("size", "fps", "frames", "stride", "lpips", "akd", "expression", "pose", "background", "free_view",
            "device")
FIGURE_CASES = 3  # cases per dataset in each task's figure
TILE = 160  # pixels per figure frame


def columns(task: str) -> list[str]:
    """The CSV columns of a task's rows."""
    return [*KEY_COLUMNS, *METRIC_COLUMNS[task], *TAIL_COLUMNS]


def task_table(out: Path, task: str) -> Table:
    """A task's CSV in the results folder; rows from before the provenance columns read as unknown there."""
    return Table(out / f"{task}.csv", columns(task), dict.fromkeys(PROVENANCE_COLUMNS, UNKNOWN))


def task_methods(task: str, methods: list[str]) -> list[str]:
    """The methods a task compares: free view needs fv2v's head rotation, which FOMM and hold lack."""
    return [m for m in methods if m == "fv2v"] if task == "free_view" else methods


def task_views(task: str) -> list[str]:
    return list(VIEWS) if task == "free_view" else [NO_VIEW]


def figure_columns(task: str) -> list[str]:
    return ["source", "driving", "fv2v", *(VIEWS if task == "free_view" else ["fomm"])]


@dataclass
class ReenactConfig:
    """One benchmark run; the settings its rows depend on are recorded in run.json."""

    out: Path
    data: Path | None = None  # folder of clips, one identity each (bench512); None = not measured
    cache: Path | None = None  # prepared training cache: its val split; None = not measured
    tasks: tuple[str, ...] = TASKS
    methods: tuple[str, ...] = METHODS
    clips: list[str] | None = None  # of --data, as rd_curve's --clips
    pairs: int | None = None  # cross-identity pairs per dataset; None = one per clip
    frames: int | None = DEFAULT_FRAMES  # None = all frames of each clip
    stride: int = DEFAULT_STRIDE
    size: int = 512  # of --data; cache clips keep the cache's size
    fps: float = 25.0
    device: str = "cpu"
    model: str | None = None  # fv2v weights (codec.cli --model syntax); None = the shipped ones
    fomm_model: str | None = None
    akd: bool = True  # False = --no-akd: no MediaPipe
    landmarker: Path | None = None
    relief: bool = True  # free view turns the face by its relief (False: through the keypoints alone, as before)
    force: bool = False


@dataclass(frozen=True)
class Clip:
    """One clip of a dataset, whose face it shows and the side it is read at."""

    dataset: str
    name: str
    identity: str
    path: Path
    size: int


class Faces(NamedTuple):
    """MediaPipe's face of each frame: mesh points (N, 478, 2) in pixels, pose (N, 3) yaw, pitch, roll
    degrees, and the points' depth (N, 478) in pixels, NaN where no face was found."""

    points: np.ndarray
    poses: np.ndarray
    depth: np.ndarray | None = None

    def found(self) -> np.ndarray:
        return ~np.isnan(self.poses).any(axis=1)


class Result(NamedTuple):
    """One row's measurements and the output frames the task's figure may show, by figure column."""

    method: str
    view: str
    scores: dict[str, float]
    seconds: float
    tiles: dict[str, np.ndarray]


def observe(landmarker: FaceLandmarker | None, frames: np.ndarray) -> Faces | None:
    """The faces of RGB frames, None without a landmarker (--no-akd)."""
    if landmarker is None:
        return None
    points, poses = np.full((len(frames), MESH_POINTS, 2), np.nan), np.full((len(frames), 3), np.nan)
    depth = np.full((len(frames), MESH_POINTS), np.nan)
    for i, frame in enumerate(frames):
        hit = landmarker.detect(frame)
        if hit is not None:
            points[i], poses[i] = hit.points * (frame.shape[1], frame.shape[0]), hit.pose
            depth[i] = hit.depth * frame.shape[1]
    return Faces(points, poses, depth)


def mean(values) -> float:
    values = np.asarray(values, np.float64)
    return float(values.mean()) if values.size else math.nan


def share(hit: np.ndarray, counted: np.ndarray) -> float:
    """The share of the counted frames that are hit, NaN when none counts."""
    return float(hit.sum() / counted.sum()) if counted.any() else math.nan


def find_dataset_clips(config: ReenactConfig) -> list[Clip]:
    """The clips of --data (each its own identity, as bench512's are) and of the cache's val split."""
    clips = []
    if config.data is not None:
        clips += [Clip(config.data.name, p.stem, p.stem, p, config.size) for p in find_clips(config.data, config.clips)]
    if config.cache is not None:
        from codec.data.cache import CacheIndex

        index = CacheIndex.load(config.cache)
        clips += [Clip(f"{config.cache.name}-val", c.id, c.identity, config.cache / c.video, index.size)
                  for c in index.select("val")]
    return clips


def units(task: str, clips: list[Clip], pairs: int | None) -> list[tuple[Clip, Clip]]:
    """(source, driving) clips of a task: each clip with itself, or (cross_identity) with the next clip by name
    of another identity in its dataset, the first `pairs` of those per dataset."""
    if task != "cross_identity":
        return [(clip, clip) for clip in clips]
    found = []
    for dataset in dict.fromkeys(c.dataset for c in clips):
        group = [c for c in clips if c.dataset == dataset]
        candidates = ((source, next((d for d in group[i + 1:] + group[:i] if d.identity != source.identity), None))
                      for i, source in enumerate(group))
        found += [(source, driving) for source, driving in candidates if driving is not None][:pairs]
    return found


class ClipStore:
    """Each clip's frame 0 and scored frames (and their faces), read once for every task."""

    def __init__(self, config: ReenactConfig, landmarker: FaceLandmarker | None):
        self.config = config
        self.landmarker = landmarker
        self._frames: dict[Clip, np.ndarray] = {}
        self._faces: dict[Clip, Faces | None] = {}
        self.seconds = 0.0

    def frames(self, clip: Clip) -> np.ndarray:
        """(1 + scored, S, S, 3) uint8: frame 0 (the source), then frames stride, 2·stride, ... up to --frames."""
        if clip not in self._frames:
            start = time.perf_counter()
            frames = load_clip(clip.path, dataclasses.replace(self.config, size=clip.size))
            if len(frames) <= self.config.stride:
                raise BenchmarkError(f"{clip.name}: {len(frames)} frames, none scored at --stride {self.config.stride}")
            self._frames[clip] = frames[::self.config.stride].copy()  # frees the frames not scored
            self.seconds += time.perf_counter() - start
        return self._frames[clip]

    def faces(self, clip: Clip) -> Faces | None:
        """The faces of `frames(clip)`."""
        if clip not in self._faces:
            frames = self.frames(clip)
            start = time.perf_counter()
            self._faces[clip] = observe(self.landmarker, frames)
            self.seconds += time.perf_counter() - start
        return self._faces[clip]


def hold(source: np.ndarray, driving: np.ndarray) -> np.ndarray:
    """The floor: the source frame shown for every driving frame."""
    return np.repeat(source[None], len(driving), axis=0)


def render(model, source: np.ndarray, driving: np.ndarray, views: dict[str, DecoderOptions] | None = None,
           relief: bool = True) -> dict[str, np.ndarray]:
    """Each driving frame rendered from `source` with the motion estimated on it (absolute, unquantised, as
    the decoder renders decoded motion), once per view (default: un-redirected only; `relief` as the model's)."""
    import torch

    from codec.decoder import frame_to_tensor, free_view_rotation, model_device, tensor_to_frame

    views = views or {NO_VIEW: DecoderOptions()}
    height, width = source.shape[:2]
    device = model_device(model)
    out: dict[str, list[np.ndarray]] = {name: [] for name in views}
    with torch.inference_mode():
        state = model.analyze_keyframe(frame_to_tensor(source, device))
        for frame in driving:
            motion = model.estimate_motion(frame_to_tensor(frame, device))
            for name, options in views.items():
                view = free_view_rotation(motion, options) if options.free_view else None
                shown = (model.render(state, motion) if view is None
                         else model.render(state, motion, view=view, relief=relief))
                out[name].append(tensor_to_frame(shown, width, height))
    return {name: np.stack(frames) for name, frames in out.items()}


def animate(model, source: np.ndarray, first: np.ndarray, driving: np.ndarray) -> np.ndarray:
    """`source` moved as the driving frames moved since `first` (relative motion, as `fvc animate`)."""
    from codec.decoder import Animator

    animator = Animator(model, source, source.shape[0])
    animator.push(first)  # the frame the driving motion is taken relative to
    return np.stack([animator.push(frame) for frame in driving])


def score_reconstruction(metrics: Metrics, driving: np.ndarray, outputs: np.ndarray,
                         driving_points: np.ndarray | None) -> dict[str, float]:
    """L1 ([0, 1] scale), PSNR, SSIM, LPIPS and AKD of outputs against the driving frames they reconstruct."""
    # The scored frames lie --stride apart: rd_curve's frame-to-frame measures do not apply.
    scores = metrics.frame_scores(driving, outputs, driving_points)
    return {"l1": float(np.abs(outputs.astype(np.float32) - driving).mean() / 255), **scores}


def align(points: np.ndarray, onto: np.ndarray) -> np.ndarray:
    """`points` (478, 2) moved by the similarity that best maps their RIGID_POINTS onto those of `onto`."""
    scale, rotation, shift = similarity(points[RIGID_POINTS], onto[RIGID_POINTS])
    return points @ (scale * rotation).T + shift


def expression_distance(output: np.ndarray, source: np.ndarray, driving: np.ndarray, first: np.ndarray) -> float:
    """AKD between the output's face and the source's moved by the driving face's change since `first`, all
    aligned on the source's rigid points: the expression transferred, without shift, roll and scale."""
    target = source + align(driving, source) - align(first, source)
    return float(np.linalg.norm(align(output, source) - target, axis=-1)[list(AKD_POINTS)].mean())


def pose_scores(errors: np.ndarray) -> dict[str, float]:
    """Mean absolute yaw, pitch and roll errors (M, 3) in degrees, and their mean."""
    per_angle = [mean(errors[:, i]) for i in range(3)]
    return {"pose_error": mean(per_angle), **dict(zip(POSE_COLUMNS[1:], per_angle))}


def transfer_scores(source: Faces, driving: Faces, output: Faces) -> dict[str, float]:
    """Expression AKD, pose error and face_found of relative motion. Frame 0 of `source` and `driving` is their
    clip's first frame, then come the scored frames, one output each."""
    # Relative motion moves the source as the driving face moved: the driving frame's own expression and pose
    # would charge each output with the difference between two people's faces and first poses.
    counted = driving.found()[1:] & source.found()[0] & driving.found()[0]
    hit = counted & output.found()
    asked = source.poses[0] + driving.poses[1:] - driving.poses[0]
    expression = [expression_distance(output.points[i], source.points[0], driving.points[1 + i], driving.points[0])
                  for i in np.flatnonzero(hit)]
    return {"expression_akd": mean(expression), **pose_scores(np.abs(output.poses - asked)[hit]),
            "face_found": share(hit, counted)}


def face_region(shape: tuple[int, int], *faces: np.ndarray) -> np.ndarray:
    """(H, W) mask of the pixels within FACE_MARGIN face sizes of the convex hull of each face's mesh points
    (faces not found are skipped); the face size is the larger landmark-box side of the first face."""
    from codec.metrics import face_region as region

    return region(shape, *faces, margin=FACE_MARGIN)


def turn_error(base: np.ndarray, depth: np.ndarray, base_pose: np.ndarray, asked: np.ndarray,
               view: np.ndarray) -> float:
    """Mean distance (px) between the face-mesh points (478, 2) of a redirected `view` and those of the `base`
    output (478, 2, with `depth` (478,)) turned rigidly from `base_pose` to the `asked` one (degrees), both
    centred: where a head turn puts each part of the face. A warp that shifts the face without turning it,
    or smears the nose across the cheek, misses."""
    import torch

    from codec.models.keypoint_transform import rotation_matrix

    face = slice(0, FACE_MESH_POINTS)  # the irises follow the eyes' gaze, not the head
    poses = torch.tensor(np.stack([asked, base_pose]), dtype=torch.float64)
    turn = (lambda r: r[0] @ r[1].T)(rotation_matrix(poses).numpy())
    points = np.concatenate([base, depth[:, None]], 1)[face]
    turned = ((points - points.mean(0)) @ turn.T)[:, :2]
    seen = view[face] - view[face].mean(0)
    return float(np.linalg.norm(seen - (turned - turned.mean(0)), axis=-1).mean())


def view_scores(base: np.ndarray, base_faces: Faces, view: np.ndarray, view_faces: Faces, options: DecoderOptions,
                device: str) -> dict[str, float]:
    """Pose error against the pose asked for, turn error, face_found and background LPIPS of one redirection of
    `base`."""
    from codec.metrics import lpips_distance

    counted = base_faces.found()  # without a face in the un-redirected output, nothing is asked for
    hit = counted & view_faces.found()
    offset = np.array([options.yaw, options.pitch, options.roll])
    asked = (0 if options.frontalize else base_faces.poses) + offset
    asked = np.broadcast_to(asked, base_faces.poses.shape)
    turns = [turn_error(base_faces.points[i], base_faces.depth[i], base_faces.poses[i], asked[i], view_faces.points[i])
             for i in np.flatnonzero(hit)]
    frames = np.flatnonzero(counted)
    background = math.nan
    if len(frames):
        regions = np.stack([face_region(base.shape[1:3], base_faces.points[i], view_faces.points[i]) for i in frames])
        pasted = np.where(regions[..., None], base[frames], view[frames])
        # LPIPS is a spatial mean: over the share outside the face region, it is that region's mean.
        outside = 1 - regions.mean(axis=(1, 2))
        background = mean((lpips_distance(base[frames], pasted, device) / np.maximum(outside, 1e-9))[outside > 0])
    return {**pose_scores(np.abs(view_faces.poses - asked)[hit]), "turn_error": mean(turns),
            "face_found": share(hit, counted), "background_lpips": background}


@dataclass
class Context:
    """What the units of every task share."""

    config: ReenactConfig
    models: dict[str, Any]  # method -> MotionModel; hold has none
    store: ClipStore
    metrics: Metrics

    @property
    def landmarker(self) -> FaceLandmarker | None:
        return self.metrics.landmarker


def reconstruction_unit(ctx: Context, source: Clip, driving: Clip, wanted: list[tuple[str, str]]) -> Iterator[Result]:
    frames, faces = ctx.store.frames(source), ctx.store.faces(source)
    for method, view in wanted:
        start = time.perf_counter()
        outputs = (hold(frames[0], frames[1:]) if method == "hold"
                   else render(ctx.models[method], frames[0], frames[1:])[NO_VIEW])
        scores = score_reconstruction(ctx.metrics, frames[1:], outputs, None if faces is None else faces.points[1:])
        yield Result(method, view, scores, time.perf_counter() - start, {method: outputs})


def cross_identity_unit(ctx: Context, source: Clip, driving: Clip, wanted: list[tuple[str, str]]) -> Iterator[Result]:
    from codec.metrics import lpips_distance

    still, frames = ctx.store.frames(source)[0], ctx.store.frames(driving)
    for method, view in wanted:
        start = time.perf_counter()
        outputs = (hold(still, frames[1:]) if method == "hold"
                   else animate(ctx.models[method], still, frames[0], frames[1:]))
        identity = lpips_distance(outputs, np.broadcast_to(still, outputs.shape), ctx.config.device)
        scores = {**dict.fromkeys(METRIC_COLUMNS["cross_identity"], math.nan), "identity_lpips": mean(identity)}
        if ctx.landmarker is not None:
            scores.update(transfer_scores(ctx.store.faces(source), ctx.store.faces(driving),
                                          observe(ctx.landmarker, outputs)))
        yield Result(method, view, scores, time.perf_counter() - start, {method: outputs})


def free_view_unit(ctx: Context, source: Clip, driving: Clip, wanted: list[tuple[str, str]]) -> Iterator[Result]:
    frames = ctx.store.frames(source)
    start = time.perf_counter()
    rendered = render(ctx.models["fv2v"], frames[0], frames[1:],
                      {NO_VIEW: DecoderOptions(), **{view: VIEWS[view] for _, view in wanted}}, ctx.config.relief)
    base, base_faces = rendered[NO_VIEW], observe(ctx.landmarker, rendered[NO_VIEW])
    shared = (time.perf_counter() - start) / len(wanted)  # one analysis and motion estimate for every view
    for method, view in wanted:
        start = time.perf_counter()
        scores = view_scores(base, base_faces, rendered[view], observe(ctx.landmarker, rendered[view]), VIEWS[view],
                             ctx.config.device)
        yield Result(method, view, scores, shared + time.perf_counter() - start, {"fv2v": base, view: rendered[view]})


UNIT_RUNNERS = {"reconstruction": reconstruction_unit, "cross_identity": cross_identity_unit,
                "free_view": free_view_unit}


def check_resume(config: ReenactConfig, run_info: dict) -> None:
    """Refuse to add rows measured otherwise, with other weights or on another machine, to a run (unless --force)."""
    old = read_run_info(config.out)
    if old is None:
        return
    changed = changed_keys(old, run_info, RUN_KEYS)
    # A run may add a dataset; another folder under the same clip names would mix other frames in.
    changed += changed_keys(old, run_info, [k for k in ("data", "cache") if k in old and k in run_info])
    before = old.get("methods", {})
    changed += [f"{m} weights" for m, info in run_info["methods"].items()
                if m in before and weights_id(before[m]["weights"]) != weights_id(info["weights"])]
    refuse_other_settings(config.out, changed)


def tile_path(out: Path, task: str, dataset: str, source: str, driving: str, column: str) -> Path:
    return out / "tiles" / task / f"{dataset}__{source}__{driving}__{column}.png"


def save_tiles(out: Path, task: str, source: Clip, driving: Clip, frames: dict[str, np.ndarray]) -> None:
    """Each figure column's frame (one image) of a case, TILE pixels square."""
    from PIL import Image

    for column, frame in frames.items():
        path = tile_path(out, task, source.dataset, source.name, driving.name, column)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame).resize((TILE, TILE), Image.Resampling.LANCZOS).save(path)


def run_task(task: str, ctx: Context, clips: list[Clip], weights: dict[str, str], device: str, commit: str) -> int:
    """Add the rows of `task` missing from its CSV; returns how many were added."""
    table = task_table(ctx.config.out, task)
    path = table.path
    done = {tuple(row[k] for k in KEY_COLUMNS) for row in table.read()}
    jobs = []
    for source, driving in units(task, clips, ctx.config.pairs):
        wanted = [(m, v) for m in task_methods(task, ctx.config.methods) for v in task_views(task)
                  if (source.dataset, source.name, driving.name, m, v) not in done]
        jobs.append((source, driving, wanted))
    print(f"{task}: {len(done)} rows already in {path}, {sum(len(w) for *_, w in jobs)} to run", file=sys.stderr)
    cases, written = Counter(), 0
    for source, driving, wanted in jobs:
        figure = cases[source.dataset] < FIGURE_CASES  # the first units of each dataset are the figure's cases
        cases[source.dataset] += 1
        if not wanted:
            continue
        frames = ctx.store.frames(driving)
        middle = len(frames) // 2  # of the scored frames, 1.. in `frames`
        if figure:
            save_tiles(ctx.config.out, task, source, driving,
                       {"source": ctx.store.frames(source)[0], "driving": frames[middle]})
        n, height, width, _ = frames[1:].shape
        for result in UNIT_RUNNERS[task](ctx, source, driving, wanted):
            table.append({
                "dataset": source.dataset, "source": source.name, "driving": driving.name, "method": result.method,
                "view": result.view, **{k: f"{v:.6g}" for k, v in result.scores.items()}, "frames": n,
                "width": width, "height": height, "seconds": f"{result.seconds:.4g}", **provenance(commit),
                "device": device, "weights": weights[result.method]})
            written += 1
            if figure:
                save_tiles(ctx.config.out, task, source, driving,
                           {c: f[middle - 1] for c, f in result.tiles.items() if c in figure_columns(task)})
    return written


def load_models(config: ReenactConfig) -> dict[str, Any]:
    """codec.cli's LoadedModel of each method but hold."""
    from codec.model_loading import load_model_spec

    specs = {"fv2v": config.model, "fomm": config.fomm_model}
    return {m: load_model_spec(specs[m], config.device, m) for m in config.methods if m in specs}


def run(config: ReenactConfig) -> Path:
    """Fill every task's CSV with the rows not already there, then write the reports."""
    clips = find_dataset_clips(config)
    if config.cache is None:
        print("no --cache: the held-out identities of the training cache are not measured", file=sys.stderr)
    if not clips:
        raise BenchmarkError("no clips: pass --data and/or --cache")
    landmarker, akd_method = open_landmarker(config)
    with landmarker or contextlib.nullcontext():
        return fill(config, clips, Metrics(config.device, 1, landmarker), akd_method)


def fill(config: ReenactConfig, clips: list[Clip], metrics: Metrics, akd_method: str) -> Path:
    """`run` once the clips are found and the landmarker (if any) is open."""
    loaded = load_models(config)
    weights = {"hold": "-", **{m: portable_label(model.label) for m, model in loaded.items()}}
    device = device_description(config.device)
    commit = code_version()
    run_info = {"size": config.size, "fps": config.fps, "frames": config.frames, "stride": config.stride,
                "lpips": LPIPS_VARIANT, "akd": akd_method, "expression": EXPRESSION_METHOD, "pose": POSE_METHOD,
                "background": BACKGROUND_METHOD, "free_view": "face relief" if config.relief else "keypoints only",
                "device": device,
                **{k: portable(v) for k, v in (("data", config.data), ("cache", config.cache)) if v is not None},
                "clips": [f"{c.dataset}/{c.name}" for c in clips],
                "methods": {m: {"weights": weights[m]} for m in config.methods},
                "commands": [command_line()]}
    if config.force and config.out.exists():
        clear(config.out, ["run.json", *(f"{t}.csv" for t in TASKS)])
    config.out.mkdir(parents=True, exist_ok=True)
    check_resume(config, run_info)
    write_run_info(config.out, run_info)
    for method, model in loaded.items():
        if model.untrained:
            print(f"!!! {method} runs with {model.label}: its numbers say nothing about the model !!!", file=sys.stderr)

    tasks = list(config.tasks)
    if "free_view" in tasks and (metrics.landmarker is None or "fv2v" not in config.methods):
        tasks.remove("free_view")
        print("free_view skipped: it measures pose and faces with MediaPipe (not with --no-akd) on fv2v's output",
              file=sys.stderr)
    ctx = Context(config, {m: model.model for m, model in loaded.items()}, ClipStore(config, metrics.landmarker),
                  metrics)
    timing = {}
    for task in tasks:
        start, reading = time.perf_counter(), ctx.store.seconds
        written = run_task(task, ctx, clips, weights, device, commit)
        timing[task] = (written, time.perf_counter() - start - (ctx.store.seconds - reading))
    write_reports(config.out)
    for task, (written, seconds) in timing.items():
        each = f" ({seconds / written:.1f} s a row)" if written else ""
        print(f"time: {task} {written} rows in {seconds:.0f} s{each}", file=sys.stderr)
    print(f"time: reading clips and finding their faces {ctx.store.seconds:.0f} s", file=sys.stderr)
    return config.out


# Reports: everything below reads only the results folder, so a resumed run reports all its rows.
DESCRIPTIONS = {
    "reconstruction": "Source = the clip's first frame, driving = the clip itself (absolute motion, no bitstream). "
                      "L1 on [0, 1], PSNR dB, SSIM, LPIPS, AKD and AKD of the lips in pixels against the driving "
                      "frame; face_found = share of the scored frames with a face whose output shows one.",
    "cross_identity": "Source = one clip's first frame, driving = another identity's clip (relative motion, as "
                      "`fvc animate`). expression_akd px and pose errors in degrees against the source moved as the "
                      "driving face moved; identity_lpips = LPIPS to the source frame (lower = identity kept).",
    "free_view": "fv2v's reconstruction re-posed (yaw/pitch offsets, or frontalize = rotation 0): pose errors in "
                 "degrees against the un-redirected output's pose plus the offset; turn_error = mean distance (px) "
                 "of the 468 face-mesh points from the un-redirected output's mesh (MediaPipe's depth) turned "
                 "rigidly to that pose, both centred; face_found, and background_lpips = LPIPS to the "
                 "un-redirected output outside the face region.",
}


def summarize(rows: pd.DataFrame, task: str) -> pd.DataFrame:
    """Per dataset, method (and view): means over the units (units = how many), frames scored in all."""
    keys = ["dataset", "method", *(["view"] if task == "free_view" else [])]
    grouped = rows.groupby(keys, sort=False)
    summary = grouped[METRIC_COLUMNS[task]].mean()
    summary.insert(0, "units", grouped.size())
    summary["frames"] = grouped["frames"].sum()
    summary["seconds_per_unit"] = grouped["seconds"].mean()
    summary["weights"] = grouped["weights"].agg(lambda labels: " + ".join(labels.unique()))
    return summary.reset_index()


def markdown_table(frame: pd.DataFrame) -> str:
    cells = frame.map(lambda v: f"{v:.4g}" if isinstance(v, float) else str(v))
    return "\n".join(["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns),
                      *("| " + " | ".join(row) + " |" for row in cells.itertuples(index=False))])


def plot_cases(out: Path, task: str, rows: pd.DataFrame) -> None:
    """<task>.png: source, driving and output frames (the middle scored one) of the first cases of each dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = [case for case in rows.drop_duplicates(["dataset", "source", "driving"]).groupby("dataset", sort=False)
             .head(FIGURE_CASES).itertuples()
             if tile_path(out, task, case.dataset, case.source, case.driving, "source").exists()]
    if not cases:
        return
    names = figure_columns(task)
    fig, axes = plt.subplots(len(cases), len(names), figsize=(1.5 * len(names), 1.6 * len(cases)), squeeze=False)
    for row, case in enumerate(cases):
        for ax, name in zip(axes[row], names):
            ax.set_xticks([])
            ax.set_yticks([])
            tile = tile_path(out, task, case.dataset, case.source, case.driving, name)
            if tile.exists():
                ax.imshow(plt.imread(tile))
            else:
                ax.text(0.5, 0.5, "not run", transform=ax.transAxes, ha="center", va="center", fontsize=7)
            if row == 0:
                ax.set_title(name, fontsize=8)
        # Clip names are paths flattened with "__": their last part is the readable one.
        short = [n.split("__")[-1][:18] for n in (case.source, case.driving)]
        driven = f"\n← {short[1]}" if task == "cross_identity" else ""
        axes[row][0].set_ylabel(f"{case.dataset}\n{short[0]}{driven}", fontsize=6)
    fig.suptitle(f"{out.name}: {task}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / f"{task}.png", dpi=120)
    plt.close(fig)


def write_reports(out: Path) -> None:
    """<task>_summary.csv and <task>.png of every task with rows, and summary.md with all tables; prints them."""
    info = json.loads((out / "run.json").read_text())
    lines = [f"# Reenactment benchmark: {out.name}", "",
             f"First {info['frames'] or 'all'} frames of each clip at {info['fps']:g} fps; frame 0 is the source, "
             f"frames {info['stride']}, {2 * info['stride']}, ... are scored. LPIPS {info['lpips']}; landmarks and "
             f"pose: {info['akd']}; {info['device']}.",
             "", *(f"- {m}: {v['weights']}" for m, v in info["methods"].items()), ""]
    for task in TASKS:
        path = out / f"{task}.csv"
        if not path.exists():
            continue
        rows = pd.read_csv(path)
        summary = summarize(rows, task)
        summary.to_csv(out / f"{task}_summary.csv", index=False, float_format="%.6g", na_rep="nan")
        table = markdown_table(summary.drop(columns="weights"))
        lines += [f"## {task}", "", DESCRIPTIONS[task], "", table, "", f"![{task}]({task}.png)", ""]
        plot_cases(out, task, rows)
        print(f"\n{task}\n{table}")
    (out / "summary.md").write_text("\n".join(lines))


def parse_args(argv: list[str] | None = None) -> ReenactConfig:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA if DEFAULT_DATA.is_dir() else None,
                   help=f"folder of clips, one identity each (default {DEFAULT_DATA} when it exists)")
    p.add_argument("--cache", type=Path, default=None,
                   help="prepared training cache (fvc prepare) whose val split, the held-out identities, is also "
                        "measured, at the cache's size (default: none, that part is skipped)")
    p.add_argument("--run-name", default="dev", help="results go to benchmarks/results/<run-name> (default dev)")
    p.add_argument("--out", type=Path, default=None, help="results folder (overrides --run-name)")
    p.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated, of {', '.join(TASKS)} (default all)")
    p.add_argument("--methods", default=",".join(METHODS),
                   help=f"comma-separated, of {', '.join(METHODS)} (default all)")
    p.add_argument("--clips", nargs="+", default=None, help="of --data: N (the first N by name) or clip names (stems)")
    p.add_argument("--pairs", type=int, default=None,
                   help="cross-identity pairs per dataset (default one per clip: each driven by the next of "
                        "another identity)")
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                   help=f"first N frames of each clip after resampling, 0 = all (default {DEFAULT_FRAMES}: 10 s)")
    p.add_argument("--stride", type=int, default=DEFAULT_STRIDE,
                   help=f"score frames n, 2n, ... (frame 0 is the source; default {DEFAULT_STRIDE})")
    p.add_argument("--size", type=int, default=512, help="frame side of the --data clips (default 512)")
    p.add_argument("--fps", type=float, default=25.0, help="frame rate every clip is resampled to")
    p.add_argument("--device", default="cpu", help="torch device for the models and LPIPS")
    p.add_argument("--model", default=None,
                   help="fv2v weights: PATH or untrained-CONFIG (the development model); default the shipped ones")
    p.add_argument("--fomm-model", default=None, help="FOMM weights, same syntax as --model")
    p.add_argument("--no-akd", action="store_true",
                   help="run without MediaPipe: AKD, head pose and face_found read nan, free_view is skipped")
    p.add_argument("--landmarker", type=Path, default=None, metavar="PATH",
                   help="MediaPipe face_landmarker.task (default: $FVC_FACE_LANDMARKER, else "
                        "models/face_landmarker.task in the shared folder beside the checkout)")
    p.add_argument("--flat-free-view", action="store_true",
                   help="free view through the keypoints' spline alone, as before the face relief (a comparison)")
    p.add_argument("--force", action="store_true", help="discard the rows of an earlier run in the same folder")
    a = p.parse_args(argv)
    lists = {}
    for name, known in (("tasks", TASKS), ("methods", METHODS)):
        chosen = [x.strip() for x in getattr(a, name).split(",") if x.strip()]
        unknown = [x for x in chosen if x not in known]
        if unknown or not chosen:
            p.error(f"unknown {name} {', '.join(unknown) or '(none given)'}; choose from {', '.join(known)}")
        lists[name] = tuple(x for x in known if x in chosen)
    for name in ("frames", "stride", "size", "pairs"):
        value = getattr(a, name)
        if value is not None and value < (0 if name == "frames" else 1):
            p.error(f"--{name} must be at least {0 if name == 'frames' else 1}, got {value}")
    return ReenactConfig(out=a.out or RESULTS / a.run_name, data=a.data, cache=a.cache, tasks=lists["tasks"],
                         methods=lists["methods"], clips=a.clips, pairs=a.pairs, frames=a.frames or None,
                         stride=a.stride, size=a.size, fps=a.fps, device=a.device, model=a.model,
                         fomm_model=a.fomm_model, akd=not a.no_akd, landmarker=a.landmarker, relief=not a.flat_free_view,
                         force=a.force)


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    return run_reporting("reenactment", lambda: run(config), (BenchmarkError,))


if __name__ == "__main__":
    sys.exit(main())
