"""The one resumable-stage helper (oec.core.stage): products are never reused half-written, are skipped when complete
from the same key and remade when the key changes; workspaces refuse another config. `oec build` and `oec train` are
killed with -9 mid-way and rerun for real. (`oec experiment`, killed at three stages and resumed elsewhere:
test_robust_outputs.py.)"""

import json
import os
import shutil

import pytest
from test_robust_outputs import OEC, kill_when_seen
from typer.testing import CliRunner

from oec.cli import app
from oec.core import stage
from oec.core.atomic import partial_path
from oec.core.errors import InputError
from oec.core.stage import BUILD_INFO, TRAIN_INFO, completed, fingerprint, guard_config, making
from oec.core.store import read_trajectories
from oec.data.build import BuildConfig, build_key
from oec.experiments.step import Fitting, build_train_eval, set_aside_evaluations
from oec.rollout.collect import CollectConfig, collect
from oec.tasks.io import load_tasks, write_tasks

# needs the system tools `make test` installs (bubblewrap, podman or chromium): not in `make test-fast`
pytestmark = pytest.mark.tools


def _make(out, key, content="x"):
    with making(out, "m.json", key) as (tmp, record):
        (tmp / "data.txt").write_text(content)
        record["n"] = len(content)
    return completed(out, "m.json", key)


def test_a_product_is_skipped_with_the_same_key_and_remade_with_another(tmp_path):
    out = tmp_path / "p"
    assert _make(out, {"a": (1, 2)}) == {"n": 1, "key": {"a": [1, 2]}}  # a tuple key reads back as a list
    assert completed(out, "m.json", {"a": (1, 2)}) is not None and completed(out, "m.json", {"a": 3}) is None
    assert _make(out, {"a": 3}, "yy")["n"] == 2 and (out / "data.txt").read_text() == "yy"


def test_a_failed_or_killed_make_leaves_nothing_under_the_real_name(tmp_path):
    out = tmp_path / "p"
    with pytest.raises(RuntimeError):
        with making(out, "m.json", 1) as (tmp, _):
            (tmp / "data.txt").write_text("half")
            raise RuntimeError("killed")
    assert not out.exists() and not partial_path(out).exists()
    # what a kill -9 leaves: the temporary name, even with a marker inside; it is never read, and the next make
    # removes it
    partial_path(out).mkdir()
    (partial_path(out) / "m.json").write_text(json.dumps({"key": 1}))
    assert completed(out, "m.json", 1) is None
    assert _make(out, 1)["n"] == 1 and not partial_path(out).exists()


def test_a_directory_oec_did_not_make_is_not_replaced(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine/notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="did not write"):
        _make(tmp_path / "mine", 1)
    assert (tmp_path / "mine/notes.txt").read_text() == "keep me"


def test_fingerprints_follow_contents_not_places(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a/f").write_text("1")
    before = fingerprint(tmp_path / "a/f", tmp_path / "a")
    (tmp_path / "a").rename(tmp_path / "b")
    assert fingerprint(tmp_path / "b/f", tmp_path / "b") == before
    (tmp_path / "b/f").write_text("2")
    assert fingerprint(tmp_path / "b/f", tmp_path / "b") != before


def test_fingerprints_ignore_modification_times_so_a_clone_or_copy_resumes(tmp_path):
    """A fresh clone or a reinstall rewrites every file with new modification times and the same bytes: the
    shipped warm student must still match, or every finished stage of an experiment is made again."""
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "sub/weights").write_bytes(bytes(range(256)) * 8)
    before = fingerprint(model)
    shutil.copytree(model, tmp_path / "clone", copy_function=shutil.copyfile)  # new files, new times
    os.utime(tmp_path / "clone/config.json", (1, 1))
    assert fingerprint(tmp_path / "clone") == before
    (tmp_path / "clone/sub/weights").write_bytes(bytes(range(256)) * 7 + bytes(256))  # same size, other bytes
    assert fingerprint(tmp_path / "clone") != before


def test_a_file_over_the_limit_is_fingerprinted_by_samples_from_first_to_last_byte(tmp_path, monkeypatch):
    monkeypatch.setattr(stage, "READ_WHOLE", 1024)
    monkeypatch.setattr(stage, "SAMPLE_BYTES", 16)
    data = bytearray(10_000)
    (tmp_path / "w").write_bytes(data)
    before = fingerprint(tmp_path / "w")
    for where in (0, len(data) - 1):  # the first and the last sample reach the file's two ends
        changed = bytearray(data)
        changed[where] = 1
        (tmp_path / "w").write_bytes(changed)
        assert fingerprint(tmp_path / "w") != before
    (tmp_path / "w").write_bytes(data + b"\0")  # one byte longer: the size is in the fingerprint
    assert fingerprint(tmp_path / "w") != before


def test_a_dataset_is_stale_only_when_its_runs_keep_other_trajectories(run, tmp_path):
    """Arms that share a pool rewrite its filter verdicts under their own settings before they build: the same kept
    trajectories (other reasons, other order) must leave another arm's dataset as it is."""
    pool = tmp_path / "pool"
    shutil.copytree(run / "bc", pool)
    keys = sorted(t.key for t in read_trajectories(pool))

    def verdicts(kept: list[bool], reason: str) -> dict:
        lines = [{"task_id": t, "sample": s, "kept": k, "reasons": [] if k else [reason]}
                 for (t, s), k in zip(keys, kept)]
        (pool / "filter.jsonl").write_text("".join(json.dumps(v) + "\n" for v in lines))
        return build_key(BuildConfig(runs=[str(pool)], out=str(tmp_path / "d"), format="trl"))

    first = verdicts([True, True, False], "the tests do not pass")
    assert verdicts([True, True, False], "ran out of steps") == first
    assert verdicts([True, False, True], "the tests do not pass") != first


def test_a_checkpoint_trained_again_sets_its_old_evaluations_aside(tmp_path):
    """An evaluation resumes by episode; after the checkpoint beside it is trained again, its episodes belong to
    another student. They are moved (the user's results), never deleted, and never resumed."""
    where = tmp_path / "arm"
    for name in ("eval", "eval-steps30"):
        (where / name).mkdir(parents=True)
        (where / name / "trajectories.jsonl").write_text(name)
    (where / "ckpt").mkdir()
    assert set_aside_evaluations(where) == [where / "stale-0/eval", where / "stale-0/eval-steps30"]
    assert (where / "stale-0/eval-steps30/trajectories.jsonl").read_text() == "eval-steps30"
    assert not (where / "eval").exists() and (where / "ckpt").is_dir()
    (where / "eval").mkdir()
    assert set_aside_evaluations(where) == [where / "stale-1/eval"]
    assert set_aside_evaluations(where) == []


def test_a_workspace_refuses_another_config_and_names_the_keys(tmp_path):
    path = tmp_path / "w.json"
    assert guard_config(path, {"a": 1, "b": 2}, what="thing", fix="use another out") is None
    assert guard_config(path, {"a": 1, "b": 3}, what="thing", fix="x", may_change=frozenset({"b"}))["config"]["b"] == 2
    with pytest.raises(InputError, match=r"w.json: this thing was run with another config \(differs in: a\); fix it"):
        guard_config(path, {"a": 2, "b": 3}, what="thing", fix="fix it")


@pytest.fixture(scope="module")
def run(tmp_path_factory, train_tasks):
    root = tmp_path_factory.mktemp("stage")
    tasks = write_tasks(train_tasks[:3], root / "tasks.jsonl")
    collect(CollectConfig(tasks=str(tasks), out=str(root / "bc"), mode="expert", workers=3), progress=False)
    return root


def _cli(*args):
    """The command in this process (the killed ones are real processes)."""
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output[-3000:]
    return r.output


@pytest.mark.slow
def test_kill_9_mid_build_then_rerun_builds_the_same_dataset(run, tiny_model, tmp_path):
    from datasets import load_from_disk

    build = ["build", run / "bc", "--student", tiny_model, "--max-tokens", "512"]
    _cli(*build, "--out", tmp_path / "ref")
    out = tmp_path / "d"
    kill_when_seen(OEC + build + ["--out", out], out)
    assert completed(out, BUILD_INFO) is None  # the real name never holds a half-written dataset
    assert f"wrote {out}" in _cli(*build, "--out", out)
    assert load_from_disk(str(out))["input_ids"] == load_from_disk(str(tmp_path / "ref"))["input_ids"]
    assert f"kept (complete, from the same config and inputs; remove it to rebuild) {out}" in _cli(*build, "--out", out)
    _cli("filter", run / "bc")  # the run's verdicts are written: an input changed, so it is built again
    try:
        assert f"wrote {out}" in _cli(*build, "--out", out)
    finally:
        for name in ("filter.jsonl", "filter.json"):
            (run / "bc" / name).unlink()


@pytest.mark.slow
def test_kill_9_mid_train_then_rerun_trains_from_scratch(run, tiny_model, tmp_path):
    data = tmp_path / "data"
    _cli("build", run / "bc", "--student", tiny_model, "--max-tokens", "512", "--out", data)
    train = ["train", "--data", data, "--model", tiny_model, "trl.max_steps=2", "trl.logging_steps=1"]
    out = tmp_path / "ckpt"
    kill_when_seen(OEC + train + ["--out", out], out)
    assert completed(out, TRAIN_INFO) is None
    assert f"wrote {out}" in _cli(*train, "--out", out)
    info = completed(out, TRAIN_INFO)
    assert info["steps"] == 2 and len(info["losses"]) == 2 and (out / "model.safetensors").exists()
    kept = f"kept (complete, from the same config, data and model; remove it to retrain) {out}"
    assert kept in _cli(*train, "--out", out)
    assert "differs" not in _cli(*train[:-2], "trl.max_steps=3", "trl.logging_steps=1", "--out", out)
    assert completed(out, TRAIN_INFO)["steps"] == 3  # another config: trained again, replacing it


@pytest.mark.slow
def test_an_arm_trained_again_is_evaluated_again(run, tiny_model, tmp_path):
    """The wiring of the set-aside: a finished arm resumes without any work; trained again with another recipe, its
    old evaluation goes to stale-0/ and the new student is evaluated from scratch."""
    heldout = write_tasks(load_tasks(run / "tasks.jsonl")[:1], tmp_path / "heldout.jsonl")
    arm = tmp_path / "arm"

    def step(steps: int) -> dict:
        fitting = Fitting(trl={"max_steps": steps}, collect={"loop": {"step_limit": 1}},
                          student_options="max_new_tokens=8", workers=1)
        return build_train_eval(arm, [run / "bc"], tiny_model, tiny_model, heldout, fitting)

    assert step(1)["ran"] == {"build": True, "train": True, "eval": True}
    assert step(1)["ran"] == {"build": False, "train": False, "eval": False}
    first = (arm / "eval/trajectories.jsonl").read_text()
    assert step(2)["ran"] == {"build": False, "train": True, "eval": True}
    assert (arm / "stale-0/eval/trajectories.jsonl").read_text() == first
    assert len(read_trajectories(arm / "eval")) == 1
