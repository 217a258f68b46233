"""Reading and writing tasks files (one Task per JSON line), with errors that name the file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from oec.core.atomic import atomic_output
from oec.core.errors import InputError, describe
from oec.core.store import read_manifest, read_problems
from oec.core.types import Problem, Task
from oec.tasks import toy


def load_tasks(path: str | Path) -> list[Task]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such tasks file (make one with `oec tasks generate ... --out {path}`)")
    tasks, seen = [], {}
    # Tasks are an input: a bad line stops the command before any work (rather than quietly dropping a task), and
    # the error names the line. Read as bytes, so that a bad byte is such an error too, not a bare UnicodeDecodeError.
    for lineno, raw in enumerate(path.read_bytes().splitlines(), 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(f"{path} line {lineno}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column "
                             f"{e.start + 1}); fix or delete that line") from None
        if not line.strip():
            continue
        try:
            task = Task.model_validate(json.loads(line))
        except json.JSONDecodeError as e:
            raise InputError(f"{path} line {lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
        except ValidationError as e:
            raise InputError(f"{path} line {lineno}: {describe(e)}") from None
        if task.task_id in seen:
            raise InputError(f"{path} line {lineno}: task_id {task.task_id!r} repeats line {seen[task.task_id]}")
        seen[task.task_id] = lineno
        tasks.append(task)
    if not tasks:
        raise InputError(f"{path}: holds no tasks")
    return tasks


def tasks_of_run(run: str | Path, tasks: str | Path | None = None) -> dict[str, Task | Problem]:
    """The tasks a run was collected on (TASKS, or the file its manifest names), by id; for a run of imported
    demonstrations, their problems."""
    run = Path(run)
    path = tasks
    manifest = read_manifest(run) if path is None else None
    if manifest is not None:
        path = manifest["config"].get("tasks")
        if manifest.get("relative_paths") and isinstance(path, str):  # relative to the run: it may have moved
            path = str(run / path)
            if not Path(path).exists() and isinstance(manifest.get("tasks_path"), str):  # copied without its tasks
                path = manifest["tasks_path"]
    if path is None and (run / "problems.jsonl").exists():  # imported demonstrations: problems, no repos
        return read_problems(run)
    if path is None or not Path(path).exists():
        raise InputError(f"{run}: cannot find the tasks it was collected on (its manifest names {path!r}); "
                         "pass --tasks FILE")
    return {t.task_id: t for t in load_tasks(path)}


def write_tasks(tasks: list[Task], path: str | Path) -> Path:
    path = Path(path)
    with atomic_output(path) as tmp, tmp.open("w") as f:
        for t in tasks:
            f.write(t.model_dump_json() + "\n")
    return path


def generate_tasks(suite: str, split: str, n: int, seed: int, preset: str | None = None, **knobs) -> list[Task]:
    if suite != "toy":
        raise InputError(f"unknown suite {suite!r}; the embedded suite is 'toy' (real repos: `oec tasks import`)")
    try:
        cfg = toy.toy_config(preset, **knobs)
    except ValidationError as e:
        raise InputError(f"toy suite options: {describe(e)}") from None
    except ValueError as e:  # an unknown preset
        raise InputError(str(e)) from None
    return toy.generate(split, n, seed, cfg)
