"""What the benchmark scripts share beyond rd_curve: protocol numbers and how results write paths (torch-free)."""
from __future__ import annotations

import os
from pathlib import Path

# The first 10 s of every clip at 25 fps: rd_curve's bench512 protocol, which the other scripts follow.
DEFAULT_FRAMES = 250

REPO = Path(__file__).resolve().parents[1]


def portable(path: str | os.PathLike) -> str:
    """A path as results write it: relative to the repository (`../shared/...` for the shared folder beside it),
    never the absolute path of the machine that ran the benchmark."""
    return os.path.relpath(Path(path).resolve(), REPO)


def portable_label(label: str) -> str:
    """A weights label "PATH (MODEL ID)" (codec.model_loading) with PATH relative to the repository; an untrained
    model's label as it is."""
    path, sep, rest = label.partition(" (")
    return portable(path) + sep + rest if sep and os.path.isabs(path) else label


def portable_args(values: dict) -> dict[str, str]:
    """Parsed arguments as run.json records them: strings, paths relative to the repository."""
    return {k: portable(v) if isinstance(v, Path) else str(v) for k, v in values.items()}


def portable_argv(argv: list[str]) -> list[str]:
    """A command line as results record it: absolute paths in it (also after `--opt=`) relative to the repository."""
    def one(arg: str) -> str:
        option, eq, value = arg.partition("=")
        if eq and option.startswith("-") and os.path.isabs(value):
            return f"{option}={portable(value)}"
        return portable(arg) if os.path.isabs(arg) else arg
    return [one(arg) for arg in argv]

