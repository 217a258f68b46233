"""The rollout loop's exits and the schedules, on the in-memory environment (oec.env.memory): milliseconds each,
no bubblewrap, no pytest run. The same loop runs on the real sandbox in test_collect.py, test_policies.py and
test_verify.py; here each exit is asserted directly."""

import random

import pytest

from oec.core.protocols import CommandResult
from oec.core.types import Completion, Verdict
from oec.env.memory import MemoryEnv
from oec.formats import TextFormat
from oec.rollout.loop import LoopConfig, rollout
from oec.rollout.policies import make_policy
from oec.rollout.policies.edits import edits_from_patch
from oec.rollout.schedules import make_schedule


class Lines:
    """A policy that says the given replies in order (then repeats the last one)."""

    def __init__(self, replies: list[str], spec: str = "lines"):
        self.replies, self.spec, self.format, self.seen = replies, spec, TextFormat(), []

    def act(self, messages, episode) -> Completion:
        self.seen.append(messages)
        return Completion(text=self.replies[min(len(self.seen) - 1, len(self.replies) - 1)])

    def close(self) -> None:
        pass


def bash(command: str) -> str:
    return f"THOUGHT: next.\n```bash\n{command}\n```"


SUBMIT = bash("submit")


def _run(task, env, policies, mode="student", switch="fixed:0", limit=10, stop=lambda: False, beta=0.5, seed=0):
    plan = make_schedule(mode, switch, beta).plan(task, policies, random.Random(seed), probe=None)
    return rollout(task, env, plan, mode=mode, seed=seed, config=LoopConfig(step_limit=limit, max_format_errors=3),
                   should_stop=stop)


@pytest.fixture
def task(train_tasks):
    return train_tasks[0]


def _fixed_files(task) -> dict[str, str]:
    files = dict(task.repo.files)
    for e in edits_from_patch(task.repo.files, task.gold_patch):
        files[e.path] = files[e.path].replace(e.old, e.new) if e.old else e.new
    return files


def test_submitted_runs_each_command_and_verifies_the_final_files(task):
    buggy = task.meta["buggy_file"]
    verdicts = []

    def verdict(files):
        verdicts.append(files)
        return Verdict(resolved=files == task.repo.files, tests={})

    with MemoryEnv(task, verdict=verdict) as env:
        traj = _run(task, env, {"student": Lines([bash(f"cat {buggy}"), bash("ls"), SUBMIT])})
    assert traj.exit_status == "submitted" and traj.resolved and len(verdicts) == 1
    assert [s.observation for s in traj.steps[:2]] == [task.repo.files[buggy], env.execute("ls").output]
    assert traj.steps[-1].action.kind == "submit" and env.commands[:2] == [f"cat {buggy}", "ls"]


def test_step_limit_ends_an_episode_that_never_submits(task):
    with MemoryEnv(task) as env:
        traj = _run(task, env, {"student": Lines([bash("ls")])}, limit=4)
    assert traj.exit_status == "step_limit" and len(traj.steps) == 4 and traj.verdict is not None


def test_format_errors_in_a_row_end_the_episode_and_a_good_reply_resets_the_count(task):
    with MemoryEnv(task) as env:
        traj = _run(task, env, {"student": Lines(["no block", "still none", bash("ls"), "x", "y", "z"])})
    assert traj.exit_status == "format_errors" and len(traj.steps) == 6
    assert [s.format_error for s in traj.steps] == [True, True, False, True, True, True]
    assert traj.steps[0].observation.startswith("Format error: found 0 bash blocks")
    assert env.commands == ["ls"]  # a reply that does not parse runs nothing


def test_a_stop_request_cancels_and_skips_verification(task):
    turns = iter(range(100))
    with MemoryEnv(task, verdict=lambda f: pytest.fail("a cancelled episode is not verified")) as env:
        traj = _run(task, env, {"student": Lines([bash("ls")])}, stop=lambda: next(turns) >= 2)
    assert traj.exit_status == "cancelled" and len(traj.steps) == 2 and traj.verdict is None


def test_an_environment_failure_is_an_error_exit_with_the_steps_kept(task):
    with MemoryEnv(task, fail_on=("pytest",)) as env:
        traj = _run(task, env, {"student": Lines([bash("ls"), bash("pytest")])})
    assert traj.exit_status == "error" and "RuntimeError: the environment broke on 'pytest'" in traj.exit_message
    assert len(traj.steps) == 1 and traj.verdict is not None  # what the agent left is still verified


def test_a_verifier_that_fails_gives_a_verdict_that_says_why(task):
    def broken(files):
        raise OSError("disk gone")

    with MemoryEnv(task, verdict=broken) as env:
        traj = _run(task, env, {"student": Lines([SUBMIT])})
    assert traj.exit_status == "submitted" and not traj.resolved
    assert traj.verdict.error == "verification failed: OSError: disk gone"


def test_oec_switch_hands_over_at_k_and_the_expert_finishes(task):
    """The scripted expert solves the toy task through the in-memory shell: grep, cat, edit, submit."""
    canned = {"runtests": CommandResult("FAILED tests/test_x.py::test_y - AssertionError\n1 failed\n", 1)}
    fixed = _fixed_files(task)
    student = Lines([bash("ls"), bash("echo lost")], spec="student")
    with MemoryEnv(task, canned=canned, verdict=lambda f: Verdict(resolved=f == fixed, tests={})) as env:
        traj = _run(task, env, {"student": student, "expert": make_policy("scripted:expert")}, mode="oec",
                    switch="fixed:2", limit=30)
    actors = [s.actor for s in traj.steps]
    assert actors[:2] == ["student", "student"] and set(actors[2:]) == {"expert"} and traj.switch_turn == 2
    assert traj.exit_status == "submitted" and traj.resolved, [s.action for s in traj.steps]
    assert any(c.startswith(f"edit {task.meta['buggy_file']}") for c in env.commands)


def test_dagger_labels_every_student_step_and_never_runs_the_labels(task):
    expert = Lines([bash("cat nowhere")], spec="expert")
    with MemoryEnv(task) as env:
        traj = _run(task, env, {"student": Lines([bash("ls")]), "expert": expert}, mode="dagger", beta=0.3, limit=12)
    students = [s for s in traj.steps if s.actor == "student"]
    assert students and all(s.label and s.label.action.command == "cat nowhere" for s in students)
    assert env.commands.count("cat nowhere") == len(traj.steps) - len(students)  # only the expert's own turns ran
    assert 0 < len(students) < 12


@pytest.mark.parametrize("run", [CommandResult("[command timed out after 10s and was killed]", None, timed_out=True),
                                 CommandResult("FAILED tests/test_x.py::test_y - assert 0\n1 failed", 1)],
                         ids=["timed-out", "failed"])
def test_the_scripted_expert_never_claims_a_test_run_it_did_not_see_pass(task, run):
    """Its words become training data: after a test run that timed out or failed, its submit says so."""
    with MemoryEnv(task, canned={"runtests": run}) as env:
        traj = _run(task, env, {"expert": make_policy("scripted:expert")}, mode="expert", limit=16)
    submit = traj.steps[-1]
    assert traj.exit_status == "submitted" and env.commands.count("runtests") >= 1
    assert "tests pass" not in submit.output and ("did not finish" if run.timed_out else "failures") in submit.output
