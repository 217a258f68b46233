"""The temp directories of sandboxes, templates and verification: named by the process that made them, so that
those of a process killed with -9 (which runs no atexit) are found and removed by the next collection."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

__all__ = ["OWNED", "clear_dir", "owned_tempdir", "remove_tree", "sweep_stale_dirs"]


def remove_tree(path: Path) -> None:
    """rm -rf, without following links; unlike shutil.rmtree (recursive), it copes with directories nested
    thousands deep, which an agent can make."""
    subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)], check=False, capture_output=True)


def clear_dir(path: Path) -> None:
    """Empty PATH whatever it holds, in one process and at most a few: files and links are unlinked here, relative
    to PATH's descriptor (nothing is followed; one `rm` per entry once took minutes for 100k files), and the
    directories go to `rm -rf` in as few calls as find can batch them into (it copes with nesting thousands deep,
    which the stack of a recursive walk does not). A directory the agent made unreadable is opened up (we own it)
    and the removal tried again."""
    for attempt in range(2):
        if attempt:
            subprocess.run(["find", "-P", str(path), "-mindepth", "1", "-type", "d", "!", "-perm", "-u=rwx",
                            "-exec", "chmod", "u+rwx", "--", "{}", "+"], capture_output=True, check=False)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            dirs = False
            with os.scandir(fd) as entries:
                for e in entries:
                    if e.is_dir(follow_symlinks=False):
                        dirs = True
                        continue
                    try:
                        os.unlink(e.name, dir_fd=fd)
                    except OSError:
                        pass
        finally:
            os.close(fd)
        if dirs:
            subprocess.run(["find", "-P", str(path), "-mindepth", "1", "-maxdepth", "1", "-type", "d", "-exec", "rm",
                            "-rf", "--one-file-system", "--", "{}", "+"], capture_output=True, check=False)
        with os.scandir(path) as entries:
            if next(entries, None) is None:
                return


# Temp directories named by the id of the process that made them; see sweep_stale_dirs.
OWNED = re.compile(r"oec-(?:slot|templates|verify|docker)-(\d+)-")


def owned_tempdir(kind: str) -> Path:
    """A new temp directory `oec-KIND-PID-*`: its name says which process may still use it."""
    return Path(tempfile.mkdtemp(prefix=f"oec-{kind}-{os.getpid()}-"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def sweep_stale_dirs(root: Path | None = None) -> list[Path]:
    """Remove the slot and template directories whose process is gone: a kill -9 runs no atexit, so they would stay
    in the temp dir forever. (A directory whose pid was since reused by a live process is left: a leak, not a risk.)"""
    root = Path(root or tempfile.gettempdir())
    removed = []
    with os.scandir(root) as entries:
        for entry in entries:
            m = OWNED.match(entry.name)
            if m and entry.is_dir(follow_symlinks=False) and not _alive(int(m.group(1))):
                remove_tree(Path(entry.path))
                removed.append(Path(entry.path))
    return removed
