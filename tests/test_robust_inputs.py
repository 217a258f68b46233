"""Bad input, as a hostile review gave it to every verb: each is a one-line error (exit 2) naming the argument, file or
field and how to fix it, before any work starts; a bad line in a JSONL file is skipped with `FILE line N`, never the
whole run; and `oec build` picks the same trajectories from the same pool whatever order its file is in.

The CLI runs in this process (typer's CliRunner over the real `oec` app), so each case costs no interpreter start."""

import json
import shutil

import pytest
import yaml
from typer.testing import CliRunner

from oec.cli.main import app
from oec.core.errors import InputError
from oec.core.metrics import summarize
from oec.core.store import read_trajectories
from oec.data.build import BuildConfig, build
from oec.data.filter import filter_run, kept_keys
from oec.rollout.collect import CollectConfig, collect
from oec.tasks.io import load_tasks, write_tasks

# needs the system tools `make test` installs (bubblewrap, podman or chromium): not in `make test-fast`
pytestmark = pytest.mark.tools


@pytest.fixture(scope="module")
def pool(tmp_path_factory, train_tasks):
    """A real expert pool: 4 tasks x 2 samples, collected in the sandbox."""
    root = tmp_path_factory.mktemp("pool")
    tasks = write_tasks(train_tasks[:4], root / "tasks.jsonl")
    collect(CollectConfig(tasks=str(tasks), out=str(root / "run"), samples=2, workers=4), progress=False)
    return root


def oec(*args):
    """(exit code, stderr) of `oec ARGS`; a traceback (an exception the CLI let through) fails the test."""
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r.exit_code, r.stderr


def one_line_error(args, *needles):
    code, err = oec(*args)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def afile(tmp_path):
    f = tmp_path / "afile"
    f.write_text("the user's own file\n")
    return f


@pytest.mark.parametrize("verb", ["collect", "build", "train", "student init", "experiment", "tasks generate"])
def test_an_out_that_is_a_file_is_a_one_line_error(verb, afile, pool, tiny_model, tmp_path):
    run, tasks = pool / "run", pool / "tasks.jsonl"
    args = {"collect": ["collect", "--tasks", tasks, "--out", afile],
            "build": ["build", run, "--student", tiny_model, "--out", afile],
            "train": ["train", "--data", tmp_path, "--model", tiny_model, "--out", afile],
            "student init": ["student", "init", "--tasks", tasks, "--out", afile],
            "experiment": ["experiment", tmp_path / "e.yaml", f"out={afile}"],
            "tasks generate": ["tasks", "generate", "--n", 2, "--out", afile / "tasks.jsonl"]}[verb]
    (tmp_path / "e.yaml").write_text(yaml.safe_dump({"name": "e"}))
    one_line_error(args, str(afile), "is a file")
    assert afile.read_text() == "the user's own file\n"


def test_an_output_directory_oec_did_not_write_is_not_replaced(pool, tiny_model, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    one_line_error(["build", pool / "run", "--student", tiny_model, "--out", mine], "oec did not write")
    one_line_error(["student", "init", "--tasks", pool / "tasks.jsonl", "--out", mine], "oec did not write")
    assert (mine / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("case", ["train --model", "build --student"])
def test_a_model_path_that_does_not_exist_is_named(case, pool, tmp_path):
    missing = tmp_path / "no-such-model"
    args = {"train --model": ["train", "--data", tmp_path, "--model", missing, "--out", tmp_path / "c"],
            "build --student": ["build", pool / "run", "--student", missing, "--out", tmp_path / "d"]}[case]
    one_line_error(args, case.split()[1], str(missing))


def test_a_trl_value_of_the_wrong_type_fails_before_loading(tmp_path, tiny_model):
    one_line_error(["train", "--data", tmp_path, "--model", tiny_model, "--out", tmp_path / "c",
                    "trl.learning_rate=abc"], "trl.learning_rate='abc'", "valid number")


@pytest.mark.parametrize("content", ["[1, 2]", "{}", ""])
def test_a_broken_manifest_is_named(content, pool, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(pool / "run", run)
    (run / "manifest.json").write_text(content)
    one_line_error(["build", run, "--format", "openai", "--out", tmp_path / "d.jsonl"], f"{run}/manifest.json")
    one_line_error(["collect", "--tasks", pool / "tasks.jsonl", "--out", run], f"{run}/manifest.json")


def test_eval_samples_minus_one_is_one_line(pool, tmp_path):
    one_line_error(["eval", "--model", "scripted:noisy", "--tasks", pool / "tasks.jsonl", "--out", tmp_path / "e",
                    "--samples", -1], "samples", "greater than or equal to 1")


def test_build_weights_minus_one_is_refused(pool, tmp_path):
    one_line_error(["build", pool / "run", "--format", "openai", "--weights", "-1", "--out", tmp_path / "d.jsonl"],
                   "weights", "greater than or equal to 0")
    assert not (tmp_path / "d.jsonl").exists()


def test_experiment_negative_size_is_refused_at_once(tmp_path):
    (tmp_path / "e.yaml").write_text(yaml.safe_dump({"name": "e", "out": str(tmp_path / "run")}))
    one_line_error(["experiment", tmp_path / "e.yaml", "sizes=[-1]"], "sizes.0", "greater than 0")
    assert not (tmp_path / "run").exists()


def test_a_bad_byte_in_trajectories_skips_that_line_only(pool, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(pool / "run", run)
    lines = (run / "trajectories.jsonl").read_bytes().splitlines(keepends=True)
    (run / "trajectories.jsonl").write_bytes(lines[0] + b'{"task_id": "\xff"}\n' + b"".join(lines[1:]))
    with pytest.warns(UserWarning, match=r"trajectories.jsonl line 2: ignored, not UTF-8 text \(byte 0xff"):
        assert summarize(run)["n"] == 8
    with pytest.warns(UserWarning, match=r"1 bad line\(s\) skipped"):
        assert filter_run(run)["n"] == 8
    assert len(kept_keys(run)) == filter_run(run)["kept"]
    (run / "filter.jsonl").write_bytes(b"\xff\n" + (run / "filter.jsonl").read_bytes())
    with pytest.warns(UserWarning, match=r"filter.jsonl line 1: ignored"):
        assert len(kept_keys(run)) == 8
    with pytest.warns(UserWarning, match=r"line 2: ignored"):
        assert oec("show", run)[0] == 0


def test_a_bad_byte_in_a_tasks_file_names_the_line(pool, tmp_path):
    bad = tmp_path / "tasks.jsonl"
    lines = (pool / "tasks.jsonl").read_bytes().splitlines(keepends=True)
    bad.write_bytes(lines[0] + b"\xff\xfe\n" + b"".join(lines[1:]))
    with pytest.raises(InputError, match=r"tasks.jsonl line 2: not UTF-8 text \(byte 0xff at column 1\)"):
        load_tasks(bad)


def test_build_selection_depends_on_the_pool_content_and_seed_only(pool, tmp_path):
    """A crash-resumed collection writes the same trajectories in another order: the sample must not change."""
    shuffled = tmp_path / "elsewhere/shuffled"  # a copy: its manifest's tasks path still leads to the tasks
    shutil.copytree(pool / "run", shuffled)
    lines = (shuffled / "trajectories.jsonl").read_text().splitlines(keepends=True)
    (shuffled / "trajectories.jsonl").write_text("".join(reversed(lines)))
    assert [t.key for t in read_trajectories(shuffled)] != [t.key for t in read_trajectories(pool / "run")]

    def picked(run, seed):
        out = tmp_path / f"{run.name}-{seed}.jsonl"
        build(BuildConfig(runs=[str(run)], out=str(out), format="openai", max_trajectories=4, seed=seed))
        return [(r["metadata"]["task_id"], r["metadata"]["sample"]) for r in map(json.loads, out.open())]

    assert picked(pool / "run", 0) == picked(shuffled, 0)
    assert picked(pool / "run", 1) == picked(shuffled, 1)


def test_a_bad_line_in_imported_problems_is_skipped(tmp_path):
    from oec.core.store import PROBLEMS, read_problems
    from oec.core.types import Problem

    good = [Problem(task_id=f"t{i}", problem_statement=f"bug {i}").model_dump_json().encode() for i in range(2)]
    (tmp_path / PROBLEMS).write_bytes(good[0] + b"\n\xff{\n" + good[1] + b"\n")
    with pytest.warns(UserWarning, match=rf"{PROBLEMS} line 2: ignored, not UTF-8"):
        assert sorted(read_problems(tmp_path)) == ["t0", "t1"]


@pytest.mark.parametrize("content", ["", "[1, 2]", "{"])
def test_a_broken_experiment_json_is_named(content, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run/experiment.json").write_text(content)
    (tmp_path / "e.yaml").write_text(yaml.safe_dump({"name": "e", "out": str(tmp_path / "run")}))
    one_line_error(["experiment", tmp_path / "e.yaml"], f"{tmp_path / 'run/experiment.json'}: ", "move it aside")


@pytest.mark.parametrize("verb", ["tasks import", "tasks mutate"])
def test_a_tasks_out_that_is_a_directory_is_a_one_line_error(verb, tmp_path):
    args = {"tasks import": ["tasks", "import", tmp_path / "i.jsonl", "--format", "swebench", "--repos-dir", tmp_path,
                             "--out", tmp_path],
            "tasks mutate": ["tasks", "mutate", "--repo", tmp_path, "--out", tmp_path]}[verb]
    one_line_error(args, str(tmp_path), "is a directory")


@pytest.mark.parametrize("breakage", ["a directory", "unreadable"])
@pytest.mark.parametrize("verb", [["filter"], ["show"], ["view"]])
def test_a_trajectories_file_that_cannot_be_read_is_one_line(verb, breakage, pool, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(pool / "run", run)
    (run / "trajectories.jsonl").unlink()
    if breakage == "a directory":
        (run / "trajectories.jsonl").mkdir()
    else:  # a link to nowhere reads as unreadable whoever runs the tests (root reads a chmod 000 file)
        (run / "trajectories.jsonl").symlink_to(tmp_path / "gone")
    one_line_error([*verb, run], "trajectories.jsonl")


@pytest.mark.parametrize("override,needle", [("env.python=/nonexistent/python", "env.python=/nonexistent/python"),
                                              ("env.disk_mb=3000", "env.disk_mb=3000")])
def test_an_env_that_cannot_run_is_refused_before_any_episode(override, needle, pool, tmp_path):
    """Once every episode of the collection ended in an error exit; now the config is refused in one line."""
    one_line_error(["collect", "--tasks", pool / "tasks.jsonl", "--mode", "expert", "--out", tmp_path / "r",
                    override], needle)
    assert not (tmp_path / "r").exists()
