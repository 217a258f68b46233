"""No leakage by construction: an experiment's task sets are disjoint by content, and a model says what it trained on.

Task ids name a generator seed and index, not what a task holds, so two sets are compared by a hash of each task's
content (its problem, repository and tests). A model directory may carry `trained_tasks.json`: the content hashes of
every task it was trained on (the warm-start stage of `oec experiment` writes one, adding those of the model it
started from), so a later experiment can refuse to collect pools on, or evaluate on, tasks the student already saw.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from oec.core.errors import InputError
from oec.core.types import Task

TRAINED_TASKS = "trained_tasks.json"
HASH_CHARS = 16  # 64 bits: a chance collision among a few thousand tasks is ~1e-12


def content_hash(task: Task) -> str:
    """What the task holds, not what it is called: the id, split label, schema version and generator notes are left
    out, so the same task generated under another name still collides."""
    # a field added since the shipped task lists were hashed is left out while unset, so their hashes still match
    unset = {"test_command"} if task.test_command is None else set()
    content = task.model_dump(mode="json", exclude={"task_id", "split", "schema_version", "meta", *unset})
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:HASH_CHARS]


def trained_on(model: str | Path) -> dict | None:
    """MODEL's trained_tasks.json ({"sources": [...], "hashes": [...]}), or None when it has none."""
    path = Path(model) / TRAINED_TASKS
    if not path.is_file():
        return None
    try:
        got = json.loads(path.read_text())
        return {"sources": list(got["sources"]), "hashes": list(got["hashes"])}
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not a trained-tasks file ({e}); it needs 'sources' and 'hashes' lists") from None


def write_trained_on(out: str | Path, tasks: list[Task], source: dict, base: str | Path | None) -> Path:
    """Record in OUT that it was trained on TASKS (described by SOURCE), on top of what BASE was trained on."""
    before = trained_on(base) if base else None
    hashes = set(before["hashes"] if before else []) | {content_hash(t) for t in tasks}
    sources = (before["sources"] if before else []) + [source]
    path = Path(out) / TRAINED_TASKS
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"sources": sources, "hashes": sorted(hashes)}, indent=1) + "\n")
    tmp.replace(path)
    return path


def check_disjoint(sets: dict[str, list[Task]], model: str | Path | None) -> None:
    """Raise unless the named task SETS share no task by content, and MODEL (if it says) trained on none of them."""
    hashed = {name: {content_hash(t): t.task_id for t in tasks} for name, tasks in sets.items()}
    names = list(hashed)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            common = hashed[a].keys() & hashed[b].keys()
            if common:
                example = hashed[a][min(common)]
                raise InputError(f"suite: {len(common)} of the {a} tasks are also {b} tasks by content (e.g. "
                                 f"{example}); they must come from disjoint seeds: change suite.seed or "
                                 "suite.warm_seed, or use other task files")
    trained = trained_on(model) if model else None
    if trained is None:
        return
    seen = set(trained["hashes"])
    for name, tasks in hashed.items():
        common = tasks.keys() & seen
        if common:
            where = "; ".join(f"{s.get('suite', '?')} {s.get('split', '?')} seed {s.get('seed', '?')} "
                              f"x{s.get('n', '?')}" for s in trained["sources"])
            raise InputError(f"{Path(model) / TRAINED_TASKS}: the student was trained on {len(common)} of the {name} "
                             f"tasks (e.g. {tasks[min(common)]}); it was trained on {where}: choose a suite.seed "
                             "(and suite.warm_seed) it never saw")
