"""Which clips to prepare: `clips.tsv` rows (bench512 always left out) or every video in a folder.

The validation split is chosen per identity from a hash of its name, so it never changes between
runs or machines and no person appears in both splits.
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

from codec.errors import InputError

CATALOG_NAME = "clips.tsv"
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
# Evaluation clips: never trained or tuned on (../shared/data/MANIFEST.md beside the checkout).
EXCLUDED_SETS = ("bench512",)
# Sets whose rows are wide shots or off-centre faces: usable only with a face crop.
FACE_CROP_SETS = ("train-extra",)
DEFAULT_VAL_FRACTION = 0.1


@dataclass(frozen=True)
class ClipSource:
    """A clip to prepare: its file, cache id, identity label and catalog set."""

    path: Path
    id: str
    identity: str
    set: str

    @property
    def needs_face_crop(self) -> bool:
        """True for clips that a centre crop would frame badly."""
        return self.set in FACE_CROP_SETS


def split_of(identity: str, val_fraction: float = DEFAULT_VAL_FRACTION) -> str:
    """'val' for a fixed ~`val_fraction` of identities (by SHA-256 of the name), else 'train'."""
    digest = int.from_bytes(hashlib.sha256(identity.encode()).digest()[:8], "big")
    return "val" if digest / 2**64 < val_fraction else "train"


def find_catalog(clips_dir: Path) -> Path | None:
    """clips.tsv in the clips folder or its parent (the layout of ../shared/data), if any."""
    for folder in (clips_dir, clips_dir.parent):
        if (folder / CATALOG_NAME).is_file():
            return folder / CATALOG_NAME
    return None


def list_clips(clips_dir: Path) -> list[ClipSource]:
    """The clips of `clips_dir` to prepare, sorted by id; bench512 rows are always left out."""
    clips_dir = Path(clips_dir)
    if not clips_dir.is_dir():
        raise InputError(f"clips folder not found: {clips_dir}")
    catalog = find_catalog(clips_dir)
    clips = _from_catalog(catalog, clips_dir) if catalog else _from_folder(clips_dir)
    ids = [c.id for c in clips]
    if len(set(ids)) != len(ids):
        raise InputError(f"two clips in {clips_dir} share a file name stem; cache ids must be unique")
    return sorted(clips, key=lambda c: c.id)


def _from_folder(clips_dir: Path) -> list[ClipSource]:
    return [ClipSource(p, p.stem, p.stem, "train") for p in clips_dir.iterdir()
            if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES]


def _from_catalog(catalog: Path, clips_dir: Path) -> list[ClipSource]:
    root, wanted = catalog.parent.resolve(), clips_dir.resolve()
    clips = []
    with catalog.open(newline="") as f:
        reader = csv.DictReader(f, delimiter="\t")
        missing = {"set", "file", "identity"} - set(reader.fieldnames or ())
        if missing:
            raise InputError(f"{catalog} lacks the column(s) {', '.join(sorted(missing))}")
        for row in reader:
            path = (root / row["file"]).resolve()
            if path.parent != wanted or row["set"] in EXCLUDED_SETS:
                continue
            clips.append(ClipSource(path, path.stem, row["identity"] or path.stem, row["set"]))
    return clips
