"""Errors the codec raises for bad input or a refused operation; the CLI prints them as one line."""
from __future__ import annotations

import sys


class CodecError(Exception):
    """Base class of the codec's user-facing errors (bad input, refused output, mismatched model)."""


class InputError(CodecError):
    """An input file or argument the codec cannot use."""


class OutputError(CodecError):
    """An output that exists (without force) or cannot be written."""


class ModelMismatchError(CodecError):
    """A stream coded with a motion model other than the one available to decode it."""


class RateControlError(CodecError):
    """A --kbps target that no setting of the rate-control knobs can reach."""


class TruncatedDecode(CodecError):
    """A damaged stream: the frames before the damage were decoded and written, the rest were not."""

    def __init__(self, message: str, frames_written: int):
        super().__init__(message)
        self.frames_written = frames_written


# Exceptions of other modules that mean "bad input", not "bug". They are looked up lazily so
# that `fvc info` and `fvc --help` never import torch or PyAV just to classify an error.
_FOREIGN_USER_ERRORS = (
    ("bitstream.errors", "BitstreamError"),
    ("bitstream.errors", "SymbolError"),
    ("codec.h264", "H264Error"),
    ("codec.video", "VideoError"),
    ("codec.motion_model", "ModelError"),
)


def is_user_error(exc: BaseException) -> bool:
    """True when `exc` reports a problem with the user's input rather than a bug in fvc."""
    if isinstance(exc, (CodecError, OSError)):
        return True
    for module_name, class_name in _FOREIGN_USER_ERRORS:
        module = sys.modules.get(module_name)
        cls = getattr(module, class_name, None) if module is not None else None
        if cls is not None and isinstance(exc, cls):
            return True
    return False


def one_line(exc: BaseException) -> str:
    """The error as a single line (file-system errors name the file)."""
    if isinstance(exc, OSError) and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())

