"""`fvc prepare CLIPS_DIR CACHE`: face-cropped 25 fps square frames and head-pose labels per clip.

Each clip gets one stable square face box (MediaPipe's face landmarker when installed, else a
centre crop with a warning), is resampled to 25 fps, stored as `size`² H.264 and labelled per frame
with yaw/pitch/roll and the `codec.data.landmarks` face points (NaN without a face). An interrupted
run continues where it stopped; finished clips are reused. The layout is described in `codec.data.cache`.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np

from codec.data.cache import (CLIPS_DIR, DEFAULT_CRF, CacheIndex, ClipRecord, write_json_atomic, write_labels)
from codec.data.catalog import DEFAULT_VAL_FRACTION, ClipSource, list_clips, split_of
from codec.data.landmarks import LANDMARK_INDICES, normalised_landmarks
from codec.data.face_track import (CROP_SCALE, FaceLandmarker, FaceTrackError, SquareBox, centre_box, find_face,
                                   mediapipe_available, stable_square_box)
from codec.errors import InputError, OutputError, is_user_error, one_line
from codec.video import VideoError, VideoInfo, VideoWriter, frame_to_rgb, probe, read_frames

log = logging.getLogger("fvc.prepare")

SETTINGS_NAME = "settings.json"
LANDMARKER_ENV = "FVC_FACE_LANDMARKER"
# The shared models folder beside the checkout (see ../shared/models/README.md).
DEFAULT_LANDMARKER = Path(__file__).resolve().parents[3] / "shared" / "models" / "face_landmarker.task"


class PrepareError(InputError):
    """A cache that cannot be (re)built as asked."""


@dataclass(frozen=True)
class PrepareConfig:
    """What the cache content depends on (kept in settings.json so a resumed run cannot mix settings)."""

    size: int = 256
    fps: int = 25
    crf: int = DEFAULT_CRF
    crop_scale: float = CROP_SCALE
    val_fraction: float = DEFAULT_VAL_FRACTION
    face_crop: bool = True
    # Frames looked at to place the face box (fixed for the whole clip): at most detect_fps per
    # second and detect_frames in all.
    detect_fps: float = 2.0
    detect_frames: int = 24


def landmarker_path(explicit: Path | None) -> Path:
    """--landmarker, else $FVC_FACE_LANDMARKER, else ../shared/models/face_landmarker.task."""
    if explicit is not None:
        return explicit
    return Path(os.environ.get(LANDMARKER_ENV, DEFAULT_LANDMARKER))


def open_landmarker(config: PrepareConfig, path: Path) -> FaceLandmarker | None:
    """The face landmarker, or None (with a warning) when face crops are off or unavailable."""
    if not config.face_crop:
        return None
    if not mediapipe_available():
        log.warning("mediapipe is not installed: centre crops, no pose labels, train-extra clips skipped "
                    "(pip install 'fvc[prepare]')")
        return None
    try:
        return FaceLandmarker(path)
    except FaceTrackError as exc:
        log.warning("%s: centre crops, no pose labels, train-extra clips skipped", exc)
        return None


def face_boxes(path: Path, landmarker: FaceLandmarker, duration: float,
               config: PrepareConfig) -> list[tuple[float, float, float, float]]:
    """Landmark boxes, in displayed source pixels, of up to `detect_frames` evenly spaced frames."""
    every_s = max(1 / config.detect_fps, duration / config.detect_frames)
    boxes, next_time = [], 0.0
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None else next_time
                if t + 1e-6 < next_time:
                    continue
                next_time = t + every_s
                # codec.video reads only square crops; the search needs the whole (upright) picture.
                rgb = np.rot90(frame_to_rgb(frame), round((frame.rotation or 0) / 90) % 4)
                found = find_face(landmarker, np.ascontiguousarray(rgb))
                if found is not None:
                    boxes.append(found.box)
    except av.FFmpegError as exc:
        raise VideoError(f"cannot decode {path}: {exc}") from None
    return boxes


def clip_face_box(path: Path, info: VideoInfo, landmarker: FaceLandmarker,
                  config: PrepareConfig = PrepareConfig()) -> SquareBox | None:
    """The clip's one stable square face crop in source pixels (None when no face is found)."""
    duration = (info.frames or 0) / float(info.fps)
    return stable_square_box(face_boxes(path, landmarker, duration, config), info.width, info.height,
                             config.crop_scale)


def choose_box(clip: ClipSource, info: VideoInfo, landmarker: FaceLandmarker | None,
               config: PrepareConfig) -> tuple[SquareBox, str] | None:
    """(box, 'face' or 'centre') for a clip, or None when it must be skipped."""
    width, height = info.width, info.height
    if landmarker is not None:
        box = clip_face_box(clip.path, info, landmarker, config)
        if box is not None:
            return box, "face"
        if clip.needs_face_crop:
            log.warning("%s: no face found; skipped (%s clips need a face crop)", clip.id, clip.set)
            return None
        log.warning("%s: no face found; centre crop", clip.id)
    elif clip.needs_face_crop:
        log.info("%s: skipped (%s needs a face crop)", clip.id, clip.set)
        return None
    return centre_box(width, height), "centre"


def prepare_clip(clip: ClipSource, cache_dir: Path, landmarker: FaceLandmarker | None,
                 config: PrepareConfig) -> ClipRecord | None:
    """Crop, resample, encode and label one clip; returns its record (None when skipped)."""
    info = probe(clip.path)
    chosen = choose_box(clip, info, landmarker, config)
    if chosen is None:
        return None
    box, crop = chosen
    clips_dir = cache_dir / CLIPS_DIR
    video_path = clips_dir / f"{clip.id}.mp4"
    poses, landmarks = [], []
    missing = np.full((len(LANDMARK_INDICES), 2), np.nan, np.float32)
    with VideoWriter(video_path, fps=config.fps, crf=config.crf, force=True) as writer:
        for frame in read_frames(clip.path, size=config.size, crop=tuple(box.as_list()), fps=config.fps):
            found = landmarker.detect(frame) if landmarker is not None else None
            poses.append(found.pose if found is not None else np.full(3, np.nan, np.float32))
            landmarks.append(missing if found is None else
                             normalised_landmarks(found.points, frame.shape[1], frame.shape[0]))
            writer.write(frame)
    record = ClipRecord(id=clip.id, source=str(clip.path), identity=clip.identity, set=clip.set,
                        split=split_of(clip.identity, config.val_fraction), frames=len(poses), fps=float(config.fps),
                        size=config.size, source_size=(info.width, info.height), box=tuple(box.as_list()), crop=crop)
    write_labels(cache_dir / record.poses, np.stack(poses))
    write_labels(cache_dir / record.landmarks, np.stack(landmarks))
    write_json_atomic(cache_dir / record.record, asdict(record))
    return record


def _finished_record(cache_dir: Path, clip: ClipSource) -> ClipRecord | None:
    path = cache_dir / CLIPS_DIR / f"{clip.id}.json"
    if not path.is_file():
        return None
    record = ClipRecord.from_dict(json.loads(path.read_text()))
    done = all((cache_dir / name).is_file() for name in (record.video, record.poses, record.landmarks))
    return record if done else None


def _check_settings(cache_dir: Path, config: PrepareConfig, force: bool) -> None:
    settings = cache_dir / SETTINGS_NAME
    wanted = asdict(config)
    if settings.is_file():
        if (cache_dir / "index.json").is_file() and not force:
            raise OutputError(f"{cache_dir} is a finished cache: pass --force to rebuild it")
        saved = json.loads(settings.read_text())
        if saved != wanted and not force:
            raise OutputError(f"{cache_dir} was started with other settings {saved}: pass --force to rebuild it")
    elif cache_dir.exists() and any(cache_dir.iterdir()) and not force:
        raise OutputError(f"{cache_dir} is not empty and not an fvc cache: pass --force to write into it")
    (cache_dir / CLIPS_DIR).mkdir(parents=True, exist_ok=True)
    if force:
        for old in (cache_dir / CLIPS_DIR).glob("*.json"):
            old.unlink()
    write_json_atomic(settings, wanted)


def prepare(clips_dir: Path, cache_dir: Path, config: PrepareConfig, landmarker: Path | None = None,
            force: bool = False, limit: int | None = None) -> CacheIndex:
    """Build (or finish) the cache for every clip of `clips_dir`; returns the written index."""
    clips = list_clips(clips_dir)[:limit]
    if not clips:
        raise PrepareError(f"no clips to prepare in {clips_dir} (bench512 clips are never used for training)")
    cache_dir = Path(cache_dir)
    _check_settings(cache_dir, config, force)
    started = time.monotonic()
    records = []
    tracker = open_landmarker(config, landmarker_path(landmarker))
    try:
        for n, clip in enumerate(clips, 1):
            record = _finished_record(cache_dir, clip)
            if record is None:
                t0 = time.monotonic()
                try:
                    record = prepare_clip(clip, cache_dir, tracker, config)
                except VideoError as exc:
                    log.warning("%s: skipped (%s)", clip.id, one_line(exc))
                    continue
                if record is not None:
                    labelled = int(np.isfinite(np.load(cache_dir / record.poses)[:, 0]).sum())
                    log.info("[%d/%d] %s: %d frames, %s crop %s, %d labelled, %.1f s", n, len(clips), clip.id,
                             record.frames, record.crop, record.box, labelled, time.monotonic() - t0)
            if record is not None:
                records.append(record)
    finally:
        if tracker is not None:
            tracker.close()
    if not records:
        raise PrepareError(f"every clip of {clips_dir} was skipped; nothing to cache")
    index = CacheIndex(size=config.size, fps=float(config.fps), crf=config.crf, clips=records)
    index.save(cache_dir)
    log.info("%s", summary(index, cache_dir, time.monotonic() - started))
    return index


def summary(index: CacheIndex, cache_dir: Path, seconds: float) -> str:
    """One line: clips, identities and frames per split, cache size and time."""
    parts = []
    for split in ("train", "val"):
        clips = index.select(split)
        parts.append(f"{split}: {len(clips)} clips, {len({c.identity for c in clips})} identities, "
                     f"{sum(c.frames for c in clips)} frames")
    size = sum(p.stat().st_size for p in Path(cache_dir).rglob("*") if p.is_file())
    crops = sum(c.crop == "face" for c in index.clips)
    return (f"cache {cache_dir}: {'; '.join(parts)}; {crops}/{len(index.clips)} face crops; "
            f"{size / 1e6:.1f} MB; {seconds:.0f} s")


def _even_side(text: str) -> int:
    value = int(text)
    if value < 16 or value % 2:
        raise argparse.ArgumentTypeError(f"frame side must be an even number >= 16, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of `fvc prepare`."""
    p = argparse.ArgumentParser(prog="fvc prepare", description=__doc__.splitlines()[0])
    p.add_argument("clips_dir", type=Path, help="folder of clips (clips.tsv beside or above it is used if present)")
    p.add_argument("cache", type=Path, help="output cache folder")
    p.add_argument("--size", type=_even_side, default=256, help="frame side: 256, or 512 for 512² models (default 256)")
    p.add_argument("--crf", type=int, default=DEFAULT_CRF, help=f"x264 CRF of the cached clips (default {DEFAULT_CRF})")
    p.add_argument("--centre-crop", action="store_true", help="skip face detection: centre crops, no pose labels")
    p.add_argument("--landmarker", type=Path, metavar="PATH",
                   help=f"MediaPipe face_landmarker.task (default: ${LANDMARKER_ENV}, else "
                        "models/face_landmarker.task in the shared folder beside the checkout)")
    p.add_argument("--limit", type=int, help="prepare only the first N clips (by id)")
    p.add_argument("--force", action="store_true", help="rebuild a finished cache or write into a foreign folder")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of `fvc prepare` / `python -m codec.data.prepare`."""
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s", stream=sys.stderr)
    config = PrepareConfig(size=args.size, crf=args.crf, face_crop=not args.centre_crop)
    try:
        prepare(args.clips_dir, args.cache, config, args.landmarker, args.force, args.limit)
    except Exception as exc:
        if not is_user_error(exc):
            raise
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
