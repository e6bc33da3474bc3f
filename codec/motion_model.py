"""The MotionModel protocol, the registry of model kinds, weights I/O and model ids.

A registered model class provides: `kind` (MotionKind), `config_class` (with `from_dict(dict)` and
`named(name)`, configs with `.name` and `to_dict()`), `__init__(config)` and `.config`, plus the
protocol below. Checkpoints are `{"kind": str, "config": dict, "state_dict": dict}` and load with
`torch.load(weights_only=True)`; a JSON card lies beside each (`<name>.json`).
"""
from __future__ import annotations

import hashlib
import importlib
import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from bitstream.constants import MotionKind
from bitstream.header import MODEL_ID_BYTES, weights_model_id

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


class ModelError(Exception):
    """A model that cannot be built or loaded (missing file, not a checkpoint, unknown kind or config)."""


@runtime_checkable
class MotionModel(Protocol):
    """What the encoder and decoder use; images are float (B,3,S,S) in [0,1] at any S."""

    kind: MotionKind
    num_keypoints: int
    analysis_size: int
    output_size: int

    def analyze_keyframe(self, image: Tensor) -> Any: ...

    def estimate_motion(self, image: Tensor) -> dict[str, Tensor]: ...

    def render(self, state: Any, motion: dict[str, Tensor]) -> Tensor: ...

    def landmark_points(self, image: Tensor) -> Tensor | None: ...

    def motion_landmarks(self, motion: dict[str, Tensor]) -> Tensor | None: ...


@dataclass(frozen=True)
class RegistryEntry:
    """Where a kind's model class lives (imported on first use), its development config and shipped configs."""

    target: str  # "package.module:ClassName"
    default_config: str  # the untrained development model's preset
    # Presets whose weights may ship as codec/weights/<kind>-<config>.pt, best first: the first one
    # present is the default model; GPU-trained `small` outranks the CPU-trained stopgap.
    shipped_configs: tuple[str, ...] = ("small", "cpu128")


REGISTRY: dict[str, RegistryEntry] = {
    # The image renderer (warp128) outranks the feature renderers: it shows the keyframe's own pixels.
    "fv2v": RegistryEntry("codec.models.fv2v:FaceVid2Vid", "small", ("warp128", "small", "cpu128")),
    "fomm": RegistryEntry("codec.models.fomm.model:FOMM", "small", ("warp128", "small", "cpu128")),
}


def kind_name(kind: MotionKind | str | int) -> str:
    """Registry key ("fv2v", "fomm") of a MotionKind, its value or its name."""
    if isinstance(kind, str):
        name = kind.lower()
    else:
        try:
            name = MotionKind(kind).name.lower()
        except ValueError:
            raise ModelError(f"unknown motion kind {kind!r}") from None
    if name not in REGISTRY:
        raise ModelError(f"unknown motion kind {kind!r}; known: {', '.join(REGISTRY)}")
    return name


def model_class(kind: MotionKind | str | int) -> type:
    """The registered model class of a kind (imports its module)."""
    name = kind_name(kind)
    module_name, _, attr = REGISTRY[name].target.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ModelError(f"model kind {name!r} is not available ({REGISTRY[name].target}: {exc})") from None


def build_model(kind: MotionKind | str | int, config: Any) -> torch.nn.Module:
    """An untrained model of `kind` from a config object, a plain config dict or a preset name."""
    cls = model_class(kind)
    try:
        if isinstance(config, str):
            config = cls.config_class.named(config)
        elif isinstance(config, dict):
            config = cls.config_class.from_dict(config)
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    return cls(config)


def build_untrained(kind: MotionKind | str | int, config_name: str, seed: int = 0) -> torch.nn.Module:
    """A randomly initialised model in eval mode, reproducible from (kind, config_name, seed)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(kind, config_name)
    return model.eval()


def untrained_model_id(kind: MotionKind | str | int, config_name: str, seed: int = 0) -> bytes:
    """Id of `build_untrained(kind, config_name, seed)`: SHA-256 of the recipe string, first 16 bytes.

    It names the recipe rather than hashing the weights, because random initial weights may differ
    between torch versions while the recipe does not.
    """
    recipe = f"fvc-untrained:{kind_name(kind)}:{config_name}:{int(seed)}"
    return hashlib.sha256(recipe.encode()).digest()[:MODEL_ID_BYTES]


def model_id(path: str | os.PathLike) -> bytes:
    """First 16 bytes of the SHA-256 of a weights file (written into stream headers)."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist")
    return weights_model_id(path)


def card_path(path: str | os.PathLike) -> Path:
    """The JSON card beside a weights file."""
    return Path(path).with_suffix(".json")


def save_weights(model: torch.nn.Module, path: str | os.PathLike, card: dict, force: bool = False) -> bytes:
    """Write the checkpoint and its JSON card (card + kind, config, model_id); returns the model id.

    Both files are written to temporaries and renamed, so a failure leaves no partial output.
    """
    path, card_file = Path(path), card_path(path)
    if not force and (path.exists() or card_file.exists()):
        raise ModelError(f"{path} or its card already exists (pass force=True to overwrite)")
    name = kind_name(model.kind)
    checkpoint = {
        "kind": name,
        "config": model.config.to_dict(),
        # Contiguous: the file, hence the model id, must not depend on the layout a loaded model runs in.
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_weights = _temp_beside(path)
    tmp_card = _temp_beside(card_file)
    try:
        torch.save(checkpoint, tmp_weights)
        full_card = {**card, "kind": name, "config": model.config.name,
                     "model_id": model_id(tmp_weights).hex()}
        tmp_card.write_text(json.dumps(full_card, indent=2, sort_keys=True, default=str) + "\n")
        os.replace(tmp_weights, path)
        os.replace(tmp_card, card_file)
    finally:
        tmp_weights.unlink(missing_ok=True)
        tmp_card.unlink(missing_ok=True)
    return bytes.fromhex(full_card["model_id"])


def _temp_beside(path: Path) -> Path:
    # A hidden name in the same folder, so os.replace is atomic; default permissions, unlike mkstemp's 0600.
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def read_checkpoint(path: Path, map_location: str | torch.device = "cpu", error: type[Exception] = ModelError,
                    what: str = "a model checkpoint") -> Any:
    """`torch.load` of a weights or training checkpoint file, tensors only (weights_only: no code runs); a foreign
    or damaged file raises `error` "PATH is not WHAT (the exception's type)"."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or corrupt files
        raise error(f"{path} is not {what} ({type(exc).__name__})") from None


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild a model from a checkpoint written by `save_weights`, in eval mode on `device`."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist")
    checkpoint = read_checkpoint(path, device)
    if not isinstance(checkpoint, dict) or not {"kind", "config", "state_dict"} <= checkpoint.keys():
        raise ModelError(f"{path} is not an fvc checkpoint (needs kind, config and state_dict)")
    model = build_model(checkpoint["kind"], checkpoint["config"])
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"{path}: weights do not match the {checkpoint['kind']} config ({first})") from None
    return for_inference(model, device)


def for_inference(model: torch.nn.Module, device: torch.device | str = "cpu") -> torch.nn.Module:
    """`model` on `device` in eval mode with its 4D weights channels-last: oneDNN's convolutions then skip a
    layout reorder each call (at 512² on one CPU thread: H+Δ and the landmark detector 40 → 24 ms a frame)."""
    return channels_last(model.to(device).eval())


def channels_last(module: torch.nn.Module) -> torch.nn.Module:
    """`module` with its 4D weights in channels-last memory (in place; training runs ~9 % faster on one CPU thread)."""
    # Module.to(memory_format=...) refuses the 3D networks' 5D weights: convert the 4D ones alone.
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        if tensor.dim() == 4:
            tensor.data = tensor.data.contiguous(memory_format=torch.channels_last)
    return module


def shipped_weights(kind: MotionKind | str | int) -> list[Path]:
    """The weights files `codec/weights/<kind>-<config>.pt` of a kind that ship, best first."""
    name = kind_name(kind)
    paths = (WEIGHTS_DIR / f"{name}-{config}.pt" for config in REGISTRY[name].shipped_configs)
    return [path for path in paths if path.is_file()]


def default_weights(kind: MotionKind | str | int) -> Path | None:
    """The best shipped weights of a kind (what `--model KIND` means), or None if none ship."""
    shipped = shipped_weights(kind)
    return shipped[0] if shipped else None
