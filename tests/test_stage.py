"""The one resumable-stage helper (oec.core.stage): products are never reused half-written, are skipped when complete
from the same key and remade when the key changes; workspaces refuse another config. `oec build` and `oec train` are
killed with -9 mid-way and rerun for real. (`oec experiment`, killed at three stages and resumed elsewhere:
test_robust_outputs.py.)"""

import json

import pytest
from test_robust_outputs import OEC, kill_when_seen
from typer.testing import CliRunner

from oec.cli import app
from oec.core.atomic import partial_path
from oec.core.errors import InputError
from oec.core.stage import BUILD_INFO, TRAIN_INFO, completed, fingerprint, guard_config, making
from oec.rollout.collect import CollectConfig, collect
from oec.tasks.io import write_tasks

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
