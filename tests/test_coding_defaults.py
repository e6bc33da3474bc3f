"""One home for each coding default: codec.coding_defaults sets them, everything else imports them."""
import ast
from pathlib import Path

import pytest

from codec.coding_defaults import (DEFAULT_IDR_PERIOD, DEFAULT_KEYFRAME_QP, DEFAULT_KP_THRESHOLD, DEFAULT_MAX_GOP,
                                   DEFAULT_PREDICT_KEYFRAMES, DEFAULT_REFS)

REPO = Path(__file__).resolve().parents[1]
DEFAULTS = {"keyframe_qp": DEFAULT_KEYFRAME_QP, "max_gop": DEFAULT_MAX_GOP, "kp_threshold": DEFAULT_KP_THRESHOLD,
            "refs": DEFAULT_REFS, "predict_keyframes": DEFAULT_PREDICT_KEYFRAMES, "idr_period": DEFAULT_IDR_PERIOD}
# Command-line options that set them (and the benchmarks' clip length, benchmarks/protocol.py): a script may
# choose another value on purpose (search_ceiling's QP 24), but not write the default again.
OPTIONS = {"--keyframe-qp": DEFAULT_KEYFRAME_QP, "--qp": DEFAULT_KEYFRAME_QP, "--max-gop": DEFAULT_MAX_GOP,
           "--kp-threshold": DEFAULT_KP_THRESHOLD, "--refs": DEFAULT_REFS,
           "--predict-keyframes": DEFAULT_PREDICT_KEYFRAMES, "--idr-period": DEFAULT_IDR_PERIOD, "--frames": 250}


def test_the_documented_values():
    assert DEFAULTS == {"keyframe_qp": 30, "max_gop": 250, "kp_threshold": -1, "refs": 1, "predict_keyframes": True,
                        "idr_period": 250}


def test_the_encoder_config_and_fvc_encode_take_them_from_coding_defaults():
    from codec.cli import build_parser
    from codec.encoder import EncoderConfig

    config = EncoderConfig(width=2, height=2, fps=25)
    assert {name: getattr(config, name) for name in DEFAULTS} == DEFAULTS
    for command in ("encode", "demo"):
        args = build_parser().parse_args([command, "in.mp4", "out.fvc"] if command == "encode" else [command])
        assert {name: getattr(args, name) for name in DEFAULTS} == DEFAULTS, command


def test_keyframe_refs_takes_them_from_coding_defaults(monkeypatch):
    import sys

    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import keyframe_refs
    import protocol

    seen = {}

    def stop(self, args=None, namespace=None):
        seen.update(vars(original(self, args, namespace)))
        raise SystemExit(0)

    import argparse
    original = argparse.ArgumentParser.parse_args
    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", stop)
    with pytest.raises(SystemExit):
        keyframe_refs.main(["--out", "x"])
    assert seen["qp"] == [DEFAULT_KEYFRAME_QP] and seen["idr_period"] == DEFAULT_IDR_PERIOD
    assert seen["frames"] == protocol.DEFAULT_FRAMES == 250
    assert "keyframe_refs" in sys.modules


def _sources() -> list[Path]:
    return sorted(p for folder in ("codec", "benchmarks") for p in (REPO / folder).rglob("*.py"))


def _literal(node: ast.AST | None):
    """The value of a literal default (a number, -1, True), else None."""
    try:
        return ast.literal_eval(node) if isinstance(node, (ast.Constant, ast.UnaryOp)) else None
    except ValueError:
        return None


def test_no_other_module_writes_a_coding_default_or_the_benchmark_length_as_a_number():
    """An option's or a config field's default is a name imported from its home, never the number again."""
    literal = []
    for path in _sources():
        if path.name in ("coding_defaults.py", "protocol.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
                names = {a.value for a in node.args if isinstance(a, ast.Constant)} & set(OPTIONS)
                default = _literal(next((k.value for k in node.keywords if k.arg == "default"), None))
                if any(default is not None and default == OPTIONS[n] for n in names):
                    literal.append(f"{path.relative_to(REPO)}:{node.lineno} {sorted(names)}")
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                    and node.target.id in DEFAULTS and _literal(node.value) is not None:
                literal.append(f"{path.relative_to(REPO)}:{node.lineno} {node.target.id}")
            elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "DEFAULT_FRAMES"
                                                      for t in node.targets):
                literal.append(f"{path.relative_to(REPO)}:{node.lineno} DEFAULT_FRAMES")
    assert not literal, "set in codec/coding_defaults.py (or benchmarks/protocol.py) and import it: " + \
        ", ".join(literal)
