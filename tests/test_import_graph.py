"""The packages' modules import each other without cycles, counting imports inside functions."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("codec", "bitstream")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Project modules `path` imports anywhere in its body (lazy imports make cycles as well)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    # Imports only a type checker runs cannot make a runtime cycle.
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and is_type_checking(block.test)
                   for stmt in block.body for n in ast.walk(stmt)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(max(0, node.level - 1)):
                base = base.rpartition(".")[0]
            stem = f"{base}.{node.module}" if node.level and node.module else (node.module or base)
            # `from . import x` names a module x when one exists, else an attribute of the package.
            targets = [f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in known else stem for alias in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def import_graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    known = {module_name(p) for p in files}
    return {module_name(p): imported_modules(p, known) for p in files}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_lazy_and_relative_imports():
    graph = import_graph()
    assert "codec.demo" in graph["codec.commands.demo"]  # imported inside run
    assert "codec.commands.demo" in graph["codec.cli"]  # a relative `from .commands import demo`
    assert "bitstream" in graph["codec.encoder"]
    assert "bitstream.header" not in graph["bitstream.symbols"]  # under TYPE_CHECKING only


@pytest.mark.parametrize("edges, cycle", [({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
                                          ({"a": {"b"}, "b": set()}, None)])
def test_find_cycle_finds_a_planted_cycle(edges, cycle):
    assert find_cycle(edges) == cycle


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_the_benchmarks_import_nothing_from_the_cli():
    """Models load through codec.model_loading; a benchmark that runs `fvc` runs it as a user does (roundtrip.py:
    `python -m codec` in a process of its own), never through codec.cli's internals."""
    found = []
    for path in sorted((ROOT / "benchmarks").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            if any(n == "codec.cli" or n.startswith(("codec.cli.", "codec.commands")) for n in names):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, "benchmarks import the CLI: " + ", ".join(found)
