"""Real SWE-bench-format instances verified as SWE-bench grades them: django (tests/runtests.py), sympy (bin/test) and
flask (pytest, with a skipped and an xfail PASS_TO_PASS test), built from their PyPI sdists by scripts/swe_corpus.py
(`make test` builds the corpus once; it is cached like the podman image).

For each instance, in the real sandbox with the corpus venv as env.python: the gold patch is resolved and an empty
change is not; oec's verdict equals swebench's own grading of the same tree (the base plus oec's recorded patch and
the test_patch, run on the host by the command swebench specifies, read by its parser and grading); every file of
the gold patch is in the recorded patch with the gold content (django's fix is library code under `django/test/`).
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from swebench.harness.constants import END_TEST_OUTPUT, MAP_REPO_VERSION_TO_SPECS, START_TEST_OUTPUT
from swebench.harness.grading import get_eval_report
from swebench.harness.test_spec.python import get_test_directives
from swebench.harness.test_spec.test_spec import TestSpec as SweSpec
from typer.testing import CliRunner

from oec.cli.main import app
from oec.core.types import Task
from oec.env.repos import patch_paths
from oec.env.sandbox_env import EnvConfig, SandboxEnv

# needs the system tools `make test` installs (bubblewrap, podman or chromium): not in `make test-fast`
pytestmark = pytest.mark.tools

CORPUS = Path(os.environ.get("OEC_SWE_CORPUS", Path.home() / ".cache/oec/swe-corpus-1"))
IMPORTABLE = {"pallets/flask": "src"}  # where the package lives in its repository (as scripts/swe_corpus.py)


@pytest.fixture(scope="module")
def tasks(tmp_path_factory) -> list[Task]:
    if not (CORPUS / "instances.jsonl").is_file():
        pytest.fail(f"no SWE corpus at {CORPUS}: build it with `python scripts/swe_corpus.py` (`make test` does)")
    out = tmp_path_factory.mktemp("swe") / "tasks.jsonl"
    r = CliRunner().invoke(app, ["tasks", "import", str(CORPUS / "instances.jsonl"), "--format", "swebench",
                                 "--repos-dir", str(CORPUS / "repos"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    return [Task.model_validate_json(line) for line in out.read_text().splitlines()]


def _venv(task: Task) -> Path:
    return CORPUS / "venvs" / task.meta["repo"].replace("/", "__") / "bin/python"


def gold_and_empty(task: Task, python: Path):
    """The verdicts of two episodes in the real sandbox on PYTHON: the gold patch applied, and nothing changed."""
    verdicts = []
    for command in (f"git apply <<'OEC_EOF'\n{task.gold_patch}OEC_EOF", "true"):
        with SandboxEnv(task, EnvConfig(python=str(python), command_timeout=60)) as env:
            assert env.execute(command).returncode == 0
            verdicts.append(env.verify())
    return verdicts


def checkout(task: Task, patches: list[str], work: Path) -> Path:
    """A clean checkout of TASK's base at WORK with PATCHES applied by plain git."""
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(Path(task.repo.path), work, symlinks=True)
    subprocess.run(["git", "checkout", "-q", task.repo.base_commit], cwd=work, check=True)
    for p in patches:
        if p.strip():
            subprocess.run(["git", "apply", "-"], cwd=work, input=p.encode(), check=True)
    return work


def official(task: Task, patch: str, tmp: Path) -> bool:
    """swebench's grading of the base + PATCH + test_patch, run on the host by swebench's own command."""
    inst = task.test_command.instance
    work = checkout(task, [patch, task.repo.test_patch], tmp / "official")
    spec = MAP_REPO_VERSION_TO_SPECS[inst["repo"]][inst["version"]]
    command = " ".join([spec["test_cmd"], *get_test_directives({**inst, "test_patch": task.repo.test_patch})])
    env = {**os.environ, "PATH": f"{_venv(task).parent}:{os.environ['PATH']}",
           "PYTHONPATH": str(work / IMPORTABLE.get(inst["repo"], ""))}
    log = subprocess.run(["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True)
    (tmp / "log.txt").write_text(f"{START_TEST_OUTPUT}\n{log.stdout}{log.stderr}\n{END_TEST_OUTPUT}\n")
    test_spec = SweSpec(instance_id=inst["instance_id"], repo=inst["repo"], version=inst["version"],
                         repo_script_list=[], eval_script_list=[], env_script_list=[], arch="x86_64",
                         FAIL_TO_PASS=json.loads(inst["FAIL_TO_PASS"]), PASS_TO_PASS=json.loads(inst["PASS_TO_PASS"]),
                         language="py", docker_specs={}, namespace=None)
    pred = {"instance_id": inst["instance_id"], "model_name_or_path": "x", "model_patch": patch}
    return get_eval_report(test_spec, pred, str(tmp / "log.txt"), include_tests_status=False)[inst["instance_id"]][
        "resolved"]


def test_every_instance_imports_with_its_official_command(tasks):
    assert [t.meta["repo"] for t in tasks] == ["django/django", "sympy/sympy", "pallets/flask"]
    assert all(t.test_command is not None for t in tasks)
    django = tasks[0].test_command.command
    assert "./tests/runtests.py" in django and "test_utils.tests" in django
    assert tasks[1].test_command.command.split()[1] == "bin/test"


@pytest.mark.parametrize("i", [0, 1, 2], ids=["django", "sympy", "flask"])
def test_verdicts_equal_swebench_grading_for_gold_and_empty(tasks, i, tmp_path):
    task = tasks[i]
    gold, empty = gold_and_empty(task, _venv(task))
    if i == 0:  # in the episode, the repository's own test command runs for the time its task gives it, not 1 s
        with SandboxEnv(task, EnvConfig(python=str(_venv(task)), command_timeout=1)) as env:
            run = env.execute(task.test_command.command)
        assert not run.timed_out and re.search(r"Ran \d+ tests", run.output), run.output[-500:]
    assert gold.resolved and gold.error is None, (gold.error, {k: v for k, v in gold.tests.items()
                                                              if v.outcome != "passed"})
    assert not empty.resolved and empty.patch == ""
    assert official(task, gold.patch, tmp_path) is True
    assert official(task, empty.patch, tmp_path) is False
    # no gold hunk dropped: the recorded patch makes every gold file what the gold patch makes it
    assert not gold.dropped and patch_paths(gold.patch) == patch_paths(task.gold_patch)
    ours, theirs = checkout(task, [gold.patch], tmp_path / "ours"), checkout(task, [task.gold_patch], tmp_path / "gold")
    assert all((ours / f).read_bytes() == (theirs / f).read_bytes() for f in patch_paths(task.gold_patch))


def test_predictions_are_what_swebench_loads(tmp_path, train_tasks):
    """`oec predictions` on a real collection: swebench's own loader reads the file, one prediction per task with
    the fields its harness requires, each patch the task's verified one."""
    from swebench.harness.constants import KEY_INSTANCE_ID, KEY_MODEL, KEY_PREDICTION
    from swebench.harness.utils import get_predictions_from_file

    from oec.core.store import read_trajectories
    from oec.rollout.collect import CollectConfig, collect
    from oec.tasks.io import write_tasks

    tasks = write_tasks(train_tasks[:3], tmp_path / "tasks.jsonl")
    collect(CollectConfig(tasks=str(tasks), out=str(tmp_path / "run"), samples=2, workers=2), progress=False)
    out = tmp_path / "preds.jsonl"
    r = CliRunner().invoke(app, ["predictions", str(tmp_path / "run"), "--out", str(out), "--model-name", "m"])
    assert r.exit_code == 0, r.output
    preds = get_predictions_from_file(str(out), "unused", "test")
    latest = {t.task_id: t for t in read_trajectories(tmp_path / "run")}
    assert [p[KEY_INSTANCE_ID] for p in preds] == list(latest) and all(p[KEY_MODEL] == "m" for p in preds)
    assert all(p[KEY_PREDICTION] == latest[p[KEY_INSTANCE_ID]].verdict.patch != "" for p in preds)
    r = CliRunner().invoke(app, ["predictions", str(tmp_path / "run"), "--out", str(tmp_path / "preds.txt")])
    assert r.exit_code == 2 and "jsonl" in r.stderr and not (tmp_path / "preds.txt").exists()


def test_instances_oec_cannot_verify_are_refused_with_a_reason(tasks, tmp_path):
    """None is imported silently: a django version swebench does not specify, with ids pytest cannot take, and a
    SWE-smith instance of a C repository (jq) are each refused, named, with why."""
    django = json.loads((CORPUS / "instances.jsonl").read_text().splitlines()[0])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**django, "instance_id": "django-unknown", "version": "0.1"}) + "\n")
    r = CliRunner().invoke(app, ["tasks", "import", str(bad), "--format", "swebench", "--repos-dir",
                                 str(CORPUS / "repos"), "--out", str(tmp_path / "t.jsonl")])
    errors = [json.loads(line) for line in (tmp_path / "t.errors.jsonl").read_text().splitlines()]
    assert [e["instance_id"] for e in errors] == ["django-unknown"], r.output
    assert "not pytest node ids" in errors[0]["reason"] and "version '0.1'" in errors[0]["reason"]
    jq = {"instance_id": "jqlang__jq.b9e19de7.func_pm_op_swap__x", "repo": "swesmith/jqlang__jq.b9e19de7",
          "patch": "", "FAIL_TO_PASS": ["tests/jqtest"], "PASS_TO_PASS": []}
    (tmp_path / "jq.jsonl").write_text(json.dumps(jq) + "\n")
    CliRunner().invoke(app, ["tasks", "import", str(tmp_path / "jq.jsonl"), "--format", "swesmith", "--repos-dir",
                             str(tmp_path), "--out", str(tmp_path / "jq-tasks.jsonl")])
    [error] = [json.loads(line) for line in (tmp_path / "jq-tasks.errors.jsonl").read_text().splitlines()]
    assert "not a Python one" in error["reason"], error


def test_a_swesmith_instance_is_graded_by_its_repository_profile(tasks, tmp_path):
    """A SWE-smith instance of a repository swesmith profiles (flask at the profile's name, over the corpus clone):
    its test command is the profile's (the whole suite, the conda activation failing harmlessly in the sandbox) and
    swesmith's own grading decides: the gold (the bug patch reversed) resolves, an empty change does not."""
    from oec.env.repos import reverse_patch
    from oec.tasks.importers import import_instances

    flask = tasks[2]
    repos = tmp_path / "repos"
    repos.mkdir()
    (repos / "pallets__flask.bc098406").symlink_to(Path(flask.repo.path))
    inst = {"instance_id": "pallets__flask.bc098406.func_pm_oec__1", "repo": "swesmith/pallets__flask.bc098406",
            "base_commit": flask.repo.base_commit, "patch": reverse_patch(flask.gold_patch),
            "FAIL_TO_PASS": ["tests/test_config.py::test_get_namespace"],
            "PASS_TO_PASS": ["tests/test_config.py::test_config_from_pyfile", "tests/test_basic.py::test_options_work"]}
    (tmp_path / "smith.jsonl").write_text(json.dumps(inst) + "\n")
    [task], errors = import_instances(tmp_path / "smith.jsonl", "swesmith", repos)
    assert errors == [] and task.test_command.harness == "swesmith" and "pytest" in task.test_command.command
    gold, empty = gold_and_empty(task, _venv(flask))
    assert gold.resolved, gold.tests
    assert not empty.resolved and empty.tests["tests/test_config.py::test_get_namespace"].outcome == "failed"
