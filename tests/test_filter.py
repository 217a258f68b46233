"""`oec filter`: each filter on trajectories built to trip it, plus a real collected run."""

import json
import subprocess
import sys

import pytest

from oec.data.filter import FilterConfig, filter_run, kept_keys
from oec.core.store import TrajectoryWriter
from oec.tasks.io import InputError
from oec.core.types import Action, Step, Trajectory, Verdict


def _traj(i, cmds, resolved=True, status="submitted", patch="diff --git a/x b/x\n", fmt_errors=0):
    steps = [Step(turn=k, actor="expert", output="", action=Action(kind="bash", command=c), observation="")
             for k, c in enumerate(cmds)]
    steps += [Step(turn=len(steps) + k, actor="student", output="?", action=None, observation="Format error",
                   format_error=True) for k in range(fmt_errors)]
    steps.append(Step(turn=len(steps), actor="expert", output="", action=Action(kind="submit"), observation=""))
    return Trajectory(task_id=f"t{i}", sample=0, mode="oec", policies={}, steps=steps, exit_status=status, seed=0,
                      verdict=Verdict(resolved=resolved, tests={}, patch=patch))


CASES = {
    "clean": _traj(0, ["runtests", "cat a.py", "edit a.py", "runtests"]),
    "unresolved": _traj(1, ["runtests"], resolved=False),
    "repeat_consecutive": _traj(2, ["cat a.py"] * 3 + ["edit a.py"]),
    "repeat_total": _traj(3, ["ls", "edit a", "ls", "edit b", "ls", "edit c", "ls", "edit d", "ls"]),
    "read_only_run": _traj(4, ["cat a", "cat b", "grep x .", "ls", "head c", "tail d", "git diff", "sed -n 1p e",
                               "runtests", "edit a.py"]),
    "format_errors": _traj(5, ["edit a.py"], fmt_errors=3),
    "empty_patch": _traj(6, ["edit a.py"], patch=""),
    "step_limit": _traj(7, ["edit a.py"], status="step_limit"),
}


@pytest.fixture
def run(tmp_path):
    w = TrajectoryWriter(tmp_path / "trajectories.jsonl")
    for t in CASES.values():
        w.write(t)
    w.close()
    return tmp_path


def test_each_filter_rejects_its_case_alone_and_nothing_is_deleted(run):
    before = (run / "trajectories.jsonl").read_bytes()
    summary = filter_run(run)
    assert (run / "trajectories.jsonl").read_bytes() == before
    lines = {r["task_id"]: r for r in map(json.loads, (run / "filter.jsonl").read_text().splitlines())}
    for name, traj in CASES.items():
        expected = set() if name == "clean" else {name}
        assert set(lines[traj.task_id]["reasons"]) == expected, (name, lines[traj.task_id])
    assert summary["kept"] == 1 and summary["n"] == len(CASES)
    assert all(c == {"rejected": 1, "alone": 1} for name, c in summary["filters"].items() if name != "error")
    assert kept_keys(run) == {("t0", 0)}


def test_thresholds_and_switches(run):
    summary = filter_run(run, FilterConfig(require_resolved=False, max_read_only_run=None, max_repeat_total=10))
    assert "unresolved" not in summary["filters"] and "read_only_run" not in summary["filters"]
    assert summary["kept"] == 4


def test_cli_table_and_errors(run, tmp_path):
    out = subprocess.run([sys.executable, "-m", "oec", "filter", str(run), "max_read_only_run=12"], capture_output=True,
                         text=True, check=True).stdout
    assert "kept 2 of 8" in out and "read_only_run" in out
    r = subprocess.run([sys.executable, "-m", "oec", "filter", str(run), "max_raed=1"], capture_output=True, text=True)
    assert r.returncode == 2 and "max_raed" in r.stderr
    with pytest.raises(InputError, match="no trajectories"):
        filter_run(tmp_path / "empty")
