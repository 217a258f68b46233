"""What one sandbox may use, and the size-capped workspace that enforces its disk quota where root allows it."""

from __future__ import annotations

import subprocess
import warnings
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from oec.core.errors import InputError
from oec.env.sandbox.bwrap import TMP_BYTES


@dataclass(frozen=True)
class Limits:
    """What one sandbox may use at once (slotd.py kills everything in it past a limit: see its docstring), and the
    interpreter it runs: slots are pooled by these, since none can change them once started."""

    tasks: int = 1024  # processes and threads (as root, RLIMIT_NPROC is not enforced)
    memory: int = 4 << 30  # bytes charged to its memory cgroup (see cgroup.py), or resident bytes without one
    disk: int = 1 << 30  # bytes the workspace may hold (its own size-capped filesystem, where one can be mounted)
    files: int = 100_000  # files and directories the workspace, /tmp, /run and /dev/shm may each hold
    python: str | None = None  # the task's interpreter (env.python): tests, `python`, `pytest` (None: oec's own)

    def __post_init__(self):
        if self.tasks < 16 or self.memory < 256 << 20 or self.disk < 16 << 20 or self.files < 1000:
            raise InputError(f"sandbox limits too small to run pytest: {self}; use tasks >= 16, memory >= 256 MiB, "
                             "disk >= 16 MiB, files >= 1000")
        if self.disk > self.memory // 2:  # the workspace is memory too: its files must leave room to run
            raise InputError(f"env.disk_mb={self.disk >> 20} is more than half the sandbox's memory limit "
                             f"({self.memory >> 20} MiB): the workspace is a memory filesystem; lower it")

    @property
    def tmp(self) -> int:
        """The size of /tmp: a memory filesystem too, so at most a quarter of the memory limit."""
        return min(TMP_BYTES, self.memory // 4)


@cache
def can_cap_workspace() -> bool:
    """Whether this process may mount a size- and inode-capped tmpfs in a private mount namespace (root, or
    CAP_SYS_ADMIN). Without it the workspace has no disk quota; the sandbox says so once."""
    probe = ("d=$(mktemp -d) && mount -t tmpfs -o size=1m,nr_inodes=100 oec-probe \"$d\" && umount \"$d\"; r=$?; "
             "rmdir \"$d\"; exit $r")
    try:
        ok = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", probe],
                            capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    if not ok:
        warnings.warn("the sandbox's workspace has no disk quota here: mounting a size-capped tmpfs needs root "
                      "(or CAP_SYS_ADMIN); /tmp, /run and /dev/shm are capped as always", stacklevel=2)
    return ok


def capped_workspace(ws: Path, limits: Limits) -> list[str]:
    """An argv prefix that runs the sandbox in a private mount namespace where WS is a tmpfs holding at most
    LIMITS.disk bytes and LIMITS.files inodes (past either, writes fail with ENOSPC, which the agent sees). The
    mount lives and dies with the sandbox's processes, so nothing is left mounted on the host after a kill -9."""
    mount = 'mount -t tmpfs -o "size=$1,nr_inodes=$2,mode=0755" oec-workspace "$3" && shift 3 && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", mount, "sh", str(limits.disk),
            str(limits.files), str(ws)]
