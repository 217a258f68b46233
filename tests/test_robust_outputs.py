"""Nothing lost, nothing reused half-written: `--fresh` deletes only what oec made; kill -9 at any stage of a real
`oec experiment` (observed from its outputs appearing) and a rerun equals an uninterrupted run; sandboxes left by a
killed process are swept; an experiment directory moved elsewhere resumes."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from oec.cli.main import app
from oec.core.atomic import partial_path
from oec.core.errors import InputError
from oec.core.store import read_trajectories
from oec.env.sandbox.shell import Slot
from oec.env.sandbox.tempdirs import sweep_stale_dirs
from oec.experiments.experiment import ExperimentConfig
from oec.experiments.rows import remove_experiment
from oec.rollout.collect import CollectConfig, collect
from oec.tasks.io import generate_tasks, write_tasks

# needs the system tools `make test` installs (bubblewrap, podman or chromium): not in `make test-fast`
pytestmark = pytest.mark.tools

OEC = [sys.executable, "-m", "oec"]
# One thread per process: the reference run and the killed runs go side by side on 2 cores, and equal thread counts
# keep the CPU arithmetic identical.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "PYTHONPATH": str(Path(__file__).parents[1] / "src")}


def kill_when_seen(cmd: list, path: Path, timeout: float = 300) -> int:
    """Run CMD and kill -9 it the moment PATH (or its temporary name) appears; return the pid. Fails if CMD exits
    first (then the kill point was never reached)."""
    proc = subprocess.Popen([str(c) for c in cmd], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    tmp, deadline = partial_path(path), time.monotonic() + timeout
    while not (path.exists() or tmp.exists()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{cmd[2:4]} ended (rc {proc.returncode}) before {path} appeared: {proc.stderr.read()[-2000:]}")
        time.sleep(0.001)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    return proc.pid


def test_fresh_never_deletes_what_oec_did_not_make(tmp_path):
    fields = set(ExperimentConfig.model_fields)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    r = CliRunner().invoke(app, ["demo", "--fresh", "--out", str(mine), "bogus_key=1"])
    assert r.exit_code == 2 and "bogus_key" in r.stderr and (mine / "thesis.tex").exists()  # the config first
    with pytest.raises(InputError, match="only an experiment directory that oec made"):  # valid, but not oec's
        remove_experiment(mine, fields)
    assert (mine / "thesis.tex").read_text() == "years of work"
    # a file merely *named* experiment.json proves nothing: through the CLI, before any work starts
    (mine / "experiment.json").write_text("{}")
    r = CliRunner().invoke(app, ["demo", "--fresh", "--out", str(mine)])
    assert r.exit_code == 2 and "experiment.json" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert (mine / "thesis.tex").read_text() == "years of work"
    # a real saved config with a file of the user's beside it: still refused, the file named
    (mine / "experiment.json").write_text(json.dumps(dict.fromkeys(fields)))
    with pytest.raises(InputError, match="thesis.tex"):
        remove_experiment(mine, fields)
    assert (mine / "thesis.tex").exists()
    ours = tmp_path / "ours"
    (ours / "warm").mkdir(parents=True)
    (ours / "seed-0").mkdir()
    (ours / "results.csv").write_text("arm\n")
    (ours / "experiment.json").write_text(json.dumps(dict.fromkeys(fields)))
    remove_experiment(ours, fields)
    assert not ours.exists()


def test_a_killed_tasks_write_is_never_read_as_complete(tmp_path):
    out = tmp_path / "train.jsonl"
    cmd = OEC + ["tasks", "generate", "--n", 1500, "--seed", 3, "--out", out]
    kill_when_seen(cmd, out)
    assert not out.exists(), "a half-written tasks file under its real name"
    r = CliRunner().invoke(app, [str(c) for c in cmd[3:]])  # the rerun
    assert r.exit_code == 0, r.output
    reference = write_tasks(generate_tasks("toy", "train", 1500, 3), tmp_path / "reference.jsonl")
    assert out.read_bytes() == reference.read_bytes() and not partial_path(out).exists()


def test_stale_sandboxes_of_a_killed_process_are_swept_at_collection_start(tmp_path, train_tasks, monkeypatch):
    # a temp dir of the test's own: a collection in another test process would sweep a stale dir in /tmp too
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    code = "from oec.env.sandbox.shell import Slot; import time; print(Slot()._dir, flush=True); time.sleep(300)"
    proc = subprocess.Popen([sys.executable, "-c", code], env={**ENV, "TMPDIR": str(private)},
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    stale = Path(proc.stdout.readline().strip())
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    live = Slot()  # this process's own sandbox: in use, never swept
    try:
        assert stale.is_dir() and stale.parent == private and f"-{proc.pid}-" in stale.name
        tasks = write_tasks(train_tasks[:1], tmp_path / "t.jsonl")
        collect(CollectConfig(tasks=str(tasks), out=str(tmp_path / "run")), progress=False)
        assert not stale.exists() and live._dir.is_dir()
        assert live._dir not in sweep_stale_dirs()
    finally:
        live.close()


MINI = {
    "name": "mini",
    "suite": {"train": 3, "heldout": 2, "seed": 0, "knobs": {"hops": 0, "modules": 2, "functions_per_module": 2}},
    "student": {"hidden_size": 32, "layers": 1, "heads": 2, "vocab_size": 600, "context": 1024},
    "warm_start": {"trajectories": 2, "train": {"max_steps": 1}},
    "arms": [{"name": "bc", "kind": "bc"}], "sizes": [2], "seeds": [0], "pool_samples": 1,
    "student_options": "max_new_tokens=16", "train": {"max_steps": 1, "per_device_train_batch_size": 2},
    # one episode at a time: a batch of two makes greedy replies of this barely trained student float-dependent
    "collect": {"loop": {"step_limit": 8}}, "workers": 1, "shift": False,
}
# Where each killed run is stopped, in stage order: a checkpoint, a dataset, the tables. (Tasks files: the test above;
# the pools' and evaluations' trajectories are appended line by line and resumed per episode: test_collect.py.)
KILL_AT = ["warm/ckpt", "seed-0/bc/size-2/data", "claims.csv"]
RUNS = ["warm/bc", "warm/eval", "seed-0/pools/bc", "seed-0/bc/size-2/eval"]


def _results(root: Path) -> list[dict]:
    rows = csv.DictReader((root / "results.csv").open())
    return [{k: v for k, v in row.items() if k != "train_seconds"} for row in rows]


def _episodes(root: Path, run: str, was: Path | None = None) -> list[str]:
    trajs = read_trajectories(root / run)
    assert len({t.key for t in trajs}) == len(trajs)  # each episode once
    # the student's spec names its checkpoint by absolute path: where the experiment is, or WAS before it moved
    texts = [json.dumps(t.canonical(), sort_keys=True).replace(str(was or root), "ROOT") for t in trajs]
    return sorted(text.replace(str(root), "ROOT") for text in texts)


def _selected(data: Path) -> list:
    from datasets import load_from_disk

    ds = load_from_disk(str(data))
    return sorted(zip(ds["task_id"], ds["sample"], map(tuple, ds["input_ids"])))


def _experiment(tmp_path: Path, name: str, out: Path) -> list:
    config = tmp_path / f"{name}.yaml"
    config.write_text(yaml.safe_dump({**MINI, "out": str(out)}))
    return OEC + ["experiment", config]


@pytest.mark.slow
def test_kill_9_at_every_stage_then_resume_elsewhere_equals_an_uninterrupted_run(tmp_path):
    ref = tmp_path / "ref"
    reference = subprocess.Popen([str(c) for c in _experiment(tmp_path, "ref", ref)], env=ENV,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root = tmp_path / "killed"
    killed = [kill_when_seen(_experiment(tmp_path, "killed", root), root / at) for at in KILL_AT]
    moved = tmp_path / "moved/elsewhere"  # and the interrupted experiment is moved before it is resumed
    moved.parent.mkdir()
    shutil.move(root, moved)
    r = subprocess.run([str(c) for c in _experiment(tmp_path, "moved", moved)], env=ENV, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "collect " not in r.stdout and "student: initialised" not in r.stdout, r.stdout  # no finished stage re-ran
    out, _ = reference.communicate(timeout=600)
    assert reference.returncode == 0, out[-3000:]

    assert _results(moved) == _results(ref)
    for run in RUNS:
        assert _episodes(moved, run, was=root) == _episodes(ref, run)
    for data in ("warm/data", "seed-0/bc/size-2/data"):  # the same training data
        assert _selected(moved / data) == _selected(ref / data)
    assert (moved / "claims.csv").read_text() == (ref / "claims.csv").read_text() and (moved / "report.html").exists()
    assert not list(moved.rglob("*.partial"))
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))  # the killed runs' sandboxes were swept by the next collection
    assert not [d for pid in killed for d in tmp.glob(f"oec-*-{pid}-*")]


def test_an_unmarked_experiment_directory_is_not_removed(tmp_path):
    (tmp_path / "x").write_text("")
    with pytest.raises(InputError, match="is a file"):
        remove_experiment(tmp_path / "x", set(ExperimentConfig.model_fields))
