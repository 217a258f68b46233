"""Outputs appear whole or not at all: each file or directory is written under a temporary name beside it and renamed
to its real name only when complete.

A stage that is killed (kill -9, a full disk, a power cut) leaves at most `.NAME.partial`, which no reader takes for
a finished output and the next attempt removes; so "the output exists" always means "the output is complete", which is
what every resumable stage checks. The rename is atomic on one filesystem, and the temporary name is in the same
directory, hence on the same filesystem.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def partial_path(path: str | Path) -> Path:
    """Where PATH is written before it is complete (hidden, so that globs over finished outputs skip it)."""
    path = Path(path)
    return path.with_name(f".{path.name}.partial")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_output(path: str | Path, kind: str, arg: str = "--out", marker: str | None = None) -> Path:
    """Fail before any work if PATH cannot become an output of KIND ("file" or "dir"): it is the other kind, or a
    parent of it is a file, or (MARKER given) it is a non-empty directory without MARKER, i.e. not an earlier output
    of the same command, which replacing it would delete. ARG names the option in the message."""
    from oec.tasks.io import InputError  # oec.tasks.io writes its files through this module

    path = Path(path)
    if kind == "dir" and path.exists() and not path.is_dir():
        raise InputError(f"{arg} {path}: is a file, not a directory; give a directory path (it is created)")
    if kind == "file" and path.is_dir():
        raise InputError(f"{arg} {path}: is a directory; give a file path, e.g. {path / 'out.jsonl'}")
    if marker and path.is_dir() and any(path.iterdir()) and not (path / marker).exists():
        raise InputError(f"{arg} {path}: a directory that oec did not write (no {marker} in it); its files would be "
                         "replaced, so give a new or empty directory")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{arg} {path}: {parent} is a file, so nothing can be written under it; give "
                                 "another path")
            break
    return path


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield the temporary path to write PATH's content to (a file, or a directory the caller creates); on success
    move it to PATH, replacing what was there; on failure remove it. A leftover from a killed attempt is removed
    first."""
    path = Path(path)
    tmp = partial_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove(tmp)
    try:
        yield tmp
        if tmp.is_dir():
            for f in tmp.rglob("*"):  # the data must be on disk before the name says it is complete
                if f.is_file():
                    with f.open("rb+") as h:
                        os.fsync(h.fileno())
        elif tmp.exists():
            with tmp.open("rb+") as h:
                os.fsync(h.fileno())
        if path.is_dir() and not path.is_symlink():  # rename() cannot replace a non-empty directory
            old = path.with_name(f".{path.name}.old")
            _remove(old)
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        _remove(tmp)
        raise


def write_text(path: str | Path, text: str) -> Path:
    """PATH's whole content, replaced atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return Path(path)
