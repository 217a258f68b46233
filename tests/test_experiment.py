"""`oec experiment`: the whole comparison on a tiny config, end to end, with real collection, TRL training and
evaluation of real (tiny) students; and the claims arithmetic on hand-made results."""

import csv
import json
import subprocess
import sys

import pytest
import yaml

from oec.claims import claims, compare, difference, shift_claim
from oec.store import read_trajectories

TINY = {
    "name": "tiny",
    "suite": {"train": 6, "heldout": 3, "seed": 0, "knobs": {"hops": 0, "modules": 2, "functions_per_module": 2}},
    "student": {"hidden_size": 32, "layers": 1, "heads": 2, "vocab_size": 600, "context": 1024},
    "warm_start": {"trajectories": 3, "train": {"max_steps": 2}},
    "arms": [{"name": "bc", "kind": "bc"}, {"name": "on_policy", "kind": "on_policy"}, {"name": "oec", "kind": "oec"},
             {"name": "oec_bc", "kind": "oec_bc"}, {"name": "dagger", "kind": "dagger"}],
    "sizes": [2], "seeds": [0], "pool_samples": 1, "student_options": "max_new_tokens=24",
    "train": {"max_steps": 2, "per_device_train_batch_size": 2},
    "dagger": {"rounds": 2}, "collect": {"loop": {"step_limit": 8}}, "workers": 4, "shift": False,
}


@pytest.mark.slow
def test_a_tiny_experiment_runs_end_to_end_and_resumes(tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**TINY, "out": str(tmp_path / "run")}))
    cmd = [sys.executable, "-m", "oec", "experiment", str(config)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Saving the dataset" not in r.stdout + r.stderr  # one line per stage, no library progress bars between
    run = tmp_path / "run"
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert {"arm", "size", "seed", "resolve_rate", "ci_lo", "ci_hi", "expert_tokens"} <= set(rows[0])
    assert [r["arm"] for r in rows] == ["warm_start", "bc", "on_policy", "oec", "oec_bc", "dagger"]
    assert all(int(r["n"]) == 3 for r in rows)  # every student is evaluated on the same 3 held-out tasks
    evals = [t.exit_status for t in read_trajectories(run / "seed-0/bc/size-2/eval")]
    assert int(rows[1]["submitted"]) == evals.count("submitted")
    # every arm trained from the warm-start weights, with the same settings
    for arm in ("bc", "oec", "oec_bc"):
        info = json.loads((run / f"seed-0/{arm}/size-2/ckpt/oec_train.json").read_text())
        assert info["config"]["model"] == str(run / "warm/ckpt") and info["steps"] == 2
    claims_rows = list(csv.DictReader((run / "claims.csv").open()))
    assert [c["claim"] for c in claims_rows] == [f"C{i}" for i in range(1, 9)]
    assert all(c["verdict"] in {"reproduced", "not_reproduced", "inconclusive"} for c in claims_rows)
    assert (run / "report.html").exists() and (run / "scaling.png").exists()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)  # everything is done: nothing re-runs
    assert r.returncode == 0 and "collect " not in r.stdout and "student: initialised" not in r.stdout, r.stdout


def test_a_bad_experiment_config_names_the_key(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({**TINY, "arms": [{"name": "x", "kind": "bc", "swich": "late"}]}))
    r = subprocess.run([sys.executable, "-m", "oec", "experiment", str(config)], capture_output=True, text=True)
    assert r.returncode == 2 and "arms.0.swich" in r.stderr


def test_a_rerun_must_be_the_same_experiment_but_may_grow(tmp_path):
    """Stages resume by their outputs' paths, so a changed training config would mix old and new students."""
    from oec.experiment import Experiment, ExperimentConfig
    from oec.tasks import InputError

    base = {**TINY, "out": str(tmp_path / "run")}
    Experiment(ExperimentConfig(**base)).check_config()
    grown = {**base, "seeds": [0, 1], "sizes": [2, 4], "workers": 2,
             "arms": TINY["arms"] + [{"name": "x", "kind": "bc"}]}
    Experiment(ExperimentConfig(**grown)).check_config()  # more of the same experiment: fine, and recorded
    assert json.loads((tmp_path / "run/experiment.json").read_text())["config"]["seeds"] == [0, 1]
    for change, named in (({"train": {"max_steps": 3}}, "differs in: train"),
                          ({"suite": {**TINY["suite"], "heldout": 4}}, "differs in: suite"),
                          ({"arms": [{"name": "bc", "kind": "oec"}]}, r"differs in: arms\[bc\]")):
        with pytest.raises(InputError, match=named):
            Experiment(ExperimentConfig(**{**grown, **change})).check_config()


def rows_of(**arms):
    return [{"arm": a, "resolved": k, "n": n} for a, (k, n) in arms.items()]


def test_claims_verdicts_follow_the_intervals():
    d, lo, hi = difference((60, 100), (40, 100))
    assert d == pytest.approx(0.2) and lo > 0 and hi < 0.4
    rows = rows_of(warm_start=(30, 100), bc=(40, 100), on_policy=(31, 100), oec=(60, 100), oec_bc=(62, 100),
                   oec_all_turns=(20, 100), oec_no_filter=(58, 100), oec_late=(61, 100), dagger=(45, 100))
    arms = {"bc": {"kind": "bc"}, "on_policy": {"kind": "on_policy"},
            "oec": {"kind": "oec", "switch": "uniform", "mask": "expert", "filters": True},
            "oec_bc": {"kind": "oec_bc"}, "oec_all_turns": {"kind": "oec", "switch": "uniform", "mask": "all",
                                                             "filters": True},
            "oec_no_filter": {"kind": "oec", "switch": "uniform", "mask": "expert", "filters": False},
            "oec_late": {"kind": "oec", "switch": "late", "mask": "expert", "filters": True},
            "dagger": {"kind": "dagger"}}
    table = {c["claim"]: c for c in claims(rows, arms, None, None)}
    assert table["C2"]["verdict"] == "reproduced"  # 60% vs 40%
    assert table["C3"]["verdict"] == "inconclusive"  # 31% vs 30% of 100: a gain of 5 points is not ruled out
    assert claims(rows_of(warm_start=(300, 1000), on_policy=(301, 1000)), arms, None, None)[2]["verdict"] == \
        "reproduced"  # of 1000 it is
    assert claims(rows_of(warm_start=(300, 1000), on_policy=(360, 1000)), arms, None, None)[2]["verdict"] == \
        "not_reproduced"  # a significant gain
    # 0/50 vs 0/50 proves nothing (a normal interval would collapse to [0, 0] and call it certain)
    assert difference((0, 50), (0, 50))[1] < -0.05 and compare(rows_of(oec=(0, 50), bc=(0, 50)), "C2", "oec",
                                                                 "bc")["verdict"] == "inconclusive"
    assert table["C4"]["verdict"] == "inconclusive"  # 62% vs the best other, 61%
    assert table["C5"]["verdict"] == "reproduced" and table["C5"]["effect"] == pytest.approx(0.4)
    assert table["C6"]["verdict"] == "inconclusive"
    assert table["C8"]["verdict"] == "not_reproduced"  # 45% vs 62%
    assert table["C1"]["verdict"] == "inconclusive" and "not measured" in table["C1"]["detail"]
    missing = compare(rows_of(bc=(1, 2)), "C2", "oec", "bc")
    assert missing["verdict"] == "inconclusive" and "no arm 'oec'" in missing["detail"]


def test_shift_claim_needs_growth_beyond_the_baseline():
    def turn(pair, t, fd, w=0.01):
        return {"pair": pair, "turn": t, "fd": fd, "fd_lo": fd - w, "fd_hi": fd + w, "valid": True}

    grows = [turn("bc-expert", 0, 0.1), turn("bc-expert", 5, 0.5)]
    flat = [turn("expert-expert", 0, 0.1), turn("expert-expert", 5, 0.1)]
    assert shift_claim(grows + flat, "bc")["verdict"] == "reproduced"
    both = [turn("expert-expert", 0, 0.1), turn("expert-expert", 5, 0.5)]
    assert shift_claim(grows + both, "bc")["verdict"] == "inconclusive"
    assert shift_claim([turn("bc-expert", 0, 0.5), turn("bc-expert", 5, 0.1)] + flat, "bc")["verdict"] == \
        "not_reproduced"


TINY_OVERRIDES = ["suite.train=4", "suite.heldout=3", "train.max_steps=2", "train.per_device_train_batch_size=2",
                  "student_options=max_new_tokens=24", "collect.loop.step_limit=6", "workers=4"]


@pytest.mark.slow
def test_demo_runs_the_packaged_config_and_prints_both_tables(tmp_path, tiny_model):
    """`oec demo` = the packaged demo config from a given warm-start student (here a tiny one instead of the shipped
    one, and every size shrunk, to stay fast): both tables printed, the report written."""
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "oec", "demo", "--out", str(out), f"student_model={tiny_model}",
                        "sizes=[2]", "shift=false", *TINY_OVERRIDES], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["arm"] for r in rows] == ["warm_start", "bc", "on_policy", "oec", "oec_bc"]
    assert rows[0]["note"] == f"given: {tiny_model}" and int(rows[0]["n"]) == 3
    info = json.loads((out / "seed-0/bc/size-2/ckpt/oec_train.json").read_text())
    assert info["config"]["model"] == str(tiny_model) and info["config"]["context_loss"] == 0.25
    assert int(rows[1]["expert_tokens"]) > 0  # the scripted expert is billed like an API expert
    table = r.stdout[r.stdout.index("arm "):]
    assert all(f"\n{arm} " in table for arm in ("warm_start", "bc", "on_policy", "oec", "oec_bc"))
    assert all(f"\nC{i} " in table for i in range(1, 9)) and "inconclusive" in table
    assert f"report: {out / 'report.html'}" in r.stdout and (out / "report.html").exists()
    pools = json.loads((out / "calibration.json").read_text())["oec_pools"]
    assert set(pools) == {"seed-0/pools/oec-uniform"} and "the expert corrected a student mistake in" in r.stdout


def test_oec_contents_counts_the_corrections(tmp_path, train_tasks):
    """The noisy student makes wrong edits and format errors; the expert restores files after some switches."""
    from oec.collect import CollectConfig, collect
    from oec.experiment import oec_contents
    from oec.store import read_trajectories
    from oec.tasks import write_tasks

    tasks = write_tasks(train_tasks[:8], tmp_path / "tasks.jsonl")
    collect(CollectConfig(tasks=str(tasks), out=str(tmp_path / "oec"), mode="oec", student="scripted:noisy",
                          samples=2, workers=4), progress=False)
    c = oec_contents(tmp_path / "oec")
    resolved = [t for t in read_trajectories(tmp_path / "oec") if t.resolved]
    assert c["kept"] == len(resolved) > 0
    restored = sum(any(s.actor == "expert" and s.action.command.startswith("git checkout") for s in t.steps)
                   for t in resolved)
    assert c["expert_restored"] == round(restored / len(resolved), 3) and restored > 0
    assert max(c["student_erred"], c["expert_restored"]) <= c["corrected"] <= 1


def test_the_shipped_warm_start_student_loads_and_the_demo_config_is_valid():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from oec.config import load_config
    from oec.demo import demo_config, warm_student
    from oec.experiment import ExperimentConfig

    cfg = load_config(ExperimentConfig, demo_config(), {}, [])
    assert cfg.warm_start.trajectories == 0 and len(cfg.seeds) == 1
    model = AutoModelForCausalLM.from_pretrained(warm_student())
    tok = AutoTokenizer.from_pretrained(warm_student())
    assert model.config.vocab_size == len(tok) and "{% generation %}" in tok.chat_template
    trained = json.loads((warm_student() / "oec_train.json").read_text())
    assert trained["config"]["context_loss"] > 0 and trained["steps"] >= 1000


@pytest.mark.slow
def test_the_command_that_reproduces_the_shipped_student_runs(tmp_path):
    """configs/warm-student.yaml, shrunk: it trains the warm start with the shipped settings and writes warm/ckpt."""
    out = tmp_path / "ws"
    r = subprocess.run([sys.executable, "-m", "oec", "experiment", "configs/warm-student.yaml", f"out={out}",
                        "suite.train=3", "suite.heldout=2", "warm_start.trajectories=3", "warm_start.train.max_steps=2",
                        "student.hidden_size=32", "student.layers=1", "student.heads=2", "student.vocab_size=600",
                        "collect.loop.step_limit=6", "student_options=max_new_tokens=24"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads((out / "warm/ckpt/oec_train.json").read_text())
    assert info["steps"] == 2 and info["config"]["context_loss"] == 0.25
    assert [row["arm"] for row in csv.DictReader((out / "results.csv").open())] == ["warm_start"]
    # stage 2 continues from stage 1 on fresh tasks
    r = subprocess.run([sys.executable, "-m", "oec", "experiment", "configs/warm-student.yaml", f"out={out}-2",
                        "suite.seed=1", "suite.train=3", "suite.heldout=2", "warm_start.trajectories=3",
                        f"student_model={out}/warm/ckpt", "warm_start.train.max_steps=2", "collect.loop.step_limit=6",
                        "student_options=max_new_tokens=24"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((tmp_path / "ws-2/warm/ckpt/oec_train.json").read_text())["config"]["model"] == \
        f"{out}/warm/ckpt"


@pytest.mark.parametrize("path", ["configs/paper-tiny.yaml", "configs/warm-student.yaml", "configs/dagger-tiny.yaml",
                                  "bench/expert_tokens.yaml", "src/oec/assets/demo.yaml"])
def test_shipped_configs_validate(path):
    """A typo in a shipped config would surface only hours into a run (or never, for the ones CI does not run)."""
    from pathlib import Path

    from oec.config import load_config
    from oec.dagger import DaggerConfig
    from oec.experiment import ExperimentConfig

    root = Path(__file__).resolve().parent.parent
    model = DaggerConfig if "dagger" in path else ExperimentConfig
    cfg = load_config(model, root / path, {})
    if model is ExperimentConfig and cfg.student_model:  # the shipped student is where the config says
        assert (root / cfg.student_model / "config.json").is_file()
