"""Host-side writes into a tree an agent controlled, that never follow a link the agent left.

A workspace is the agent's: any directory on a path may have been replaced by a symlink to a host directory, and
`Path.mkdir(exist_ok=True)` then `write_bytes` would follow it and write as the host's user. Here every component of
a path is opened relative to its parent's file descriptor with O_NOFOLLOW, so a link is an error (or, where the
caller says so, is replaced), never a way out.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Iterator

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class LinkInTheWay(OSError):
    """A path component that must be a directory is a link or a file, and the caller did not ask to replace it."""


def _remove_at(dir_fd: int, name: str) -> None:
    """Remove NAME (a file, link or whole directory) inside the directory DIR_FD, following nothing."""
    st = os.lstat(name, dir_fd=dir_fd)
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)  # fd-based on Linux: it never follows a link inside either
    else:
        os.unlink(name, dir_fd=dir_fd)


def _open_dir_at(dir_fd: int, name: str, create: bool, replace: bool) -> int:
    try:
        return os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        if not create:
            raise
    except OSError as e:
        if e.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        if not replace:
            raise LinkInTheWay(e.errno, f"{name} is a link or a file where a directory is needed") from None
        _remove_at(dir_fd, name)
    os.mkdir(name, 0o755, dir_fd=dir_fd)
    return os.open(name, DIR_FLAGS, dir_fd=dir_fd)


@contextmanager
def parent_dir(root: Path, rel: str, create: bool = True, replace: bool = False) -> Iterator[tuple[int, str]]:
    """(fd of REL's parent directory under ROOT, REL's last name), every component opened without following links.
    CREATE makes missing directories; REPLACE removes a link or file that stands where a directory is needed (else
    LinkInTheWay). ROOT itself is ours and may be a path through /proc/PID/root."""
    parts = PurePosixPath(rel).parts
    if not parts or any(p in ("", ".", "..") for p in parts) or PurePosixPath(rel).is_absolute():
        raise ValueError(f"not a plain relative path: {rel!r}")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for name in parts[:-1]:
            child = _open_dir_at(fd, name, create, replace)
            os.close(fd)
            fd = child
        yield fd, parts[-1]
    finally:
        os.close(fd)


def write_file(root: Path, rel: str, data: bytes, mode: int = 0o644, replace: bool = False) -> None:
    """Write DATA as a new regular file ROOT/REL (whatever stood there is removed first), following no link."""
    with parent_dir(root, rel, replace=replace) as (dfd, name):
        try:
            _remove_at(dfd, name)
        except FileNotFoundError:
            pass
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dfd)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            os.fchmod(f.fileno(), mode)  # the umask must not decide the executable bit


def write_link(root: Path, rel: str, target: str) -> None:
    """Make ROOT/REL a symlink to TARGET (the link is created, never followed)."""
    with parent_dir(root, rel) as (dfd, name):
        try:
            _remove_at(dfd, name)
        except FileNotFoundError:
            pass
        os.symlink(target, name, dir_fd=dfd)


def remove(root: Path, rel: str) -> None:
    """Remove ROOT/REL, whatever it is, if it exists and no link stands on the way to it."""
    try:
        with parent_dir(root, rel, create=False) as (dfd, name):
            _remove_at(dfd, name)
    except (FileNotFoundError, LinkInTheWay):
        pass
