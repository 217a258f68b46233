"""Failure categories: one hand-built trajectory per category is named by the classifier; the categories of a real
collection are stored beside it in failures.jsonl (the trajectories file untouched) and shown by `oec show`."""

import base64
import hashlib
import json
import shutil
from collections import Counter

import pytest
from test_report import DOM
from typer.testing import CliRunner

from oec.cli.main import app
from oec.core.store import read_trajectories
from oec.core.types import Action, Step, TestResult, Trajectory, Verdict
from oec.experiments.report import write_report
from oec.rollout.collect import CollectConfig, collect
from oec.tasks.io import write_tasks
from oec.viewer.failures import CATEGORIES, FAILURES, RESOLVED, classify, classify_run, read_failures
from oec.viewer.failures_report import COLOURS

# needs the system tools `make test` installs (bubblewrap, podman or chromium): not in `make test-fast`
pytestmark = pytest.mark.tools

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJ"
                       "RU5ErkJggg==")


def _step(turn, command=None, submit=False, format_error=False):
    action = Action(kind="submit") if submit else None if format_error else Action(kind="bash", command=command)
    return Step(turn=turn, actor="student", output=command or "?", action=action, format_error=format_error,
                observation="Format error" if format_error else "ok")


def _traj(task, steps, exit_status, patch="", failing=True, error=None, message=""):
    tests = {t: TestResult(outcome="failed" if failing else "passed") for t in task.FAIL_TO_PASS}
    verdict = Verdict(resolved=not failing, tests=tests, patch=patch, error=error)
    return Trajectory(task_id=task.task_id, sample=0, mode="student", policies={"student": "hand"}, steps=steps,
                      exit_status=exit_status, exit_message=message, verdict=verdict, seed=0)


def _diff(path):
    return f"--- a/{path}\n+++ b/{path}\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"


@pytest.fixture
def task(train_tasks):
    return train_tasks[0]


def test_one_hand_built_trajectory_per_category(task):
    gold = _diff(task.gold_patch.splitlines()[0].removeprefix("--- a/"))
    wrong = _diff("tests/test_other.py")
    edit = [_step(0, "cat pkg/a.py"), _step(1, "edit pkg/a.py <<'EOF'\nx\n=======\ny\nEOF")]
    cases = {
        "error": _traj(task, edit[:1], "error", message="PolicyError: HTTP 500, gave up after 3 attempts"),
        "format_errors": _traj(task, [_step(i, format_error=True) for i in range(3)], "format_errors",
                               message="3 format errors in a row"),
        "repeated": _traj(task, [_step(i, "cat pkg/a.py") for i in range(12)], "step_limit"),
        "edit_failed": _traj(task, [_step(0, "runtests"), edit[1], _step(2, submit=True)], "submitted"),
        "never_edited": _traj(task, [_step(0, "runtests"), _step(1, "cat pkg/a.py > /dev/null"), _step(2, submit=True)],
                              "submitted"),
        "wrong_file": _traj(task, [*edit, _step(2, "runtests"), _step(3, submit=True)], "submitted", wrong),
        "never_ran_tests": _traj(task, [*edit, _step(2, submit=True)], "submitted", gold),
        "submitted_failing": _traj(task, [*edit, _step(2, "runtests"), _step(3, submit=True)], "submitted", gold),
        "step_limit_failing": _traj(task, [*edit, *(_step(i, f"runtests -k t{i}") for i in range(2, 12))],
                                    "step_limit", gold),
        "cancelled": _traj(task, edit, "cancelled", gold, message="stopped by the user"),
    }
    assert set(cases) == set(CATEGORIES)
    named = {name: classify(t, task)["category"] for name, t in cases.items()}
    assert named == {name: name for name in cases}
    # the headline is one category; the other rules that hold stay as signals
    assert set(classify(cases["repeated"], task)["signals"]) == {"repeated", "never_edited", "never_ran_tests",
                                                                "step_limit_failing"}
    assert classify(cases["edit_failed"], task)["reason"].startswith("1 edits tried, none left a change")
    assert "never_edited" not in classify(cases["edit_failed"], task)["signals"]
    resolved = _traj(task, [*edit, _step(2, "runtests"), _step(3, submit=True)], "submitted", gold, failing=False)
    assert classify(resolved, task)["category"] == RESOLVED
    # a verifier that could not judge the work is an environment error, whatever the agent did
    broken = _traj(task, edit, "submitted", gold, error="verification failed: TimeoutError")
    assert classify(broken, task)["category"] == "error"
    # without the task (no gold patch) the wrong-file rule cannot hold; the next one names it
    assert classify(cases["wrong_file"], None)["category"] == "submitted_failing"


def test_categories_are_stored_beside_a_real_run(tmp_path, train_tasks):
    tasks = write_tasks(train_tasks[:4], tmp_path / "t.jsonl")
    run = tmp_path / "exp/seed-0/bc/size-10/eval"  # where `oec experiment` keeps an arm's held-out run
    collect(CollectConfig(tasks=str(tasks), out=str(run), mode="student", student="scripted:noisy?error_rate=0.6",
                          samples=2, workers=4, loop={"step_limit": 6}), progress=False)
    before = hashlib.sha256((run / "trajectories.jsonl").read_bytes()).hexdigest()
    rows = classify_run(run)
    assert hashlib.sha256((run / "trajectories.jsonl").read_bytes()).hexdigest() == before
    stored = read_failures(run)
    assert len(rows) == len(stored) == 8 and {r["category"] for r in rows} <= {RESOLVED, *CATEGORIES}
    resolved = {t.key: t.resolved for t in read_trajectories(run)}
    assert all((r["category"] == RESOLVED) == resolved[(r["task_id"], r["sample"])] for r in rows)
    assert any(r["category"] != RESOLVED for r in rows)
    assert not (run / f"{FAILURES}.tmp").exists()
    out = CliRunner().invoke(app, ["show", str(run), "--failures", "--json"])
    assert out.exit_code == 0, out.output
    counts = json.loads(out.output)["failures"]
    assert sum(counts.values()) == 8 and counts == {c: n for c, n in counts.items() if n}
    text = CliRunner().invoke(app, ["show", str(run), "--failures"]).output
    failed = 8 - counts.get(RESOLVED, 0)
    assert "failure categories" in text and f"{failed} of 8 trajectories failed" in text


def test_bad_judge_spec_is_one_line_before_any_work(tmp_path):
    (tmp_path / "trajectories.jsonl").write_text("")
    out = CliRunner().invoke(app, ["show", str(tmp_path), "--judge", "scripted:expert"])
    assert out.exit_code == 2 and "--judge 'scripted:expert'" in out.output and not (tmp_path / FAILURES).exists()


def test_report_has_a_stacked_bar_per_arm(tmp_path, train_tasks):
    """The experiment report's failure section, from held-out runs laid out as `oec experiment` lays them out."""
    exp = tmp_path / "exp"
    tasks = write_tasks(train_tasks[:3], tmp_path / "t.jsonl")
    collect(CollectConfig(tasks=str(tasks), out=str(exp / "seed-0/bc/size-10/eval"), mode="student",
                          student="scripted:noisy?error_rate=0.7", workers=3, loop={"step_limit": 5}), progress=False)
    collect(CollectConfig(tasks=str(tasks), out=str(exp / "warm/eval"), mode="student", student="scripted:expert",
                          workers=3), progress=False)
    # DAgger: the last round's student is the arm's; round-10 comes after round-9
    shutil.copytree(exp / "warm/eval", exp / "seed-0/dagger/size-10/round-10/eval")
    shutil.copytree(exp / "seed-0/bc/size-10/eval", exp / "seed-0/dagger/size-10/round-9/eval")
    (exp / "results.csv").write_text("arm,size,seed,resolve_rate,ci_lo,ci_hi,expert_tokens\nbc,10,0,0.5,0.1,0.9,10\n")
    for name in ("scaling.png", "efficiency.png"):  # a runner's own plots: the report need not draw them
        (exp / name).write_bytes(PNG)
    dom = DOM(write_report(exp).read_text()).root
    bars = {b.attrs["data-arm"]: b for b in dom.by_id("failures").find(cls=("bar",))}
    assert sorted(bars) == ["bc", "dagger", "warm_start"] and set(COLOURS) == {RESOLVED, *CATEGORIES}
    want = {arm: Counter(r["category"] for r in read_failures(run).values())
            for arm, run in [("bc", exp / "seed-0/bc/size-10/eval"), ("warm_start", exp / "warm/eval"),
                             ("dagger", exp / "seed-0/dagger/size-10/round-10/eval")]}
    assert want["bc"] != want["warm_start"] and want["warm_start"] == {RESOLVED: 3}
    for arm, bar in bars.items():
        segs = {s.attrs["class"].removeprefix("cat-"): s for s in bar.find("span")}
        assert {c: int(s.attrs["title"].split(": ")[1].split(" of ")[0]) for c, s in segs.items()} == want[arm]
        widths = [float(s.attrs["style"].split("width:")[1].split("%")[0]) for s in segs.values()]
        assert sum(widths) == pytest.approx(100, abs=0.05)
