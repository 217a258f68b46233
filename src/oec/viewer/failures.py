"""Why an episode failed: one primary category per trajectory, from rules over its steps and verdict.

The rules are checked in the order of CATEGORIES and the first that holds is the primary category (a resolved
trajectory is `resolved`); every rule that holds is kept as a signal, so a reader sees both the headline and what
else went wrong. Categories go to RUN/failures.jsonl, one line per (task, sample) keyed like filter.jsonl; the
trajectories file is never rewritten. The order puts causes before symptoms: an episode that looped on one command
until the step limit is `repeated`, not `step_limit_failing`; an API outage is `error`, whatever the agent did first.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from oec.core.errors import InputError
from oec.core.shell_facts import EDIT_COMMAND, TEST_COMMAND, commands, repetition
from oec.core.store import read_trajectories
from oec.core.types import Problem, Task, Trajectory
from oec.data.filter import FilterConfig
from oec.env.repos import patch_paths
from oec.tasks.io import tasks_of_run
from oec.viewer.first_error import first_error

if TYPE_CHECKING:
    from oec.viewer.judge import Judge

FAILURES = "failures.jsonl"
# the filter's default thresholds: one command this many times in a row, or this many times in all, is a loop
REPEAT_IN_A_ROW = FilterConfig.model_fields["max_repeat_consecutive"].default
REPEAT_TOTAL = FilterConfig.model_fields["max_repeat_total"].default + 1  # the filter allows that many

# name -> what a reader is told; the order is the rules' precedence
CATEGORIES = {
    "error": "environment or API error: the episode could not run to its end",
    "cancelled": "stopped by the user before the end (not the agent's doing)",
    "format_errors": "format errors: the output could not be parsed, too many times in a row",
    "repeated": f"repeated itself: one command {REPEAT_IN_A_ROW} times in a row, or {REPEAT_TOTAL} times in all "
                "(test runs aside)",
    "edit_failed": "tried to edit, but the workspace ended unchanged (no such file, or the old text not found)",
    "never_edited": "never tried to edit: the final workspace has no change",
    "wrong_file": "edited a file the gold patch does not touch",
    "never_ran_tests": "never ran the tests",
    "submitted_failing": "submitted while tests fail",
    "step_limit_failing": "ran out of steps while tests fail",
}
RESOLVED = "resolved"


def _rules(task: Task | Problem | None) -> dict[str, Callable[[Trajectory], str | None]]:
    """category -> rule returning the evidence when it holds, else None."""
    gold = set(patch_paths(task.gold_patch)) if isinstance(task, Task) and task.gold_patch else None

    def error(t):
        if t.exit_status == "error":
            return t.exit_message.splitlines()[0][:200] if t.exit_message else "ended in an error"
        if t.verdict is not None and t.verdict.error:  # the agent's work could not be judged
            return t.verdict.error[:200]
        return "no verdict" if t.verdict is None and t.exit_status != "cancelled" else None

    def fmt(t):
        n = sum(s.format_error for s in t.steps)
        return f"{n} format errors; ended {t.exit_status}" if t.exit_status == "format_errors" else None

    def repeated(t):
        row, cmd, total = repetition(commands(t))
        if row >= REPEAT_IN_A_ROW or total >= REPEAT_TOTAL:
            return f"the same command {row} times in a row" if row >= REPEAT_IN_A_ROW else f"`{cmd[:60]}` {total} times"
        return None

    def unchanged(t):
        return not (t.verdict and t.verdict.patch.strip())

    def tries(t):
        return [s for s in t.steps if s.action and s.action.kind == "bash" and EDIT_COMMAND.search(s.action.command)]

    def edit_failed(t):
        if not tries(t) or not unchanged(t):
            return None
        said = (tries(t)[0].observation.strip().splitlines() or ["no output"])[0][:120]
        return f"{len(tries(t))} edits tried, none left a change; the first said: {said}"

    def never_edited(t):
        return "no edit command, and the final workspace has no change" if unchanged(t) and not tries(t) else None

    def wrong_file(t):
        if gold is None or not t.verdict:
            return None  # without the gold patch there is nothing to compare with
        extra = [p for p in patch_paths(t.verdict.patch) if p not in gold]
        return f"edited {', '.join(extra[:3])}; the gold patch touches {', '.join(sorted(gold)[:3])}" if extra else None

    def never_ran_tests(t):
        return None if any(TEST_COMMAND.search(c) for c in commands(t)) else "no test command among its commands"

    def failing(t):
        return [k for k, v in (t.verdict.tests.items() if t.verdict else []) if v.outcome != "passed"]

    def submitted(t):
        first = failing(t)[:1] or ["(no test listed)"]  # a verdict without per-test results
        return f"{len(failing(t))} tests fail, e.g. {first[0]}" if t.exit_status == "submitted" else None

    def step_limit(t):
        return f"{len(t.steps)} steps; {len(failing(t))} tests fail" if t.exit_status == "step_limit" else None

    def cancelled(t):
        return (t.exit_message or "cancelled") if t.exit_status == "cancelled" else None

    return {"error": error, "cancelled": cancelled, "format_errors": fmt, "repeated": repeated,
            "edit_failed": edit_failed, "never_edited": never_edited, "wrong_file": wrong_file,
            "never_ran_tests": never_ran_tests, "submitted_failing": submitted, "step_limit_failing": step_limit}


def classify(traj: Trajectory, task: Task | Problem | None = None) -> dict:
    """{task_id, sample, category, reason, signals: {category: evidence}} for one trajectory."""
    key = {"task_id": traj.task_id, "sample": traj.sample}
    if traj.resolved:
        return {**key, "category": RESOLVED, "reason": "the tests pass", "signals": {}}
    signals = {name: why for name, rule in _rules(task).items() if (why := rule(traj)) is not None}
    # every exit status is covered by one rule (error, format_errors, submitted, step_limit, cancelled), so an
    # unresolved trajectory always gets a category
    category = next(iter(signals))
    first = first_error(traj, task).row() if isinstance(task, Task) else None
    return {**key, "category": category, "reason": signals[category], "signals": signals, "first_error": first}


def fingerprint(traj: Trajectory) -> str:
    """Names one attempt: a judge's answer carries over to the next classification only while it is the same one."""
    return hashlib.sha256(traj.model_dump_json().encode()).hexdigest()[:16]


def classify_run(run: str | Path, tasks: str | Path | None = None, judge: Judge | None = None) -> list[dict]:
    """Classify the latest attempt of every (task, sample) of RUN and write RUN/failures.jsonl (complete, or not at
    all). JUDGE, if given, is asked about every failed trajectory it has not answered before (oec.viewer.judge)."""
    run = Path(run)
    trajs = read_trajectories(run)
    if not trajs:
        raise InputError(f"{run}: no trajectories to classify (is this a run directory written by `oec collect`?)")
    try:
        by_id = tasks_of_run(run, tasks)
    except InputError:  # without the tasks only the gold-patch rule is lost; the others need the trajectory alone
        by_id = {}
    before = read_failures(run)
    rows = []
    for t in trajs:
        row = {**classify(t, by_id.get(t.task_id)), "attempt": fingerprint(t)}
        old = before.get(t.key, {})
        if "judge" in old and old.get("attempt") == row["attempt"]:
            row["judge"] = old["judge"]
        if judge is not None and row["category"] != RESOLVED and row.get("judge", {}).get("judge") != judge.spec:
            row["judge"] = judge(t, by_id.get(t.task_id))
        rows.append(row)
    try:
        write_jsonl(run / FAILURES, rows)
    except OSError as e:  # a read-only run directory: the categories are still shown, just not stored
        warnings.warn(f"{run / FAILURES}: not written ({e.strerror})", stacklevel=2)
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Written under a temporary name and renamed, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, path)


def read_failures(run: str | Path) -> dict[tuple[str, int], dict]:
    """(task_id, sample) -> its row of RUN/failures.jsonl ({} if the run was never classified)."""
    path = Path(run) / FAILURES
    if not path.exists():
        return {}
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {(r["task_id"], r["sample"]): r for r in rows}


def table(rows: list[dict]) -> dict[str, int]:
    """category -> count, in the order of CATEGORIES, resolved first; categories with no trajectory left out."""
    counts = Counter(r["category"] for r in rows)
    return {c: counts[c] for c in (RESOLVED, *CATEGORIES) if counts[c]}


def render(rows: list[dict], run: str | Path = "") -> str:
    n = len(rows)
    failed = [r for r in rows if r["category"] != RESOLVED]
    lines = [f"failure categories{f' of {run}' if run else ''}: {len(failed)} of {n} trajectories failed",
             f"  {'category':<20}{'n':>5}{'share':>8}  meaning"]
    for cat, k in table(rows).items():
        meaning = CATEGORIES.get(cat, "the tests pass")
        lines.append(f"  {cat:<20}{k:>5}{k / n:>8.0%}  {meaning}")
    firsts = Counter(r["first_error"]["kind"] for r in failed if r.get("first_error"))
    if firsts["slip"] + firsts["decision"]:
        kinds = Counter(r["first_error"]["category"] for r in failed if r.get("first_error"))
        lines.append(f"first errors: {firsts['slip']} slips, {firsts['decision']} decisions "
                     f"({', '.join(f'{c} {k}' for c, k in kinds.most_common() if c != 'none')})")
    judged = [r for r in rows if "judge" in r]
    if judged:
        lines.append(f"LLM judge ({len(judged)} failed trajectories):")
        verdicts = Counter(r["judge"].get("category") or "unparsed" for r in judged)
        lines += [f"  {cat:<20}{k:>5}" for cat, k in verdicts.most_common()]
    return "\n".join(lines)
