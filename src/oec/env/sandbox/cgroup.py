"""A memory cgroup per sandbox: the kernel's own count of what the sandbox's processes hold.

Resident sizes miss memory no process maps: a memfd written and never mapped, tmpfs files, pipe buffers, kernel
objects. A memory cgroup charges all of it to the sandbox that allocated it. Each slot gets its own group (v1's
memory controller, or v2's where this process may create a child that has it) whose hard limit is the sandbox's
memory limit, its memory filesystems capped well inside it. The slot's watchdog (slotd.py) reads the group's usage, less
the page cache it can drop, and kills everything a margin below the memory limit: at its 50 ms look, or at once
when the kernel signals that usage crossed it.
Where no group can be made the sandbox says so once, and memfd_create is refused inside it instead (seccomp.py), so
that the one large way past the watchdog is closed.
"""

from __future__ import annotations

import os
import re
import time
import warnings
from dataclasses import dataclass
from functools import cache
from itertools import count
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
NAME = re.compile(r"oec-slot-(\d+)-\d+$")
_serial = count()


@dataclass(frozen=True)
class Controller:
    """Where this process's memory cgroup lives and what its files are called (v1 and v2 differ)."""

    dir: Path
    limit_file: str  # the hard limit
    usage_file: str  # bytes charged now
    file_keys: tuple[str, ...]  # memory.stat keys of reclaimable page cache, subtracted from usage

    def new_group(self, limit: int) -> Path:
        """A new group whose hard limit is LIMIT: the kernel's backstop, which nothing in it gets past (its
        out-of-memory kill picks the agent's processes first: testserver.limit_resources; the watchdog notices
        such a kill and says so)."""
        group = self.dir / f"oec-slot-{os.getpid()}-{next(_serial)}"
        group.mkdir()
        try:
            (group / self.limit_file).write_text(str(limit))
        except OSError:
            remove(group, wait=0)
            raise
        return group

    def meter(self) -> dict:
        """The group's files the slot's watchdog reads (tools/accounting.py's Meter): bytes charged, out-of-memory
        kills, the threads in the group, and the page cache it leaves out."""
        v1 = self.usage_file == "memory.usage_in_bytes"
        return {"usage": self.usage_file, "events": "memory.oom_control" if v1 else "memory.events",
                "threads": "tasks" if v1 else "cgroup.threads", "cache": list(self.file_keys)}

    def alarm(self, group: Path, at: int) -> int | None:
        """An eventfd the kernel signals when GROUP's usage crosses AT bytes (v1's usage thresholds), so the
        watchdog acts within a millisecond of it instead of at its next 50 ms look; None where there is no such
        notice (v2: memory.high instead throttles allocations past AT, which gives the watchdog the time)."""
        if self.usage_file == "memory.current":
            (group / "memory.high").write_text(str(at))
            return None
        efd = os.eventfd(0, os.EFD_CLOEXEC)
        usage = os.open(group / self.usage_file, os.O_RDONLY | os.O_CLOEXEC)
        try:
            (group / "cgroup.event_control").write_text(f"{efd} {usage} {at}")
        except OSError:
            os.close(efd)
            return None
        finally:
            os.close(usage)
        return efd


def margin(limit: int) -> int:
    """How far below the hard limit the watchdog kills: room for what is allocated while it acts."""
    return min(64 << 20, limit // 8)


def _own(line_filter) -> str | None:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if line_filter(controllers):
            return path
    return None


def _candidates() -> list[Controller]:
    out = []
    v1 = _own(lambda c: "memory" in c.split(","))
    if v1 is not None:
        out.append(Controller(ROOT / "memory" / v1.lstrip("/"), "memory.limit_in_bytes", "memory.usage_in_bytes",
                              ("total_active_file", "total_inactive_file")))
    v2 = _own(lambda c: c == "")
    if v2 is not None:
        for base in (ROOT, ROOT / "unified"):
            here = base / v2.lstrip("/")
            if "memory" in _read(here / "cgroup.subtree_control").split():
                out.append(Controller(here, "memory.max", "memory.current", ("active_file", "inactive_file")))
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


@cache
def controller() -> Controller | None:
    """The first memory controller under which a group can be made and limited here; None (with a warning) if none."""
    for c in _candidates():
        try:
            remove(c.new_group(256 << 20))
            return c
        except OSError:
            continue
    warnings.warn("no memory cgroup can be made here (it needs root, or a delegated cgroup v2 subtree): the "
                  "sandbox counts the resident memory of its processes and SysV segments only, and refuses "
                  "memfd_create; tmpfs mounts stay size-capped", stacklevel=2)
    return None


def remove(group: Path, wait: float = 2.0) -> None:
    """Remove GROUP once its processes are gone (they die asynchronously after a kill)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            group.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() >= deadline:
                return
            time.sleep(0.02)


def sweep_stale_groups() -> None:
    """Remove the groups of collections killed with -9 (their processes are gone, so the groups are empty)."""
    c = controller()
    if c is None:
        return
    for group in c.dir.glob("oec-slot-*"):
        m = NAME.match(group.name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            remove(group, wait=0)
