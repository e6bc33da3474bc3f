"""`fvc demo`: codec/demo.py's astronaut clip through `fvc encode` and `fvc decode`, scored against x264."""
from __future__ import annotations

from typing import Callable

from ..model_loading import UNTRAINED_PREFIX, load_model_spec
from .common import EXIT_OK


def run(args, fvc: Callable[[list[str]], int], coding: list[str]) -> int:
    """`fvc demo ARGS`; `fvc` runs one fvc command line (codec.cli.main, passed in: no import cycle) and `coding` are
    the encode options for the coding settings in `args` (codec.cli.coding_argv)."""
    from .. import motion_model as mm
    from ..demo import run_demo

    spec = args.model
    if spec is None:
        shipped = mm.default_weights("fv2v")
        spec = str(shipped) if shipped else UNTRAINED_PREFIX + mm.REGISTRY["fv2v"].default_config
    run_demo(args, spec, load_model_spec(spec, args.device).untrained, fvc, coding)
    return EXIT_OK

