"""The run directory's append-only trajectory file, and the readers of a run's JSON files.

Lines are only ever appended. A line cut short by a crash (kill -9 mid-write) is left where it is, isolated by a
newline, reported once, and ignored by readers; nothing already written is rewritten or deleted. Every JSONL reader
goes through `read_jsonl`: a line that is not UTF-8 or not JSON (a bad byte, a hand edit) is reported as
`FILE line N: ...` and skipped, with a count, instead of refusing the whole run.
"""

from __future__ import annotations

import fcntl
import json
import os
import warnings
from pathlib import Path
from typing import Any, Iterator

from pydantic import ValidationError

from oec.core.errors import InputError, describe
from oec.core.types import Problem, Trajectory

TRAJECTORIES = "trajectories.jsonl"
MANIFEST = "manifest.json"
PROBLEMS = "problems.jsonl"  # the problems of a run of imported demonstrations


def _bad_line(path: Path, lineno: int, line: bytes) -> tuple[Any, str | None]:
    """(the line's JSON value, None), or (None, why it is not one)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"not UTF-8 text (byte 0x{line[e.start]:02x} at column {e.start + 1})"
    try:
        return json.loads(text), None
    except json.JSONDecodeError as e:
        return None, f"not valid JSON ({e.msg} at column {e.colno})"


def read_jsonl(path: str | Path, what: str, warn: bool = True) -> Iterator[tuple[int, Any]]:
    """(line number, value) of each JSON line of PATH. A line that is not UTF-8 or not JSON is skipped with a warning
    naming the file and line, and the skipped lines are counted in one more warning at the end. WHAT says what a
    line should be, for the warning."""
    path = Path(path)
    skipped = 0
    try:
        f = path.open("rb")
    except OSError as e:  # a directory, no read permission, a broken link: one line, not a traceback
        raise InputError(f"{path}: cannot read it as the {what} file ({e.strerror}); give a readable file, or "
                         "the run directory that holds it") from None
    with f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            value, why = _bad_line(path, lineno, line)
            if why is not None:
                skipped += 1
                if warn:
                    warnings.warn(f"{path} line {lineno}: ignored, {why}: not a valid {what} (cut short by an "
                                  "interrupted run, or edited by hand)", stacklevel=3)
                continue
            yield lineno, value
    if skipped and warn:
        warnings.warn(f"{path}: {skipped} bad line(s) skipped, the rest read", stacklevel=3)


def iter_trajectories(path: str | Path, warn: bool = True) -> Iterator[Trajectory]:
    path = Path(path)
    if path.is_dir():
        path = path / TRAJECTORIES
    if not os.path.lexists(path):  # a broken link is not "no trajectories yet": read_jsonl names it
        return
    for lineno, value in read_jsonl(path, "trajectory", warn):
        try:
            yield Trajectory.model_validate(value)
        except ValidationError as e:
            if warn:
                why = f"{e}".splitlines()[0][:160]
                warnings.warn(f"{path} line {lineno}: ignored, not a valid trajectory (cut short by an interrupted "
                              f"run, or edited by hand): {why}", stacklevel=2)


def read_json_object(path: Path, fix: str) -> dict:
    """PATH's JSON object, or a one-line error naming PATH, what is wrong, and FIX (how to go on)."""
    raw = path.read_bytes()
    if not raw.strip():
        raise InputError(f"{path}: empty (cut short by an interrupted run?); {fix}")
    value, why = _bad_line(path, 1, raw)
    if why is not None:
        raise InputError(f"{path}: {why}; {fix}")
    if not isinstance(value, dict):
        raise InputError(f"{path}: expected a JSON object, found {json.dumps(value)[:60]}; {fix}")
    return value


def read_manifest(run: str | Path) -> dict | None:
    """RUN/manifest.json (written by `oec collect` and `oec demos import`), or None if there is none. A manifest that
    is empty, not JSON or not the expected object is a one-line error saying how to go on."""
    path = Path(run) / MANIFEST
    if not path.exists():
        return None
    fix = ("move it aside (the trajectories are kept) and rerun the collection to rewrite it, or pass --tasks where "
           "the command takes it")
    value = read_json_object(path, fix)
    if not isinstance(value.get("config"), dict):
        raise InputError(f"{path}: not a manifest written by oec (expected a JSON object with a 'config' object, "
                         f"found {json.dumps(value)[:60]}); {fix}")
    return value


def read_trajectories(path: str | Path, warn: bool = True) -> list[Trajectory]:
    """The latest attempt of each (task, sample) pair: `oec collect --retry-errors` appends a new attempt after one
    that ended in an error, and the superseded line stays on disk but counts nowhere."""
    return latest_attempts(iter_trajectories(path, warn))


def latest_attempts(trajs) -> list[Trajectory]:
    """The last of each (task, sample) pair's attempts, in the order the pairs first appear."""
    latest: dict[tuple[str, int], Trajectory] = {}
    for t in trajs:
        latest[t.key] = t  # a dict keeps a key's first position when its value is replaced
    return list(latest.values())


class TrajectoryWriter:
    """Appends one trajectory per line, flushed and fsynced, so a crash loses at most the line being written."""

    def __init__(self, path: Path):
        self.path = path
        self._f = path.open("ab")
        try:  # two collections appending to one run directory would duplicate (task, sample) pairs
            fcntl.flock(self._f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._f.close()
            raise InputError(f"{path}: another `oec collect` is writing to this run directory; wait for it, "
                             "or use another --out") from None
        if self._f.tell() > 0:
            with path.open("rb") as r:
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    warnings.warn(f"{path}: the last line was cut short by an interrupted run; it is kept but ignored",
                                  stacklevel=2)
                    self._f.write(b"\n")

    def write(self, traj: Trajectory) -> None:
        self._f.write(traj.model_dump_json().encode() + b"\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def read_problems(run: str | Path) -> dict[str, Problem]:
    """The problems of a run of imported demonstrations (`oec demos import`), by task id."""
    path = Path(run) / PROBLEMS
    out = {}
    for lineno, value in read_jsonl(path, "problem"):
        try:
            problem = Problem.model_validate(value)
        except ValidationError as e:
            warnings.warn(f"{path} line {lineno}: ignored, not a problem: {describe(e)[:160]}", stacklevel=2)
            continue
        out[problem.task_id] = problem
    return out
