"""`oec experiment`: the whole comparison on a tiny config, end to end, with real collection, TRL training and
evaluation of real (tiny) students (the claims' statistics: tests/test_claims.py)."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from oec.core.store import read_trajectories
from oec.experiments.claims import shift_claim
from oec.train.sft import steps_for_tokens

# needs the system tools `make test` installs (bubblewrap, podman or chromium): not in `make test-fast`
pytestmark = pytest.mark.tools

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
    # the DAgger arm's student is its last round's: the rounds before it are not evaluated
    assert [p.parent.name for p in sorted(run.glob("seed-0/dagger/size-2/round-*/eval"))] == ["round-001"]
    # per-task outcomes of every evaluation (an arm that kept nothing never trained: it has none of its own)
    outcomes = list(csv.DictReader((run / "outcomes.csv").open()))
    evaluated = [r for r in rows if r["trajectories"] != "0"]
    assert len(outcomes) == 3 * len(evaluated) and {o["arm"] for o in outcomes} == {r["arm"] for r in evaluated}
    assert all(int(r["trained_tokens"]) > 0 for r in evaluated)  # the warm start's and every trained arm's
    claims_rows = {c["claim"]: c for c in csv.DictReader((run / "claims.csv").open())}
    assert list(claims_rows) == ["C1", "C2", "C3", "C3bc", "C4", "C5", "C6", "C7", "C8"]
    assert all(c["verdict"] in {"reproduced", "not_reproduced", "inconclusive", "not_measured"}
               for c in claims_rows.values())
    assert claims_rows["C5"]["verdict"] == "not_measured"
    assert "the config has no mask=all oec arm" in claims_rows["C5"]["detail"]
    assert claims_rows["C2"]["size"] == "2" and (claims_rows["C2"]["half_width"] != "") == (
        claims_rows["C2"]["verdict"] != "not_measured")
    # the warm start trained on its own seed's tasks, disjoint from the pool's, and its checkpoint says which
    from oec.tasks.disjoint import content_hash, trained_on
    from oec.tasks.io import load_tasks

    warm = set(trained_on(run / "warm/ckpt")["hashes"])
    assert len(warm) == 3 and not warm & {content_hash(t) for t in load_tasks(run / "tasks/train.jsonl")}
    assert (run / "report.html").exists() and (run / "scaling.png").exists()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)  # everything is done: nothing re-runs
    assert r.returncode == 0 and "collect " not in r.stdout and "student: initialised" not in r.stdout, r.stdout
    # the rechecks, set on the finished run: every kept student evaluated again at another step limit and on
    # unseen-template tasks, with claims of their own; nothing trains again
    trained = {p: p.stat().st_mtime_ns for p in run.glob("**/ckpt/oec_train.json")}
    r = subprocess.run(cmd + ["recheck_step_limit=3", "unseen_heldout=2"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "collect seed-0/pools" not in r.stdout, r.stdout
    assert {p: p.stat().st_mtime_ns for p in run.glob("**/ckpt/oec_train.json")} == trained
    from oec.tasks.toy_shapes import UNSEEN_SHAPES

    unseen = load_tasks(run / "tasks/unseen-2.jsonl")
    assert len(unseen) == 2 and {t.meta["shape"] for t in unseen} <= set(UNSEEN_SHAPES)
    for view, n, limit in (("steps3", 3, 3), ("unseen2", 2, 8)):
        again = list(csv.DictReader((run / f"results_{view}.csv").open()))
        assert [a["arm"] for a in again] == [r["arm"] for r in rows] and all(int(a["n"]) == n for a in again)
        assert [a["trained_tokens"] for a in again] == [r["trained_tokens"] for r in rows]  # the same students
        episodes = read_trajectories(run / f"seed-0/bc/size-2/eval-{view}")
        assert len(episodes) == n and all(len(t.steps) <= limit for t in episodes)
        view_claims = {c["claim"]: c for c in csv.DictReader((run / f"claims_{view}.csv").open())}
        assert list(view_claims) == list(claims_rows) and "main held-out" in view_claims["C1"]["detail"]
        assert f'id="view-{view}"' in (run / "report.html").read_text()
    assert {t.task_id for t in read_trajectories(run / "seed-0/bc/size-2/eval-unseen2")} == {t.task_id for t in unseen}
    r = subprocess.run(cmd + ["recheck_step_limit=4", "recheck_arms=[bc]"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]  # only the arms named, beside the warm start
    assert [a["arm"] for a in csv.DictReader((run / "results_steps4.csv").open())] == ["warm_start", "bc"]
    assert not (run / "seed-0/oec/size-2/eval-steps4").exists()
    view_claims = {c["claim"]: c for c in csv.DictReader((run / "claims_steps4.csv").open())}
    assert all(view_claims[c]["verdict"] == "not_measured" and "recheck_arms" in view_claims[c]["detail"]
               for c in ("C4", "C8"))
    report = (run / "report.html").read_text()  # the views of this config only: steps3's files are an earlier one's
    assert 'id="view-steps4"' in report and 'id="view-steps3"' not in report and 'id="view-unseen2"' not in report


def test_a_bad_experiment_config_names_the_key(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({**TINY, "arms": [{"name": "x", "kind": "bc", "swich": "late"}]}))
    r = subprocess.run([sys.executable, "-m", "oec", "experiment", str(config)], capture_output=True, text=True)
    assert r.returncode == 2 and "arms.0.swich" in r.stderr
    r = subprocess.run([sys.executable, "-m", "oec", "experiment", str(config), "arms=[{name: bc, kind: bc}]",
                        "recheck_arms=[bc, oec]"], capture_output=True, text=True)
    assert r.returncode == 2 and "recheck_arms: oec is not an arm's name" in r.stderr, r.stderr


def test_a_rerun_must_be_the_same_experiment_but_may_grow(tmp_path):
    """Stages resume by their outputs' paths, so a changed training config would mix old and new students."""
    from oec.core.errors import InputError
    from oec.experiments.experiment import Experiment, ExperimentConfig

    base = {**TINY, "out": str(tmp_path / "run")}
    Experiment(ExperimentConfig(**base)).check_config()
    grown = {**base, "seeds": [0, 1], "sizes": [2, 4], "workers": 2,
             "arms": TINY["arms"] + [{"name": "x", "kind": "bc"}]}
    Experiment(ExperimentConfig(**grown)).check_config()  # more of the same experiment: fine, and recorded
    assert json.loads((tmp_path / "run/experiment.json").read_text())["config"]["seeds"] == [0, 1]
    Experiment(ExperimentConfig(**{**grown, "name": "renamed"})).check_config()  # the directory is the experiment
    for change, named in (({"train": {"max_steps": 3}}, "differs in: train"),
                          ({"suite": {**TINY["suite"], "heldout": 4}}, "differs in: suite"),
                          ({"arms": [{"name": "bc", "kind": "oec"}]}, r"differs in: arms\[bc\]")):
        with pytest.raises(InputError, match=named):
            Experiment(ExperimentConfig(**{**grown, **change})).check_config()


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
    one, and every size shrunk, to stay fast): both tables printed, the paired claims (not_measured for the arms the
    demo lacks), the report written; here token-matched, so every arm trains on the same number of trained tokens."""
    out = tmp_path / "demo"
    r = subprocess.run([sys.executable, "-m", "oec", "demo", "--out", str(out), f"student_model={tiny_model}",
                        "sizes=[2]", "shift=false", "trained_tokens=400", *TINY_OVERRIDES],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [r["arm"] for r in rows] == ["warm_start", "bc", "on_policy", "oec", "oec_bc"]
    assert rows[0]["note"] == f"given: {tiny_model}" and int(rows[0]["n"]) == 3
    info = json.loads((out / "seed-0/bc/size-2/ckpt/oec_train.json").read_text())
    assert info["config"]["model"] == str(tiny_model) and info["config"]["context_loss"] == 0.25
    assert int(rows[1]["expert_tokens"]) > 0  # the scripted expert is billed like an API expert
    table = r.stdout[r.stdout.index("arm "):]
    assert all(f"\n{arm} " in table for arm in ("warm_start", "bc", "on_policy", "oec", "oec_bc"))
    assert all(f"\nC{i} " in table for i in range(1, 9))
    claims_rows = {c["claim"]: c for c in csv.DictReader((out / "claims.csv").open())}
    assert {k for k, c in claims_rows.items() if c["verdict"] == "not_measured"} >= {"C1", "C5", "C6", "C7", "C8"}
    assert all(f"\n{k} " in table and c["verdict"] in table.split(f"\n{k} ")[1].split("\n")[0]
               for k, c in claims_rows.items())
    if claims_rows["C2"]["verdict"] != "not_measured":  # BC and OEC kept data: a paired comparison at size 2
        assert claims_rows["C2"]["size"] == "2" and "paired on 3 tasks x 1 seed(s)" in claims_rows["C2"]["detail"]
    for row in rows[1:]:  # token-matched: each arm ran the steps that reach 400 trained tokens on its own data
        if row["trajectories"] == "0":
            continue
        built = json.loads((out / f"seed-0/{row['arm']}/size-2/data/oec_build.json").read_text())["stats"]
        per_step = built["trainable_tokens"] / built["examples"] * 2
        assert 400 <= int(row["trained_tokens"]) < 400 + per_step + 1, (row, built)
        info = json.loads((out / f"seed-0/{row['arm']}/size-2/ckpt/oec_train.json").read_text())
        assert info["steps"] == steps_for_tokens(400, built["examples"], built["trainable_tokens"], 2) and \
            info["trained_tokens"] == int(row["trained_tokens"])  # the steps came from the target, not max_steps
    assert f"report: {out / 'report.html'}" in r.stdout and (out / "report.html").exists()
    # the mechanism check is logged once, before the first arm trains, and kept in calibration.json
    assert r.stdout.index("mechanism seed-0/pools/oec-uniform: ") < r.stdout.index("seed 0 size 2 bc:")
    assert r.stdout.count("mechanism seed-0/pools/") == 1
    checks = json.loads((out / "calibration.json").read_text())["mechanism"]
    assert set(checks) == {"seed-0/pools/oec-uniform"}
    check = checks["seed-0/pools/oec-uniform"]
    assert set(check["goals"]) == {"corrected >= 50%", "restored > 0"} and check["student_episodes"] == 4


def test_a_real_oec_pool_holds_corrected_mistakes_and_restored_files(tmp_path, train_tasks):
    """The noisy student makes wrong edits and format errors; the expert restores files after some switches (the
    mechanism check on a real collection; tests/test_mechanism.py has each rule on hand-made trajectories)."""
    from oec.core.store import read_trajectories
    from oec.experiments.mechanism import pool_check
    from oec.rollout.collect import CollectConfig, collect
    from oec.tasks.io import write_tasks

    tasks = write_tasks(train_tasks[:8], tmp_path / "tasks.jsonl")
    collect(CollectConfig(tasks=str(tasks), out=str(tmp_path / "oec"), mode="oec", student="scripted:noisy",
                          samples=2, workers=4), progress=False)
    c = pool_check(tmp_path / "oec", None)
    resolved = [t for t in read_trajectories(tmp_path / "oec") if t.resolved]
    assert 0 < c["kept"] <= len(resolved) and c["student_resolve_rate"] is None
    restored = sum(any(s.actor == "expert" and s.action.command.startswith("git checkout") for s in t.steps)
                   for t in resolved)
    assert restored > 0 and c["restored"] > 0
    assert max(c["mistakes"].values()) <= c["corrected"] <= 1


def test_the_shipped_warm_start_student_loads_and_the_demo_config_is_valid():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from oec.core.config import load_config
    from oec.experiments.demo import demo_config, warm_student
    from oec.experiments.experiment import ExperimentConfig

    cfg = load_config(ExperimentConfig, demo_config(), {}, [])
    assert cfg.warm_start.trajectories == 0 and len(cfg.seeds) == 1
    model = AutoModelForCausalLM.from_pretrained(warm_student())
    tok = AutoTokenizer.from_pretrained(warm_student())
    assert model.config.vocab_size == len(tok) and "{% generation %}" in tok.chat_template
    trained = json.loads((warm_student() / "oec_train.json").read_text())
    assert trained["config"]["context_loss"] > 0 and trained["steps"] >= 1000


@pytest.mark.slow
def test_the_command_that_reproduces_the_shipped_student_runs(tmp_path, tiny_model):
    """configs/warm-student.yaml's second stage, shrunk: it continues a given student (here the tiny test student
    instead of the first stage's checkpoint) on fresh tasks with the shipped settings and writes warm/ckpt. The first
    stage differs only by initialising the student from the config, as the tiny experiment above does (the config
    itself is validated with the shipped configs below)."""
    out = tmp_path / "ws-2"
    r = subprocess.run([sys.executable, "-m", "oec", "experiment", "configs/warm-student.yaml", f"out={out}",
                        "suite.seed=1", "suite.warm_seed=1", "suite.train=3", "suite.heldout=2",
                        "warm_start.trajectories=3", f"student_model={tiny_model}", "warm_start.train.max_steps=2",
                        "collect.loop.step_limit=6", "student_options=max_new_tokens=24"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads((out / "warm/ckpt/oec_train.json").read_text())
    assert info["steps"] == 2 and info["config"]["context_loss"] == 0.25
    assert info["config"]["model"] == str(tiny_model)
    assert [row["arm"] for row in csv.DictReader((out / "results.csv").open())] == ["warm_start"]


ROOT = Path(__file__).resolve().parent.parent
SHIPPED_CONFIGS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", [*SHIPPED_CONFIGS, "bench/expert_tokens.yaml", "src/oec/assets/demo.yaml"])
def test_shipped_configs_validate(path):
    """A typo in a shipped config would surface only hours into a run (or never, for the ones CI does not run)."""
    from oec.core.config import load_config
    from oec.experiments.dagger import DaggerConfig
    from oec.experiments.experiment import ExperimentConfig

    model = DaggerConfig if "dagger" in path else ExperimentConfig
    cfg = load_config(model, ROOT / path, {})
    if model is ExperimentConfig and cfg.student_model:  # the shipped student is where the config says
        assert (ROOT / cfg.student_model / "config.json").is_file()


def test_trained_tokens_count_epochs_and_token_matching_reaches_its_target():
    """The arithmetic behind results.csv's trained_tokens and the token-matched option (the demo test runs it)."""
    from oec.train.sft import examples_seen, trained_tokens

    # 10 examples, batch 4: an epoch is 3 steps (the last batch short); 7 steps = 2 epochs and one batch of 4
    assert examples_seen(7, 10, 4) == 24 and examples_seen(3, 10, 4) == 10 and examples_seen(1, 10, 2, 2) == 4
    assert trained_tokens(3, 10, 500, 4) == 500 and trained_tokens(7, 10, 500, 4) == 1200
    for target in (1, 499, 500, 501, 1234, 10_000):
        steps = steps_for_tokens(target, 10, 500, 4)
        assert trained_tokens(steps, 10, 500, 4) >= target > trained_tokens(steps - 1, 10, 500, 4) or steps == 1


def test_claims_are_made_at_a_trained_size():
    from pydantic import ValidationError

    from oec.experiments.experiment import ExperimentConfig

    assert ExperimentConfig(**{**TINY, "sizes": [2, 4], "claims_size": 2}).claims_size == 2
    with pytest.raises(ValidationError, match=r"claims_size\n.*7 is not one of sizes \[2\]"):
        ExperimentConfig(**{**TINY, "claims_size": 7})
