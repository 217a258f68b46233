"""`oec dagger`: beta schedules, aggregated data whose targets are the expert's labels, checkpoints, resuming."""

import csv

import pytest
import yaml
from conftest import trained_texts as _trained_texts
from typer.testing import CliRunner

from oec.cli.main import app
from oec.core.config import load_config
from oec.core.errors import InputError
from oec.core.store import read_trajectories
from oec.experiments.dagger import COLUMNS, DaggerConfig, run_dagger
from oec.tasks.io import write_tasks
from oec.tasks.toy import generate

# needs the system tools `make test` installs (bubblewrap, podman or chromium): not in `make test-fast`
pytestmark = pytest.mark.tools


def test_beta_schedules():
    lin = DaggerConfig(tasks="t", student="m", out="o", rounds=4, beta=1.0)
    assert [lin.beta_at(r) for r in range(4)] == [1.0, 0.75, 0.5, 0.25]
    exp = DaggerConfig(tasks="t", student="m", out="o", rounds=3, beta=0.8, schedule="exponential", decay=0.5)
    assert [exp.beta_at(r) for r in range(3)] == pytest.approx([0.8, 0.4, 0.2])


@pytest.mark.parametrize("overrides, named", [
    (["roundz=3"], "roundz"),
    (["collect.loop.step_limt=5"], r"collect\.loop\.step_limt: .*unknown key"),
    (["filter.max_repeat=2"], r"filter\.max_repeat: .*unknown key"),
    (["collect.beta=0.3"], "collect: .*beta"),
    (["schedule=cosine"], "schedule"),
    (["student_options=max_new_tokenz=5"], "student_options: .*max_new_tokenz"),  # before round 0 writes dagger.json
    (["student_options=temperature=1"], "student_options: .*set by the runner"),
])
def test_bad_config_names_the_key(overrides, named):
    with pytest.raises(InputError, match=named):
        load_config(DaggerConfig, None, {"tasks": "t", "student": "m", "out": "o"}, overrides)


def test_rounds_aggregate_labels_and_resume(tmp_path, train_tasks, tiny_model):
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = DaggerConfig(
        tasks=str(write_tasks(train_tasks[:3], tmp_path / "train.jsonl")),
        heldout=str(write_tasks(generate("heldout", 2, seed=1), tmp_path / "heldout.jsonl")),
        student=str(tiny_model), out=str(tmp_path / "dagger"), rounds=2, beta=1.0, workers=3,
        train={"max_steps": 2, "per_device_train_batch_size": 2, "logging_steps": 1},
        # an untrained student rambles: few steps, short replies keep the test fast
        collect={"loop": {"step_limit": 5}}, student_options="max_new_tokens=24",
    )
    lines = []
    rows = run_dagger(cfg, progress=False, log=lines.append)
    out = tmp_path / "dagger"
    assert len(lines) == 2 * 5 and not any("done before" in line for line in lines)  # one line per stage

    assert [r["beta"] for r in rows] == [1.0, 0.5]  # linear over 2 rounds from 1
    for r, row in enumerate(rows):
        trajs = read_trajectories(out / f"round-{r:03d}/collect")
        assert {t.mode for t in trajs} == {"dagger"} and len(trajs) == 3
        assert [t.switch_info["beta"] for t in trajs] == [row["beta"]] * 3  # what the schedule actually used
    r0 = read_trajectories(out / "round-000/collect")
    assert all(s.actor == "expert" and s.label is None for t in r0 for s in t.steps)  # beta 1: the expert alone

    # round 1 trains on the aggregate: every round-0 example is in it again, plus round 1's labels
    d0, d1 = load_from_disk(str(out / "round-000/data")), load_from_disk(str(out / "round-001/data"))
    assert len(d1) > len(d0) and set(d1["run"]) == {str(out / "round-000/collect"), str(out / "round-001/collect")}
    assert sum(run == str(out / "round-000/collect") for run in d1["run"]) == len(d0)

    # the targets at the student's states are the expert's labels, rendered as the student's replies
    tok = AutoTokenizer.from_pretrained(tiny_model)
    r1 = {t.key: t for t in read_trajectories(out / "round-001/collect")}
    labels = [s for t in r1.values() for s in t.steps if s.actor == "student" and s.label and s.label.action]
    assert labels and rows[1]["labels"] >= len(labels)
    checked = 0
    for row in d1:
        if row["run"].endswith("round-001/collect") and row["turn"] >= 0:
            step = r1[row["task_id"], row["sample"]].steps[row["turn"]]
            if step.actor == "student":
                assert _trained_texts(row, tok)[-1] == step.label.output + "<|end|>"
                checked += 1
    assert checked == len(labels)

    # checkpoints load, and training moved them away from the warm start (each round starts from it)
    warm = AutoModelForCausalLM.from_pretrained(tiny_model)
    for r in range(2):
        model = AutoModelForCausalLM.from_pretrained(out / f"round-{r:03d}/ckpt")
        assert any((a != b).any() for a, b in zip(model.parameters(), warm.parameters()))
        evals = read_trajectories(out / f"round-{r:03d}/eval")
        assert len(evals) == 2  # evaluated with the same options as the rollouts (the arms' evals are compared)
        assert all(t.policies["student"].endswith("?temperature=0&max_new_tokens=24") for t in evals)
    rolled = read_trajectories(out / "round-001/collect")
    assert all(t.policies["student"].endswith("?temperature=0.7&max_new_tokens=24") for t in rolled)

    with (out / "rounds.csv").open() as f:
        table = list(csv.DictReader(f))
    assert [int(r["round"]) for r in table] == [0, 1] and list(table[0]) == COLUMNS
    assert int(table[1]["examples"]) == len(d1) and 0 <= float(table[1]["resolve_rate"]) <= 1
    assert int(table[1]["expert_calls"]) > int(table[0]["expert_calls"]) > 0  # summed over rounds

    # a rerun of the same config (here through the CLI) does nothing new
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name not in
              ("filter.jsonl", "filter.json", "rounds.csv", "dagger.json", "tasks.jsonl", "manifest.json")}
    config = tmp_path / "dagger.yaml"
    config.write_text(yaml.safe_dump(cfg.model_dump()))
    result = CliRunner().invoke(app, ["dagger", "--config", str(config), "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.output.count("(done before)") == 8 and "rounds.csv" in result.output
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert not any(p.is_file() for p in out.rglob("*") if p not in stamps and p.name not in
                   ("filter.jsonl", "filter.json", "rounds.csv", "dagger.json", "tasks.jsonl", "manifest.json"))
    with (out / "rounds.csv").open() as f:
        assert list(csv.DictReader(f)) == table

    # another config in the same directory is refused instead of mixing two experiments
    result = CliRunner().invoke(app, ["dagger", "--config", str(config), "rounds=3"])
    assert result.exit_code == 2 and "differs in: rounds" in result.output
