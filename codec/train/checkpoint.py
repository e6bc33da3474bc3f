"""Training checkpoints and splitting any file into parts small enough to leave a lent GPU machine.

A split file `NAME` becomes `NAME.part000`, `NAME.part001`, … plus `NAME.parts.json` (sizes and
SHA-256 of every part and of the whole); `join_parts` checks them all before writing `NAME`.

    python -m codec.train.checkpoint split runs/a/checkpoint.pt [--part-mib 15]
    python -m codec.train.checkpoint join runs/a/checkpoint.pt [--force]
    python -m codec.train.checkpoint compact runs/a/checkpoint.pt --out training/a/checkpoint.pt

`compact` keeps what the next session needs to go on, at a quarter of the size: the model and EMA
weights in half precision, counters, RNG states and settings; no optimiser moments (a resumed run
rebuilds them, as `--init-from` does) and no discriminator optimiser.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

import torch

from codec.errors import InputError, OutputError, one_line
from codec.motion_model import read_checkpoint

# Files come back from the device machine only up to 16 MiB; one MiB of margin.
DEFAULT_PART_BYTES = 15 * 1024 * 1024


class CheckpointError(InputError):
    """A checkpoint or a set of parts that is missing, damaged or incomplete."""


def _temp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def save_checkpoint(state: dict, path: Path) -> None:
    """torch.save through a temporary file, so an interrupted save keeps the previous checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp(path)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint, joining it from its parts first when only the parts are present."""
    path = Path(path)
    if not path.is_file() and manifest_path(path).is_file():
        join_parts(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    return read_checkpoint(path, map_location, CheckpointError, "a readable checkpoint")


def compact_state(state: dict) -> dict:
    """A checkpoint's state without optimiser moments, its float tensors in half precision."""
    def half(tensors: dict) -> dict:
        return {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}

    small = {k: v for k, v in state.items() if k not in ("opt_g", "opt_d")}
    small["model"] = half(state["model"])
    small["ema"] = {**state["ema"], "model": half(state["ema"]["model"])}
    if state.get("discriminator") is not None:
        small["discriminator"] = half(state["discriminator"])
    small["compact"] = True
    return small


def manifest_path(path: Path) -> Path:
    """The parts manifest of a file."""
    return Path(path).with_name(Path(path).name + ".parts.json")


def _part_path(path: Path, i: int) -> Path:
    return path.with_name(f"{path.name}.part{i:03d}")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split_file(path: Path, part_bytes: int = DEFAULT_PART_BYTES) -> list[Path]:
    """Write `path` as parts of at most `part_bytes` beside it, plus the manifest; returns the parts."""
    path = Path(path)
    if part_bytes < 1:
        raise ValueError(f"part size must be positive, got {part_bytes}")
    if not path.is_file():
        raise CheckpointError(f"cannot split {path}: no such file")
    for old in path.parent.glob(f"{path.name}.part[0-9][0-9][0-9]"):
        old.unlink()
    parts, entries, whole = [], [], hashlib.sha256()
    with path.open("rb") as f:
        for i, chunk in enumerate(iter(lambda: f.read(part_bytes), b"")):
            part = _part_path(path, i)
            part.write_bytes(chunk)
            whole.update(chunk)
            parts.append(part)
            entries.append({"name": part.name, "bytes": len(chunk), "sha256": _sha256(chunk)})
    manifest = {"file": path.name, "bytes": path.stat().st_size, "sha256": whole.hexdigest(), "parts": entries}
    tmp = _temp(manifest_path(path))
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, manifest_path(path))
    return parts


def join_parts(path: Path, force: bool = False) -> Path:
    """Rebuild `path` from its parts and manifest, verifying every checksum before writing it."""
    path = Path(path)
    if path.exists() and not force:
        raise OutputError(f"{path} exists (pass force to overwrite)")
    try:
        manifest = json.loads(manifest_path(path).read_text())
        entries = manifest["parts"]
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"no usable parts manifest for {path} ({one_line(exc)})") from None
    tmp = _temp(path)
    whole = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for entry in entries:
                part = path.with_name(entry["name"])
                if not part.is_file():
                    raise CheckpointError(f"missing part {part}")
                data = part.read_bytes()
                if len(data) != entry["bytes"] or _sha256(data) != entry["sha256"]:
                    raise CheckpointError(f"part {part} is damaged (size or SHA-256 differs from the manifest)")
                whole.update(data)
                out.write(data)
        if whole.hexdigest() != manifest["sha256"]:
            raise CheckpointError(f"joined {path} does not match the manifest's SHA-256")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def main(argv: list[str] | None = None) -> int:
    """`split FILE`, `join FILE` or `compact FILE --out OUT`."""
    parser = argparse.ArgumentParser(prog="python -m codec.train.checkpoint", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("split", "join", "compact"))
    parser.add_argument("file", type=Path)
    parser.add_argument("--out", type=Path, help="where compact writes (never FILE itself)")
    parser.add_argument("--part-mib", type=float, default=DEFAULT_PART_BYTES / 2**20,
                        help="largest part in MiB (split; default 15)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing file (join, compact)")
    args = parser.parse_args(argv)
    try:
        if args.action == "split":
            parts = split_file(args.file, int(args.part_mib * 2**20))
            print(f"{args.file}: {len(parts)} parts + {manifest_path(args.file).name}")
        elif args.action == "compact":
            if args.out is None or args.out.resolve() == args.file.resolve():
                raise InputError("compact needs --out, a path other than the checkpoint it reads")
            if args.out.exists() and not args.force:
                raise OutputError(f"{args.out} exists (pass --force to overwrite)")
            save_checkpoint(compact_state(load_checkpoint(args.file)), args.out)
            print(f"{args.out}: {args.out.stat().st_size / 2**20:.1f} MiB (from {args.file.stat().st_size / 2**20:.1f})")
        else:
            print(f"joined {join_parts(args.file, args.force)}")
    except (InputError, OutputError, OSError, ValueError) as exc:
        print(f"error: {one_line(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
