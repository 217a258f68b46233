"""The first error of a failed episode, and whether it was a slip or a decision.

OEC corrects a student's mistakes; which kind it makes decides what there is to correct. A *slip* is a mistake of
execution: a reply that does not parse, a file or function name the repository does not have (a name mis-copied or
made up), an edit whose old text is not there. A *decision* is a wrong choice between things that exist: editing a
file the fix does not touch (the function named in the issue instead of the one it calls), a wrong change in the
right file, never finding the file with the bug, or finding it and never changing it.

Only the student's turns count (the expert's never are the student's errors). Errors found turn by turn (slips, a
wrong file) are weighed against what the final workspace shows (a wrong fix dates from the first write to a file of
the fix): the earliest one is the first error. `oec.experiments` and the failure view (`failures.jsonl`) use this
one classifier.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import asdict, dataclass
from functools import lru_cache

from oec.core.shell_facts import written_paths
from oec.core.types import Task, Trajectory
from oec.env.repos import patch_paths, template

SLIPS = {
    "format_error": "a reply that does not parse",
    "missing_path": "a file the repository does not have (a mis-copied or made-up path)",
    "missing_function": "a function the repository does not define (a mis-copied or made-up name)",
    "edit_missed": "wrote to a file of the fix, which ended unchanged (the old text was not there)",
}
DECISIONS = {
    "wrong_file": "edited a file the fix does not touch",
    "wrong_fix": "changed the right file, but not into a fix",
    "not_localised": "never looked at the file with the bug",
    "not_fixed": "looked at the file with the bug, never changed it",
}
PATH = re.compile(r"^(?:\./)?[\w.-]+(?:/[\w.-]+)*\.py$")
DEF = re.compile(r"def\\?\s+(\w+)")


@dataclass(frozen=True)
class FirstError:
    kind: str  # slip | decision | none (resolved, or the episode could not run: nothing the student chose)
    category: str  # a key of SLIPS or DECISIONS, or "none"
    turn: int | None
    evidence: str = ""

    def row(self) -> dict:
        return asdict(self)


NONE = FirstError("none", "none", None)


def _named(command: str) -> tuple[list[str], list[str]]:
    """(paths, function names) that COMMAND looks for: .py paths among its words, names in `def NAME(` patterns."""
    try:
        words = shlex.split(command.split("<<", 1)[0])
    except ValueError:
        words = command.split()
    return [w.removeprefix("./") for w in words if PATH.match(w)], DEF.findall(command)


def _in_step(step, files: set[str], gold: set[str], defined: set[str], packages: set[str],
             created: set[str]) -> tuple[FirstError | None, bool]:
    """The error STEP makes by itself (a slip, or a write to a file the fix does not touch), if any, and whether it
    writes a file of the fix; the files it creates of its own are added to CREATED."""
    if step.format_error:
        return FirstError("slip", "format_error", step.turn, step.output[:120]), False
    if step.action is None or step.action.kind != "bash":
        return None, False
    command = step.action.command
    written = written_paths(command)
    paths, names = _named(command)
    for path in paths:
        if path not in files | gold | created | set(written):
            return FirstError("slip", "missing_path", step.turn, path), False
    for name in names:
        if name not in defined:
            return FirstError("slip", "missing_function", step.turn, name), False
    for path in written:
        if path in gold:
            continue
        if path in files:
            return FirstError("decision", "wrong_file", step.turn, path), False
        if os.path.dirname(path) in packages and path.endswith(".py"):  # a module the package does not have
            return FirstError("slip", "missing_path", step.turn, path), False
        created.add(path)  # a file of its own (a script, the scaffold's patch file): no error in itself
    return None, any(p in gold for p in written)


@lru_cache(maxsize=256)
def _repository(task_json: str) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """(files, functions defined, package directories) of a task's base repository: read once per task, not per
    episode (a real repository has thousands of Python files). An inline repository is read as it is given."""
    task = Task.model_validate_json(task_json)
    if task.repo.kind == "inline":
        texts: dict[str, str | None] = dict(task.repo.files)
    else:
        base = template(task)
        texts = {p: base.read(p) if p.endswith(".py") else None for p in base.files}
    defined = {name for text in texts.values() if text for name in re.findall(r"^\s*def (\w+)\(", text, re.M)}
    return frozenset(texts), frozenset(defined), frozenset(os.path.dirname(p) for p in texts if p.endswith(".py"))


def first_error(traj: Trajectory, task: Task) -> FirstError:
    """The first error of TRAJ (NONE when it resolved or could not run)."""
    if traj.verdict is None or traj.verdict.resolved or traj.exit_status in ("error", "cancelled") \
            or traj.verdict.error or not task.gold_patch:
        return NONE
    files, defined, packages = _repository(task.model_dump_json())
    gold = set(patch_paths(task.gold_patch))
    final = set(patch_paths(traj.verdict.patch or ""))
    first_gold_write, seen_gold, created, found = None, False, set(), None
    for step in traj.steps:
        if step.actor != "student":
            seen_gold = seen_gold or any(p in step.observation for p in gold)
            continue
        found, wrote_gold = _in_step(step, files, gold, defined, packages, created)
        if found is not None:
            break
        if wrote_gold:
            first_gold_write = first_gold_write or step
        command = step.action.command if step.action is not None else ""
        seen_gold = seen_gold or any(p in command or p in step.observation for p in gold)
    if first_gold_write is not None:  # earlier than anything found after it: how that write ended
        changed = gold & final
        if not changed:
            return FirstError("slip", "edit_missed", first_gold_write.turn, first_gold_write.action.command[:120])
        return FirstError("decision", "wrong_fix", first_gold_write.turn, ", ".join(sorted(changed)))
    if found is not None:
        return found
    end = traj.steps[-1].turn if traj.steps else None
    if (final & files) - gold:  # changed by a command the rules above do not read as a write (python -c, mv...)
        return FirstError("decision", "wrong_file", end, ", ".join(sorted((final & files) - gold)))
    return FirstError("decision", "not_fixed" if seen_gold else "not_localised", end,
                      ", ".join(sorted(gold)))
