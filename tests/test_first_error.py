"""The first-error classifier on a real one-hop toy task: each kind of slip and decision, told apart by the turn it
happens at, on trajectories written by hand (the commands a student writes, the verdict the verifier would give)."""

from __future__ import annotations

import pytest

from oec.core.types import Action, Step, Trajectory, Verdict
from oec.tasks.io import generate_tasks
from oec.viewer.first_error import first_error


@pytest.fixture(scope="module")
def task():
    return generate_tasks("toy", "train", 1, seed=7, preset="multihop")[0]


def _episode(task, commands: list[str], patch: str = "", resolved: bool = False,
             actor: str = "student") -> Trajectory:
    steps = [Step(turn=i, actor=actor, output=c, action=Action(kind="bash", command=c),
                  observation="", returncode=0) for i, c in enumerate(commands)]
    return Trajectory(task_id=task.task_id, sample=0, mode="student", policies={}, steps=steps, exit_status="submitted",
                      verdict=Verdict(resolved=resolved, tests={}, patch=patch), seed=0)


def _diff(path: str) -> str:
    return f"diff --git a/{path} b/{path}\n--- a/{path}\n+++ b/{path}\n@@ -1 +1 @@\n-a\n+b\n"


def test_each_first_error_is_named_with_its_kind_and_turn(task):
    buggy = task.meta["buggy_file"]
    wrapper = next(p for p, c in task.repo.files.items() if f"def {task.meta['chain'][0]}(" in c)  # the issue's
    cases = {
        ("slip", "missing_path", 1): (["python -m pytest -q", "cat lupo_peva/kepe.py"], ""),
        ("slip", "missing_function", 0): (["grep -rn 'def zime_sorra(' ."], ""),
        ("decision", "wrong_file", 2): ([f"grep -rn 'def {task.meta['chain'][0]}(' .", f"cat {wrapper}",
                                         f"sed -i 's/x/y/' {wrapper}", "cat lupo_peva/nope.py"], _diff(wrapper)),
        ("decision", "wrong_fix", 1): ([f"cat {buggy}", f"sed -i 's/hi - lo/hi + lo/' {buggy}"], _diff(buggy)),
        ("slip", "edit_missed", 1): ([f"cat {buggy}", f"sed -i 's/hi - lox/hi - lo + 1/' {buggy}"], ""),
        ("decision", "not_localised", 1): (["python -m pytest -q", f"cat {wrapper}"], ""),
        ("decision", "not_fixed", 1): (["python -m pytest -q", f"cat {buggy}"], ""),
        # a module the package does not have, written: a made-up name, not a new file on purpose
        ("slip", "missing_path", 0): (["cat > lupo_peva/kepe.py <<'EOF'\nx = 1\nEOF"], ""),
    }
    for (kind, category, turn), (commands, patch) in cases.items():
        got = first_error(_episode(task, commands, patch), task)
        assert (got.kind, got.category, got.turn) == (kind, category, turn), (commands, got)


def test_a_script_of_its_own_is_no_error_and_resolved_or_expert_turns_have_none(task):
    buggy = task.meta["buggy_file"]
    own = _episode(task, ["cat > reproduce.py <<'EOF'\nprint(1)\nEOF", "python reproduce.py", f"cat {buggy}"])
    assert first_error(own, task).category == "not_fixed"
    assert first_error(_episode(task, ["cat lupo_peva/kepe.py"], resolved=True), task).kind == "none"
    # the expert's turns are not the student's errors: a made-up path the expert read counts for nothing
    mixed = _episode(task, ["cat lupo_peva/kepe.py", f"cat {buggy}"])
    mixed = mixed.model_copy(update={"steps": [mixed.steps[0].model_copy(update={"actor": "expert"}), mixed.steps[1]]})
    assert first_error(mixed, task).category == "not_fixed"


def test_a_wrong_fix_before_a_later_slip_is_the_first_error(task):
    buggy = task.meta["buggy_file"]
    episode = _episode(task, [f"cat {buggy}", f"sed -i 's/hi - lo/hi + lo/' {buggy}", "cat lupo_peva/kepe.py"],
                       patch=_diff(buggy))
    got = first_error(episode, task)
    assert (got.kind, got.category, got.turn) == ("decision", "wrong_fix", 1)
