"""`oec experiment`: the whole comparison on a tiny config, end to end, with real collection, TRL training and
evaluation of real (tiny) students; and the claims arithmetic on hand-made results."""

import csv
import json
import subprocess
import sys

import pytest
import yaml

from oec.claims import claims, compare, difference, shift_claim

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
    run = tmp_path / "run"
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert {"arm", "size", "seed", "resolve_rate", "ci_lo", "ci_hi", "expert_tokens"} <= set(rows[0])
    assert [r["arm"] for r in rows] == ["warm_start", "bc", "on_policy", "oec", "oec_bc", "dagger"]
    assert all(int(r["n"]) == 3 for r in rows)  # every student is evaluated on the same 3 held-out tasks
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
