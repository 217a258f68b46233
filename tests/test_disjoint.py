"""No leakage by construction: task sets checked disjoint by content, and the shipped student's training tasks refused
as pool or held-out tasks, before an experiment does any work."""

import subprocess
import sys
from pathlib import Path

import pytest

from oec.experiments.demo import warm_student
from oec.tasks.disjoint import check_disjoint, content_hash, trained_on
from oec.tasks.io import InputError, generate_tasks

ROOT = Path(__file__).resolve().parent.parent
KNOBS = {"hops": 0, "direct_test_prob": 1.0, "modules": 2, "functions_per_module": 2}


def test_the_shipped_students_task_list_is_what_its_sources_generate():
    """trained_tasks.json is derived from the generator calls it names (configs/warm-student.yaml's two stages): spot
    checks at both ends of each source, and one hash per task."""
    shipped = trained_on(warm_student())
    hashes = set(shipped["hashes"])
    assert len(hashes) == len(shipped["hashes"]) == sum(s["n"] for s in shipped["sources"]) == 4000
    for s in shipped["sources"]:
        tasks = generate_tasks(s["suite"], s["split"], 3, s["seed"], **s["knobs"])
        assert {content_hash(t) for t in tasks} <= hashes
    beyond = generate_tasks("toy", "train", 1003, 0, **KNOBS)[1000:]  # stage 1 used the first 1000 of seed 0 only
    assert not {content_hash(t) for t in beyond} & hashes


def test_content_hash_ignores_names_and_sees_content():
    a, b = generate_tasks("toy", "train", 2, 5, **KNOBS)
    renamed = a.model_copy(update={"task_id": "other-id", "meta": {}})
    assert content_hash(renamed) == content_hash(a) != content_hash(b)


def test_overlapping_sets_and_the_students_own_tasks_are_refused():
    pool, heldout = generate_tasks("toy", "train", 4, 7, **KNOBS), generate_tasks("toy", "heldout", 4, 8, **KNOBS)
    check_disjoint({"train (pool)": pool, "held-out": heldout}, warm_student())  # disjoint seeds: fine
    with pytest.raises(InputError, match=r"2 of the train \(pool\) tasks are also warm-start tasks .*suite.warm_seed"):
        check_disjoint({"train (pool)": pool, "warm-start": pool[:2], "held-out": heldout}, None)
    seen = generate_tasks("toy", "train", 4, 0, **KNOBS)  # the old paper-tiny pool: the student's first tasks
    with pytest.raises(InputError, match=r"trained_tasks.json: the student was trained on 4 of the train \(pool\) "
                                         r"tasks .*toy train seed 0 x1000; toy train seed 1 x3000"):
        check_disjoint({"train (pool)": seen, "held-out": heldout}, warm_student())


def test_an_experiment_on_the_students_training_tasks_stops_before_any_work(tmp_path):
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "oec", "experiment", "configs/paper-tiny.yaml", f"out={out}",
                        "suite.seed=0", "suite.train=5", "suite.heldout=2", "warm_start.trajectories=2"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 2 and "the student was trained on 5 of the train (pool) tasks" in r.stderr, r.stderr
    assert not out.exists() or not any(out.iterdir())  # nothing written: a fixed config starts cleanly


def test_dagger_refuses_the_students_training_tasks(tmp_path):
    from oec.experiments.dagger import DaggerConfig, run_dagger
    from oec.tasks.io import write_tasks

    tasks = write_tasks(generate_tasks("toy", "train", 3, 1, **KNOBS), tmp_path / "train.jsonl")  # stage 2's first
    cfg = DaggerConfig(tasks=str(tasks), student=str(warm_student()), out=str(tmp_path / "dagger"))
    with pytest.raises(InputError, match=r"trained on 3 of the train tasks"):
        run_dagger(cfg, progress=False)
    assert not (tmp_path / "dagger").exists()  # refused before anything was written
