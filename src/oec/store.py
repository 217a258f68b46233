"""The run directory's append-only trajectory file.

Lines are only ever appended. A line cut short by a crash (kill -9 mid-write) is left where it is, isolated by a
newline, reported once, and ignored by readers; nothing already written is rewritten or deleted.
"""

from __future__ import annotations

import fcntl
import json
import os
import warnings
from pathlib import Path
from typing import Iterator

from pydantic import ValidationError

from oec.tasks import InputError
from oec.types import Trajectory

TRAJECTORIES = "trajectories.jsonl"


def iter_trajectories(path: str | Path, warn: bool = True) -> Iterator[Trajectory]:
    path = Path(path)
    if path.is_dir():
        path = path / TRAJECTORIES
    if not path.exists():
        return
    with path.open() as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield Trajectory.model_validate(json.loads(line))
            except (json.JSONDecodeError, ValidationError) as e:
                if warn:
                    why = f"{e}".splitlines()[0][:160]
                    warnings.warn(f"{path} line {lineno}: ignored, not a valid trajectory (cut short by an interrupted "
                                  f"run, or edited by hand): {why}", stacklevel=2)


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
