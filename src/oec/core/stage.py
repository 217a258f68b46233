"""Resumable stages: every stage of oec makes its output through this module, so none can reuse a half-written one.

A stage's output is one of two kinds.

- A *product* (a built dataset, a trained checkpoint) is made whole: written under a temporary name and renamed when
  complete, with a marker file inside (`oec_build.json`, `oec_train.json`) that records the stage's *key*, its config
  and a fingerprint of its inputs. A rerun with the same key skips it; with another key (a changed option, a run
  that has grown since) it is made again and replaces the old one. A killed stage leaves only the temporary name,
  which the next attempt removes; the real name never holds a half-written product.
- A *workspace* (a collection, DAgger's rounds, an experiment) grows stage by stage and resumes where it stopped. A
  config file pins what it is: a rerun with another config is refused with a message that names the keys that
  differ, because resuming would silently mix two experiments in one table.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from oec.core.atomic import atomic_output, check_output, write_text
from oec.core.errors import InputError
from oec.core.store import TRAJECTORIES, read_json_object, read_trajectories

BUILD_INFO = "oec_build.json"  # the marker of a dataset written by `oec build --format hf`
TRAIN_INFO = "oec_train.json"  # the marker of a checkpoint written by `oec train`


# A file up to this size is read whole; a bigger one (model weights) by SAMPLES slices of SAMPLE_BYTES, spread from its
# first byte to its last, so that gigabytes of weights are not read and a retrained model (whose bytes all change)
# still differs. Sizes and modification times are not used: a clone, a copy or a reinstall changes those alone.
READ_WHOLE, SAMPLES, SAMPLE_BYTES = 64 << 20, 16, 1 << 16


def _digest(path: Path) -> bytes:
    size = path.stat().st_size
    with path.open("rb") as f:
        if size <= READ_WHOLE:
            return hashlib.file_digest(f, "sha256").digest()
        h = hashlib.sha256(f"sampled {size}\n".encode())
        for i in range(SAMPLES):
            f.seek((size - SAMPLE_BYTES) * i // (SAMPLES - 1))
            h.update(f.read(SAMPLE_BYTES))
        return h.digest()


def fingerprint(*paths: str | Path) -> str:
    """What the inputs PATHS hold: a file (a run's trajectories, a build record) by its content, a directory (a
    model) by its files' paths inside it and their contents (a file over READ_WHOLE by samples of it). No absolute
    path and no modification time goes in: a directory moved, copied or cloned together with its inputs still
    matches, and a changed file does not."""
    h = hashlib.sha256()
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file())
            h.update(f"dir {len(files)}\n".encode())
            for f in files:
                h.update(f"{f.relative_to(p)}:".encode() + _digest(f))
        elif p.is_file():
            h.update(b"file " + _digest(p))
        else:
            h.update(b"missing\n")
    return h.hexdigest()[:16]


def digest(value: Any) -> str:
    """A short fingerprint of a JSON-able VALUE (e.g. which trajectories a filter kept)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def completed(out: str | Path, marker: str, key: Any = None) -> dict | None:
    """The marker's record of OUT when OUT is a complete product (made with KEY, if given), else None."""
    path = Path(out) / marker
    if not path.is_file():
        return None
    info = read_json_object(path, f"remove {Path(out)} to make it again")
    return info if key is None or info.get("key") == _plain(key) else None


def collected_all(run: str | Path, n: int) -> bool:
    """Whether the collection RUN (a workspace) holds N finished episodes: collect writes only finished ones."""
    return (Path(run) / TRAJECTORIES).exists() and len(read_trajectories(run)) >= n


def load_info(out: str | Path, marker: str) -> dict:
    """The marker's record of a product a later stage needs; a one-line error if OUT is not a complete one."""
    info = completed(out, marker)
    if info is None:
        raise InputError(f"{out}: not a complete output (no {marker} in it); make it again with its command")
    return info


@contextmanager
def making(out: str | Path, marker: str, key: Any) -> Iterator[tuple[Path, dict]]:
    """Make the product OUT: yields (a temporary directory to fill, a dict for the marker's record). On success the
    record, with KEY, is written last and the directory takes OUT's name; on any failure nothing of it is left."""
    check_output(out, "dir", marker=marker)
    with atomic_output(out) as tmp:
        tmp.mkdir(parents=True, exist_ok=True)
        info: dict = {}
        yield tmp, info
        (tmp / marker).write_text(json.dumps({**info, "key": _plain(key)}, indent=2) + "\n")


def guard_config(path: str | Path, config: dict, *, what: str, fix: str, may_change: frozenset[str] = frozenset(),
                 differs: Callable[[dict, dict], list[str]] | None = None, extra: dict | None = None) -> dict | None:
    """Pin the workspace whose config file is PATH to CONFIG: a first run writes it; a rerun whose stored config
    differs (in a key other than MAY_CHANGE, or as DIFFERS(old record, CONFIG) says) is refused, naming the keys and
    FIX. The file is (re)written as {"config": CONFIG, **EXTRA}; returns the record that was there, if any."""
    path = Path(path)
    old = read_json_object(path, f"move it aside to start this {what} over") if path.exists() else None
    if old is not None:
        if differs is None:
            theirs = old.get("config", {})
            diff = sorted(k for k in set(theirs) | set(config)
                          if k not in may_change and theirs.get(k) != config.get(k))
        else:
            diff = differs(old, config)
        if diff:
            raise InputError(f"{path}: this {what} was run with another config (differs in: {', '.join(diff)}); {fix}")
    write_text(path, json.dumps({"config": config, **(extra or {})}, indent=2) + "\n")
    return old


def _plain(value: Any) -> Any:
    """KEY as it reads back from JSON (tuples become lists), so a stored key compares equal to a fresh one."""
    return json.loads(json.dumps(value, default=str))


# Spec prefixes followed by a path: `local:MODEL_DIR?options`, `trigger:DIR`.
PATH_SPECS = ("local:", "trigger:")


def relative_paths(config: dict, base: str | Path, paths: Iterable[str] = (), specs: Iterable[str] = ()) -> dict:
    """CONFIG with the paths under the keys PATHS, and those inside the policy or switch specs under the keys SPECS,
    relative to BASE, as a workspace's stored config keeps them: a directory moved or copied together with what it
    refers to (an experiment directory) still resumes."""

    def rel(path: str) -> str:
        return os.path.relpath(os.path.abspath(path), os.path.abspath(base))

    out = dict(config)
    for key in paths:
        if isinstance(out.get(key), str) and out[key]:
            out[key] = rel(out[key])
    for key in specs:
        value = out.get(key)
        for prefix in PATH_SPECS:
            if isinstance(value, str) and value.startswith(prefix):
                target, q, options = value[len(prefix):].partition("?")
                out[key] = prefix + rel(target) + q + options
    return out
