"""Collection end to end: schedules, determinism, resume, and errors on bad input."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from oec.core.config import load_config
from oec.core.errors import InputError
from oec.core.metrics import summarize
from oec.core.store import read_trajectories
from oec.rollout.collect import CollectConfig, collect
from oec.tasks.io import load_tasks, write_tasks

# needs the system tools `make test` installs (bubblewrap, podman or chromium): not in `make test-fast`
pytestmark = pytest.mark.tools


def _collect(tasks_file, out, **kw):
    cfg = CollectConfig(tasks=str(tasks_file), out=str(out), workers=kw.pop("workers", 4), **kw)
    collect(cfg, progress=False)
    return read_trajectories(out)


def test_oec_switches_once_and_the_expert_recovers(tasks_file, tmp_path):
    trajs = _collect(tasks_file, tmp_path / "oec", mode="oec", student="scripted:noisy", samples=2)
    assert len(trajs) == 12
    assert sum(t.resolved for t in trajs) / len(trajs) >= 0.95
    for t in trajs:
        k = t.switch_turn
        assert k is not None and t.switch_info["probe_length"] > k
        assert [s.actor for s in t.steps] == ["student"] * k + ["expert"] * (len(t.steps) - k)
        assert t.policies == {"student": "scripted:noisy", "expert": "scripted:expert"}


def test_late_and_fixed_samplers(tasks_file, tmp_path):
    trajs = _collect(tasks_file, tmp_path / "fixed", mode="oec", student="scripted:noisy", switch="fixed:2")
    assert {t.switch_turn for t in trajs} == {2}
    late = _collect(tasks_file, tmp_path / "late", mode="oec", student="scripted:noisy", switch="late:8,1", samples=2)
    rel = [t.switch_turn / t.switch_info["probe_length"] for t in late]
    assert sum(rel) / len(rel) > 0.6


def test_dagger_labels_every_student_step(tasks_file, tmp_path):
    trajs = _collect(tasks_file, tmp_path / "dagger", mode="dagger", student="scripted:noisy", beta=0.3)
    steps = [s for t in trajs for s in t.steps]
    assert {s.actor for s in steps} == {"student", "expert"}
    assert all((s.label is not None) == (s.actor == "student") for s in steps)
    assert all(s.label.output.startswith("THOUGHT") for s in steps if s.label)
    assert all(t.switch_turn is None for t in trajs)


def test_same_seed_same_trajectories_whatever_the_workers(tasks_file, tmp_path):
    a = _collect(tasks_file, tmp_path / "a", mode="oec", student="scripted:noisy", seed=7, workers=1)
    b = _collect(tasks_file, tmp_path / "b", mode="oec", student="scripted:noisy", seed=7, workers=4)
    c = _collect(tasks_file, tmp_path / "c", mode="oec", student="scripted:noisy", seed=8, workers=4)
    key = lambda t: t.key  # noqa: E731
    assert [t.canonical() for t in sorted(a, key=key)] == [t.canonical() for t in sorted(b, key=key)]
    assert [t.canonical() for t in sorted(a, key=key)] != [t.canonical() for t in sorted(c, key=key)]


def test_resume_skips_finished_pairs_and_isolates_a_cut_line(tasks_file, tmp_path):
    out = tmp_path / "run"
    cfg = CollectConfig(tasks=str(tasks_file), out=str(out), mode="expert", samples=2)
    collect(cfg, progress=False)
    lines = (out / "trajectories.jsonl").read_text().splitlines(keepends=True)
    # simulate a crash after 5 episodes, the 6th half-written
    (out / "trajectories.jsonl").write_text("".join(lines[:5]) + lines[5][: len(lines[5]) // 2])
    with pytest.warns(UserWarning, match="cut short"):
        result = collect(cfg, progress=False)
    assert result["written"] == 7
    with pytest.warns(UserWarning, match="line 6: ignored"):
        trajs = read_trajectories(out)
    assert sorted(t.key for t in trajs) == sorted({(t.task_id, s) for t in load_tasks(tasks_file) for s in range(2)})
    assert len(trajs) == 12
    assert collect(cfg, progress=False)["written"] == 0


def test_a_finished_run_is_resumed_without_building_its_policies(tiny_model, train_tasks, tmp_path):
    """Nothing left to run: the rerun checks the config and loads no model (here the student's directory is gone, so
    loading it would fail), as an experiment or DAgger rerun skips every finished evaluation."""
    import shutil

    model = shutil.copytree(tiny_model, tmp_path / "model")
    cfg = CollectConfig(tasks=str(write_tasks(train_tasks[:2], tmp_path / "t.jsonl")), out=str(tmp_path / "run"),
                        mode="student", student=f"local:{model}?max_new_tokens=8", loop={"step_limit": 1})
    assert collect(cfg, progress=False)["written"] == 2
    shutil.rmtree(model)
    assert collect(cfg, progress=False) | {"run": ""} == {"run": "", "written": 0, "skipped_done": 2, "remaining": 0,
                                                          "interrupted": False, "retried": 0}
    with pytest.raises(InputError, match="differs in: loop"):
        collect(cfg.model_copy(update={"loop": {"step_limit": 2}}), progress=False)


def test_a_run_directory_refuses_another_config(tasks_file, tmp_path):
    collect(CollectConfig(tasks=str(tasks_file), out=str(tmp_path / "r")), progress=False)
    with pytest.raises(InputError, match="differs in: mode"):
        collect(CollectConfig(tasks=str(tasks_file), out=str(tmp_path / "r"), mode="student",
                              student="scripted:noisy"), progress=False)


def test_bad_inputs_name_file_line_and_field(tmp_path, train_tasks):
    bad = tmp_path / "bad.jsonl"
    good = train_tasks[0].model_dump_json()
    bad.write_text(good + "\n{not json\n")
    with pytest.raises(InputError, match=r"bad.jsonl line 2: not valid JSON"):
        load_tasks(bad)
    data = json.loads(good)
    del data["problem_statement"]
    bad.write_text(good + "\n" + json.dumps(data) + "\n")
    with pytest.raises(InputError, match=r"line 2: problem_statement: Field required"):
        load_tasks(bad)
    with pytest.raises(InputError, match=r"loop.step_limt.*unknown key"):
        load_config(CollectConfig, None, {"tasks": "t", "out": "o"}, ["loop.step_limt=3"])
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("tasks: t\nout: o\nloop: {step_limit: 5}\n")
    assert load_config(CollectConfig, cfg_file, {"mode": "expert"}, ["env.output_limit=500"]).loop.step_limit == 5
    # `1e-4` is a number, in a file and in an override (PyYAML alone reads it as a string, and TRL then fails)
    from oec.core.config import load_yaml, parse_overrides

    assert parse_overrides(["trl.learning_rate=1e-4", "x=3E5", "y=abc", "z=1_000"]) == \
        {"trl": {"learning_rate": 1e-4}, "x": 3e5, "y": "abc", "z": 1000}
    assert load_yaml("lr: 5e-5\nname: 1e\n") == {"lr": 5e-5, "name": "1e"}


def test_a_task_that_cannot_be_materialised_is_recorded_not_fatal(tmp_path, train_tasks):
    broken = train_tasks[0].model_copy(update={"task_id": "broken", "repo": train_tasks[0].repo.model_copy(
        update={"files": {**train_tasks[0].repo.files, "../escape.py": "x = 1\n"}})})
    path = write_tasks([broken, train_tasks[1]], tmp_path / "t.jsonl")
    trajs = {t.task_id: t for t in _collect(path, tmp_path / "r")}
    assert trajs["broken"].exit_status == "error" and "escapes the workspace" in trajs["broken"].exit_message
    assert trajs[train_tasks[1].task_id].resolved


def test_format_errors_become_observations(tasks_file, tmp_path):
    trajs = _collect(tasks_file, tmp_path / "s", mode="student", student="scripted:noisy?error_rate=0.6")
    errs = [s for t in trajs for s in t.steps if s.format_error]
    assert errs and all(s.action is None and "Format error" in s.observation for s in errs)
    summary = summarize(tmp_path / "s")
    assert summary["n"] == 6 and summary["format_errors"] == len(errs)


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume(tasks_file, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "oec", "collect", "--tasks", str(tasks_file), "--mode", "oec",
           "--student", "scripted:noisy", "--samples", "3", "--workers", "4", "--out", str(out), "--quiet"]
    rng = random.Random(0)
    for _ in range(4):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(rng.uniform(1.0, 4.0))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    subprocess.run(cmd, check=True, capture_output=True)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trajs = read_trajectories(out)
    keys = [t.key for t in trajs]
    assert len(keys) == len(set(keys)) == 6 * 3


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_the_rerun_completes(tasks_file, tmp_path):
    out = tmp_path / "interrupted"
    cmd = [sys.executable, "-m", "oec", "collect", "--tasks", str(tasks_file), "--mode", "oec",
           "--student", "scripted:noisy?latency=0.05", "--samples", "2", "--workers", "2", "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120  # interrupt once the first episode is written, however loaded the machine
    while not (out / "trajectories.jsonl").exists() or not (out / "trajectories.jsonl").read_text().strip():
        assert time.monotonic() < deadline and proc.poll() is None, "no episode finished"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "run the same command to resume" in stdout and "Traceback" not in stderr
    done = len(read_trajectories(out))
    assert 0 < done < 12
    subprocess.run(cmd, check=True, capture_output=True)
    keys = [t.key for t in read_trajectories(out)]
    assert len(keys) == len(set(keys)) == 12


def test_two_writers_on_one_run_directory_are_refused(tmp_path):
    from oec.core.store import TrajectoryWriter

    first = TrajectoryWriter(tmp_path / "trajectories.jsonl")
    with pytest.raises(InputError, match="another `oec collect` is writing"):
        TrajectoryWriter(tmp_path / "trajectories.jsonl")
    first.close()
    TrajectoryWriter(tmp_path / "trajectories.jsonl").close()


def test_test_files_must_be_in_the_repo(train_tasks, tmp_path):
    data = json.loads(train_tasks[0].model_dump_json())
    data["test_files"].append("tests/test_nowhere.py")
    (tmp_path / "t.jsonl").write_text(json.dumps(data) + "\n")
    with pytest.raises(InputError, match=r"t.jsonl line 1: .*tests/test_nowhere.py.*not in repo.files"):
        load_tasks(tmp_path / "t.jsonl")
