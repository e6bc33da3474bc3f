"""A benchmark's results folder, as rd_curve.py and reenactment.py keep it: CSV tables that a run appends rows
to and a resumed run reads back, run.json (the settings a resumed run must share), and what every row says
about itself: when it was measured, on which commit. Paths written there are relative to the repository
(protocol.portable)."""
from __future__ import annotations

import csv
import datetime
import io
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from protocol import REPO, portable_argv
from rdcodecs import BenchmarkError

# Each row's provenance; rows written before these columns existed read as UNKNOWN there.
PROVENANCE_COLUMNS = ["date", "commit"]
UNKNOWN = "-"
# The code a row depends on: a commit with changes here is marked "+dirty".
CODE_FOLDERS = ("codec", "bitstream", "benchmarks")
RESULTS_PATHSPEC = "benchmarks/results"


class Table:
    """One CSV of rows keyed by some of its columns, appended to one row at a time (each row on disk once
    written) and read back by a resumed run. `older` names the columns that files written before them lack, and
    the value their rows read as there; any other header is refused."""

    def __init__(self, path: Path, columns: list[str], older: dict[str, str] | None = None):
        self.path, self.columns, self.older = path, list(columns), dict(older or {})

    def read(self) -> list[dict[str, str]]:
        """The complete rows, ready for appending: a row cut short by an interrupted run is removed from the file
        (and redone), and a file with an older header is rewritten under the current one."""
        if not self.path.exists():
            return []
        full = self.path.read_text()
        text = full[: full.rfind("\n") + 1]
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = reader.fieldnames or []
        if [c for c in self.columns if c in header] != header or set(self.columns) - set(header) - set(self.older):
            raise BenchmarkError(f"{self.path} has columns {header}, expected {self.columns}")
        missing = {c: self.older[c] for c in self.columns if c not in header}
        rows = [{**missing, **row} for row in reader]
        rows = [row for row in rows if all(row.get(c) not in (None, "") for c in self.columns)]
        if text != full or header != self.columns:  # rows appended next start on a line of their own
            self.write(rows)
        return rows

    def write(self, rows: list[dict]) -> None:
        """Replace the file with `rows` under the current header, atomically."""
        buffer = io.StringIO(newline="")
        writer = csv.DictWriter(buffer, fieldnames=self.columns)
        writer.writeheader()
        writer.writerows(rows)
        _replace(self.path, buffer.getvalue())

    def append(self, row: dict) -> None:
        """Add one row, flushed to disk before returning."""
        new = not self.path.exists()
        with open(self.path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns)
            if new:
                writer.writeheader()
            writer.writerow(row)
            f.flush()
            os.fsync(f.fileno())


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def read_run_info(out: Path) -> dict | None:
    path = out / "run.json"
    return json.loads(path.read_text()) if path.exists() else None


def write_run_info(out: Path, run_info: dict) -> None:
    """run.json: this run's settings merged with what earlier runs in the folder recorded (their methods, clips
    and commands; keys this run does not write, such as notes, stay)."""
    old = read_run_info(out)
    if old is not None:
        run_info = {**old, **run_info, "methods": {**old.get("methods", {}), **run_info["methods"]},
                    "clips": sorted(set(old.get("clips", [])) | set(run_info["clips"])),
                    "commands": old.get("commands", []) + run_info["commands"]}
    _replace(out / "run.json", json.dumps(run_info, indent=2) + "\n")


def refuse_other_settings(out: Path, changed: list[str], also: str = "") -> None:
    """One error naming every setting in which the run differs from the one whose rows are in `out`."""
    if changed:
        raise BenchmarkError(f"{out} holds a run with other {', '.join(changed)}; use another --run-name, "
                             f"or --force to start it over{also}")


def changed_keys(old: dict, new: dict, keys) -> list[str]:
    """The `keys` whose values differ between two run.json dictionaries (a key one lacks differs)."""
    return [k for k in keys if old.get(k) != new.get(k)]


def clear(out: Path, names: list[str]) -> None:
    """--force: the named files of an earlier run are removed."""
    for name in names:
        (out / name).unlink(missing_ok=True)


def command_line(argv: list[str] | None = None) -> str:
    """The command that ran (default: this process's), absolute paths in it made relative to the repository."""
    return shlex.join([Path(sys.executable).name, *portable_argv(sys.argv if argv is None else argv)])


def code_version() -> str:
    """The commit the code ran from (12 hex digits), "+dirty" when files of CODE_FOLDERS differ from it;
    UNKNOWN outside a git checkout."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()

    try:
        commit = git("rev-parse", "--short=12", "HEAD")
        # Results folders are what the runs write, not code: a run beside another one would mark it dirty.
        dirty = git("status", "--porcelain", "--untracked-files=no", "--", *CODE_FOLDERS, f":!{RESULTS_PATHSPEC}")
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    return commit + ("+dirty" if dirty else "")


def run_stamp() -> dict[str, str]:
    """When (UTC) and on which code a benchmark ran, for its run.json and printed header."""
    return provenance(code_version())


def provenance(commit: str) -> dict[str, str]:
    """The provenance columns of a row finished now (UTC) by code at `commit`."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return {"date": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "commit": commit}
