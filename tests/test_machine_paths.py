"""No committed file holds an absolute path of the machine that made it (issue 31), except a doc's command.

Results, cards and run.json files name paths relative to the repository (`codec/weights/...`, `../shared/...`)
with the model id beside a weights path, and placeholders for folders outside the checkout (`CACHE`, `RUNS/`).
A command shown in a doc or a usage docstring may keep the folder it was typed with.
"""
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# An absolute path in one of the folders machines keep checkouts, data, caches and scratch files in.
MACHINE_PATH = re.compile(rb"(?<![A-Za-z0-9_./~-])/(?:work|tmp|home|root|Users|mnt|scratch)/[A-Za-z0-9_.+-]")
# A line that shows a command: optional prompt, backticks, env settings and nice, then the program.
COMMAND = re.compile(r"^\s*[`$>]*\s*(?:[A-Z_]+=\S+\s+)*(?:nice\s+(?:-n\s*\d+\s+)?)?(?:\S*/)?"
                     r"(?:python3?|fvc|cp|ls|du|git|torchrun)\b")


def machine_paths() -> dict[str, list[str]]:
    """Tracked file -> its lines (or, in a binary file, the matches) with a machine path that no command shows."""
    names = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    found = {}
    for name in names.decode().split("\0"):
        path = REPO / name
        if not name or not path.is_file():
            continue
        data = path.read_bytes()
        if not MACHINE_PATH.search(data):
            continue
        if b"\0" in data[:8192]:  # binary: every match counts
            found[name] = [m.group().decode(errors="replace") for m in MACHINE_PATH.finditer(data)]
            continue
        lines = [line for line in data.decode(errors="replace").splitlines()
                 if MACHINE_PATH.search(line.encode()) and not COMMAND.match(line)]
        if lines:
            found[name] = lines
    return found


def test_no_committed_file_holds_a_machine_path():
    found = {name: lines[:3] for name, lines in machine_paths().items()}
    assert not found, f"absolute machine paths (write them relative to the repository): {found}"


def test_the_pattern_finds_paths_and_spares_commands():
    work, home = "/" + "work/", "/" + "home/"  # split, so that this file holds no such path itself
    assert MACHINE_PATH.search(f'"weights": "{work}main/codec/weights/fv2v-warp128.pt (da95193f)"'.encode())
    assert MACHINE_PATH.search(f"data,{home}me/clips/a.mp4".encode())
    assert not MACHINE_PATH.search(f"../shared/data/bench512 codec/weights/x.pt runs/a https://a.b{work}x".encode())
    assert COMMAND.match(f"OMP_NUM_THREADS=1 nice fvc train --cache {work}cache256 --out runs/a")
    assert COMMAND.match(f"    python -m codec.train.trainer --cache {work}cache256 \\")
    assert not COMMAND.match(f'  "data": "{work}shared/data/bench512",')


def test_the_benchmarks_write_paths_relative_to_the_repository():
    """keyframe_refs, search_ceiling and roundtrip write run.json / README paths through these."""
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    from protocol import portable, portable_args, portable_argv, portable_label

    shared = REPO.parent / "shared" / "data" / "bench512"
    assert portable(REPO / "codec" / "weights" / "fv2v-warp128.pt") == "codec/weights/fv2v-warp128.pt"
    assert portable(shared) == "../shared/data/bench512"
    assert portable_label(f"{REPO / 'codec/weights/fv2v-warp128.pt'} (da95193f)") == \
        "codec/weights/fv2v-warp128.pt (da95193f)"
    untrained = "UNTRAINED fv2v 'test' (random weights, seed 0)"
    assert portable_label(untrained) == untrained
    assert portable_args({"data": shared, "qp": [30], "out": REPO / "benchmarks" / "results" / "x"}) == \
        {"data": "../shared/data/bench512", "qp": "[30]", "out": "benchmarks/results/x"}
    assert portable_argv(["--data", str(shared), f"--out={REPO / 'o'}", "--qp", "30"]) == \
        ["--data", "../shared/data/bench512", "--out=o", "--qp", "30"]
