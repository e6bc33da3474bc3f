"""Loading a motion model by the name a user or a benchmark gives it, and the model a stream needs.

A name (`--model`) is a weights path, a kind ("fv2v", "fomm": its shipped weights) or an untrained recipe
("untrained-CONFIG", "fomm:untrained-CONFIG"). The CLI, the benchmarks and anything else that loads models
by name come here; torch is imported only when a model is loaded.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError, ModelMismatchError

UNTRAINED_PREFIX = "untrained-"


@dataclass(frozen=True)
class LoadedModel:
    """A motion model ready to run, the id streams carry for it and a label for messages."""

    model: Any
    model_id: bytes
    label: str
    untrained: bool


def torch_device(name: str):
    """The torch device `name` names; InputError for an unknown one or CUDA on a machine without it."""
    import torch

    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine")
    try:
        return torch.device(name)
    except RuntimeError:
        raise InputError(f"--device {name!r} is not a torch device (use cpu or cuda)") from None


def load_model_spec(spec: str | None, device: str, kind: str = "fv2v") -> LoadedModel:
    """The model a --model value names: a weights path, a kind's shipped weights, or an untrained recipe."""
    from . import motion_model as mm

    device_ = torch_device(device)
    spec = spec or kind
    recipe_kind, _, recipe = spec.partition(":") if ":" in spec else (kind, "", spec)
    if recipe.startswith(UNTRAINED_PREFIX) and recipe_kind in mm.REGISTRY:
        config = recipe[len(UNTRAINED_PREFIX):]
        model = mm.for_inference(mm.build_untrained(recipe_kind, config, 0), device_)
        return LoadedModel(model, mm.untrained_model_id(recipe_kind, config, 0),
                           f"UNTRAINED {recipe_kind} '{config}' (random weights, seed 0)", True)
    if spec in mm.REGISTRY:
        path = mm.default_weights(spec)
        if path is None:
            config = mm.REGISTRY[spec].default_config
            suggestion = f"{'' if spec == 'fv2v' else spec + ':'}{UNTRAINED_PREFIX}{config}"
            raise InputError(f"no trained {spec} weights ship with this build yet; pass --model PATH, or "
                             f"--model {suggestion} for the randomly initialised development model "
                             f"(its output is not meaningful)")
    else:
        path = Path(spec)
    ident = mm.model_id(path)
    return LoadedModel(mm.load_model(path, device_), ident, f"{path} ({ident.hex()})", False)


def model_for_stream(header, spec: str | None, device: str) -> LoadedModel:
    """The model to decode a stream with; refuses one whose id differs from the stream's."""
    from . import motion_model as mm

    kind = mm.kind_name(header.kind)
    if spec is None:
        shipped = mm.shipped_weights(kind)
        # Any shipped weights of the kind may have coded the stream, not only the best ones.
        spec = next((str(p) for p in shipped if mm.model_id(p) == header.model_id), None)
        if not shipped:
            config = mm.REGISTRY[kind].default_config
            # Streams from `--model untrained-small` decode without repeating the flag.
            if header.model_id != mm.untrained_model_id(kind, config, 0):
                raise ModelMismatchError(f"the stream was coded with model {header.model_id.hex()}, and no "
                                         f"trained {kind} weights ship with this build; pass --model PATH (or "
                                         f"the --model untrained-CONFIG it was coded with)")
            spec = f"{kind}:{UNTRAINED_PREFIX}{config}"
    loaded = load_model_spec(spec, device, kind)
    if loaded.model_id != header.model_id:
        raise ModelMismatchError(f"the stream was coded with model {header.model_id.hex()} but the available "
                                 f"weights are {loaded.model_id.hex()} ({loaded.label}); pass --model PATH "
                                 f"with the weights it was coded with")
    return loaded
