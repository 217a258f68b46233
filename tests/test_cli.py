"""The `oec` command as a user runs it (subprocesses, real sandbox)."""

import json
import subprocess
import sys

import pytest

# needs the system tools `make test` installs (bubblewrap, podman or chromium): not in `make test-fast`
pytestmark = pytest.mark.tools

OEC = [sys.executable, "-m", "oec"]


def oec(*args, check=True):
    return subprocess.run(OEC + [str(a) for a in args], capture_output=True, text=True, check=check)


def test_generate_collect_show(tmp_path):
    tasks = tmp_path / "tasks/train.jsonl"
    assert "wrote 4 toy/train tasks" in oec("tasks", "generate", "--suite", "toy", "--split", "train", "--n", 4,
                                            "--seed", 0, "--out", tasks).stdout
    lines = tasks.read_text().splitlines()
    assert len(lines) == 4 and \
        {"task_id", "split", "problem_statement", "FAIL_TO_PASS", "PASS_TO_PASS"} <= set(json.loads(lines[0]))
    out = oec("collect", "--tasks", tasks, "--mode", "oec", "--student", "scripted:noisy", "--expert",
              "scripted:expert", "--switch", "uniform", "--samples", 2, "--workers", 4, "--out", tmp_path / "oec",
              "--quiet", "loop.step_limit=25").stdout
    assert "resolved" in out and "switch turn" in out
    summary = json.loads(oec("show", tmp_path / "oec", "--json").stdout)
    assert summary["n"] == 8 and {"resolved", "resolve_rate", "by_exit_status"} <= set(summary)
    manifest = json.loads((tmp_path / "oec/manifest.json").read_text())
    assert manifest["config"]["loop"]["step_limit"] == 25 and manifest["versions"]["oec"]
    traj = json.loads((tmp_path / "oec/trajectories.jsonl").read_text().splitlines()[0])
    assert {"task_id", "sample", "mode", "switch_turn", "steps", "exit_status", "verdict"} <= set(traj)
    assert {"actor", "action", "observation"} <= set(traj["steps"][0])
    assert isinstance(traj["verdict"]["resolved"], bool) and traj["verdict"]["tests"]


@pytest.mark.parametrize("args,needle", [
    (["collect", "--tasks", "nope.jsonl", "--out", "x"], "nope.jsonl: no such tasks file"),
    (["collect", "--tasks", "t.jsonl", "--out", "x", "lop.step_limit=3"],
     "lop: Extra inputs are not permitted (unknown key"),
    (["collect", "--tasks", "t.jsonl", "--out", "x", "--mode", "oec"], "needs --student"),
    (["collect", "--tasks", "t.jsonl", "--out", "x", "--mode", "oec", "--student", "scripted:noisy",
      "--switch", "sometimes"], "unknown --switch"),
    (["tasks", "generate", "--out", "t.jsonl", "--hops", "9"], "hops"),
    (["show", "nowhere"], "no trajectories.jsonl"),
])
def test_errors_are_clear_and_exit_2(tmp_path, args, needle, train_tasks):
    (tmp_path / "t.jsonl").write_text(train_tasks[0].model_dump_json() + "\n")
    r = subprocess.run(OEC + args, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr


def test_unknown_cli_option_is_rejected(tmp_path):
    r = oec("collect", "--taks", "x", check=False)
    assert r.returncode == 2 and "--taks" in r.stderr


def test_student_init_then_collect_with_the_local_student(tmp_path):
    """In this process (CliRunner): what is under test is the commands, and two more interpreters would each spend
    ~8 s of CPU importing torch and transformers (the other tests here run `oec` as a subprocess)."""
    from typer.testing import CliRunner

    from oec.cli.main import app

    def run(*args):
        r = CliRunner().invoke(app, [str(a) for a in args])
        assert r.exit_code == 0, (r.output, r.exception)
        return r.stdout

    tasks = tmp_path / "train.jsonl"
    run("tasks", "generate", "--n", 5, "--out", tasks)
    out = run("student", "init", "--tasks", tasks, "--out", tmp_path / "tiny", "hidden_size=64", "layers=2",
              "heads=2", "vocab_size=800", "context=1024")
    assert "parameters" in out and (tmp_path / "tiny/model.safetensors").exists()
    run("collect", "--tasks", tasks, "--mode", "student", "--student", f"local:{tmp_path / 'tiny'}?max_new_tokens=16",
        "--out", tmp_path / "s0", "--quiet", "loop.step_limit=3")
    trajs = [json.loads(line) for line in (tmp_path / "s0/trajectories.jsonl").read_text().splitlines()]
    assert len(trajs) == 5
    assert all(s["completion"]["prompt_tokens"] > 0 and s["completion"]["completion_tokens"] > 0
               for t in trajs for s in t["steps"])
    summary = json.loads(run("show", tmp_path / "s0", "--json"))
    assert summary["tokens"]["student"]["completion_tokens"] == sum(
        s["completion"]["completion_tokens"] for t in trajs for s in t["steps"])
    r = CliRunner().invoke(app, ["student", "init", "--tasks", str(tasks), "--out", str(tmp_path / "x"),
                                 "hiden_size=3"])
    assert r.exit_code == 2 and "hiden_size" in r.stderr


@pytest.mark.parametrize("verb,model,fields", [
    (["eval"], "oec.rollout.collect:CollectConfig", ["tasks", "out", "samples", "workers", "seed"]),
    (["tasks", "generate"], "oec.tasks.toy:ToyConfig", ["modules", "hops", "shapes", "mutation_kinds"]),
    (["tasks", "mutate"], "oec.tasks.mutate:MutateConfig", ["repo", "n", "kinds", "per_function", "test_timeout"]),
])
def test_verb_options_come_from_their_config(verb, model, fields):
    """One default and one description per setting: the option's help is the config field's (`--test-timeout` of
    `tasks mutate` once could not be set at all; `eval` once defaulted to 8 workers where CollectConfig says 4)."""
    import importlib

    from pydantic_core import PydanticUndefined
    from typer.testing import CliRunner

    from oec.cli.main import app

    module, _, name = model.partition(":")
    config = getattr(importlib.import_module(module), name)
    text = " ".join(CliRunner().invoke(app, [*verb, "--help"], env={"COLUMNS": "400"}).output.split())
    for field in fields:
        info = config.model_fields[field]
        assert f"--{field.replace('_', '-')}" in text, field
        assert " ".join(info.description.split())[:40] in text, field
        if info.default not in (None, PydanticUndefined) and info.default_factory is None:
            shown = ",".join(info.default) if isinstance(info.default, list) else info.default
            assert f"(default: {shown})" in text, field
