"""Imported tasks (SWE-bench / SWE-smith instances over local clones) and git workspaces (the docker runtime on
these tasks: tests/test_docker_runtime.py).

The repositories are small git repos each test builds; the expert, the sandbox and the verifier are the real ones.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from oec.core.store import read_trajectories
from oec.core.types import Task
from oec.env.repos import GIT_ENV, reverse_patch
from oec.env.sandbox_env import SandboxEnv
from oec.rollout.collect import CollectConfig, collect
from oec.tasks.importers import import_instances
from oec.tasks.io import load_tasks, write_tasks

# needs the system tools `make test` installs (bubblewrap, podman or chromium): not in `make test-fast`
pytestmark = pytest.mark.tools

OPS = '''def add(a, b):
    return a + b


def scale(x, k):
    return x * k


def neg(x):
    return -x


def square(x):
    return x * x


def clamp(x, lo, hi):
    if x < lo:
        return lo
    if x > hi:
        return lo
    return x
'''
FIXED_OPS = OPS.replace("    if x > hi:\n        return lo", "    if x > hi:\n        return hi").replace(
    "return x * k", "return k * x")
UTIL = "def double(x):\n    return x + x\n"
TESTS = '''from calc.ops import add, clamp, scale


def test_add():
    assert add(2, 3) == 5


def test_scale():
    assert scale(2, 3) == 6


def test_clamp_low():
    assert clamp(-1, 0, 3) == 0
'''
NEW_TEST = '''

def test_clamp_high():
    assert clamp(5, 0, 3) == 3


def test_triple():
    from calc.extra import triple

    assert triple(2) == 6
'''


def git(cwd, *args):
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True,
                          env={**os.environ, **GIT_ENV}).stdout


def write(root: Path, files: dict):
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


@pytest.fixture
def swebench(tmp_path):
    """A clone under REPOS/owner/calc with a buggy base commit and a fix commit (multi-file, multi-hunk, one new
    file), and the SWE-bench instance made from them."""
    repo = tmp_path / "repos" / "owner" / "calc"
    repo.mkdir(parents=True)
    write(repo, {"calc/__init__.py": "", "calc/ops.py": OPS, "calc/util.py": UTIL, "tests/test_ops.py": TESTS})
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    base = git(repo, "rev-parse", "HEAD").strip()
    write(repo, {"calc/ops.py": FIXED_OPS, "calc/util.py": UTIL + "\n\ndef half(x):\n    return x / 2\n",
                 "calc/extra.py": "def triple(x):\n    return 3 * x\n", "tests/test_ops.py": TESTS + NEW_TEST})
    git(repo, "add", "-A")  # `git diff HEAD` does not show untracked files
    patch = git(repo, "diff", "--cached", "--", "calc")
    test_patch = git(repo, "diff", "--cached", "--", "tests")
    git(repo, "commit", "-qm", "fix")  # the clone holds the fix: the workspace must not
    inst = {"instance_id": "owner__calc-1", "repo": "owner/calc", "base_commit": base, "patch": patch,
            "test_patch": test_patch, "problem_statement": "clamp(5, 0, 3) returns 0, expected 3",
            "FAIL_TO_PASS": json.dumps(["tests/test_ops.py::test_clamp_high", "tests/test_ops.py::test_triple"]),
            "PASS_TO_PASS": json.dumps(["tests/test_ops.py::test_add", "tests/test_ops.py::test_scale"]),
            "version": "1.0"}
    return tmp_path / "repos", inst


def write_jsonl(path: Path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_swebench_import_hides_the_test_patch_and_the_expert_solves_it(swebench, tmp_path):
    repos, inst = swebench
    tasks, errors = import_instances(write_jsonl(tmp_path / "i.jsonl", [inst]), "swebench", repos)
    assert errors == []
    (task,) = tasks
    assert task.repo.kind == "git" and task.test_files == ["tests/test_ops.py"]
    path = write_tasks(tasks, tmp_path / "tasks.jsonl")
    assert load_tasks(path) == tasks
    with SandboxEnv(task) as env:
        assert "test_clamp_high" not in env.execute("cat tests/test_ops.py").output  # no test_patch
        assert "extra.py" not in env.execute("ls calc").output  # no fix
        assert env.execute("git log --oneline | wc -l").output.strip() == "1"  # no history that holds it
        verdict = env.verify()  # unfixed: the new tests run (test_patch applied) and fail
        assert not verdict.resolved
        assert verdict.tests["tests/test_ops.py::test_clamp_high"].outcome == "failed"
        assert verdict.tests["tests/test_ops.py::test_add"].outcome == "passed"
    run = tmp_path / "run"
    collect(CollectConfig(tasks=str(path), out=str(run), workers=1), progress=False)
    (traj,) = read_trajectories(run / "trajectories.jsonl")
    assert traj.resolved, traj.exit_message
    commands = [s.action.command for s in traj.steps if s.action and s.action.kind == "bash"]
    assert sum(c.startswith("edit calc/ops.py") for c in commands) == 2  # two hunks, two edits
    assert any("cat > calc/extra.py <<" in c for c in commands)  # a new file is written like an agent would
    assert "tests/test_ops.py" not in traj.verdict.patch  # the test_patch is applied after the agent's patch is taken


def test_missing_repo_or_commit_is_a_per_instance_error(swebench, tmp_path):
    repos, inst = swebench
    rows = [dict(inst, instance_id="no-repo", repo="owner/nothing"), dict(inst, instance_id="no-commit",
            base_commit="0" * 40), inst, {"instance_id": "broken", "repo": "owner/calc"}]
    tasks, errors = import_instances(write_jsonl(tmp_path / "i.jsonl", rows), "swebench", repos)
    assert [t.task_id for t in tasks] == ["owner__calc-1"]
    reasons = {e["instance_id"]: e["reason"] for e in errors}
    assert "owner/nothing" in reasons["no-repo"] and "not cloned" in reasons["no-repo"]
    assert "0" * 40 in reasons["no-commit"] and "fetch" in reasons["no-commit"]
    assert "missing field" in reasons["broken"]
    out = tmp_path / "tasks.jsonl"
    proc = subprocess.run([sys.executable, "-m", "oec", "tasks", "import", "--format", "swebench",
                           str(tmp_path / "i.jsonl"), "--repos-dir", str(repos), "--out", str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "imported 1 of 4" in proc.stdout
    errs = [json.loads(x) for x in (tmp_path / "tasks.errors.jsonl").read_text().splitlines()]
    assert {e["instance_id"] for e in errs} == {"no-repo", "no-commit", "broken"}


def smith_repo(tmp_path, remove_tests: bool):
    """A SWE-smith style mirror: clean main, and a branch named after the instance with the bug committed
    ("Bug Patch") and, if REMOVE_TESTS, the FAIL_TO_PASS test file deleted on top ("Remove F2P Tests")."""
    repo = tmp_path / "repos" / "swesmith" / "owner__calc.abc1234"
    repo.mkdir(parents=True)
    write(repo, {"calc/__init__.py": "", "calc/ops.py": FIXED_OPS, "tests/test_ops.py": TESTS,
                 "tests/test_high.py": "from calc.ops import clamp\n\n\n"
                                       "def test_high():\n    assert clamp(5, 0, 3) == 3\n"})
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "Initial commit")
    iid = "owner__calc.abc1234.func_pm_op_swap__x1"
    git(repo, "checkout", "-qb", iid)
    (repo / "calc/ops.py").write_text(OPS)
    bug = git(repo, "diff")
    git(repo, "commit", "-qam", "Bug Patch")
    if remove_tests:
        git(repo, "rm", "-q", "tests/test_high.py")
        git(repo, "commit", "-qm", "Remove F2P Tests")
    head = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "-q", "main")
    return tmp_path / "repos", {"instance_id": iid, "repo": "swesmith/owner__calc.abc1234", "patch": bug,
                                "FAIL_TO_PASS": ["tests/test_high.py::test_high"],
                                "PASS_TO_PASS": ["tests/test_ops.py::test_add"], "image_name": "swesmith/x"}, head


@pytest.mark.parametrize("layout", ["branch+removed tests", "no branch: bug patch applied"])
def test_swesmith_gold_is_the_reverse_of_the_bug_patch(tmp_path, layout):
    repos, inst, head = smith_repo(tmp_path, remove_tests=layout.startswith("branch"))
    if layout.startswith("no branch"):
        git(repos / "swesmith/owner__calc.abc1234", "branch", "-qD", inst["instance_id"])
        inst["base_commit"] = None
    else:
        inst["base_commit"] = head
    tasks, errors = import_instances(write_jsonl(tmp_path / "s.jsonl", [inst]), "swesmith", repos)
    assert errors == []
    (task,) = tasks
    assert task.gold_patch == reverse_patch(inst["patch"])
    assert "+        return hi" in task.gold_patch and "-        return lo" in task.gold_patch
    assert "tests/test_high.py::test_high" in task.problem_statement  # no issue text: named from the tests
    with SandboxEnv(task) as env:
        if layout.startswith("branch"):  # the F2P test file is back only for verification
            assert "No such file" in env.execute("cat tests/test_high.py").output
        assert not env.verify().resolved
    path = write_tasks(tasks, tmp_path / "tasks.jsonl")
    collect(CollectConfig(tasks=str(path), out=str(tmp_path / "run"), workers=1), progress=False)
    (traj,) = read_trajectories(tmp_path / "run" / "trajectories.jsonl")
    assert traj.resolved, traj.exit_message


def test_old_task_files_without_repo_kind_still_load(train_tasks):
    data = train_tasks[0].model_dump()
    del data["repo"]["kind"]
    assert Task.model_validate(data).repo.kind == "inline"
    data["repo"] = {"kind": "svn", "files": {}}
    with pytest.raises(ValueError, match="repo.kind must be 'inline' or 'git'"):
        Task.model_validate(data)


def test_noisy_student_and_student_init_work_on_git_tasks(swebench, tmp_path):
    from oec.train.student import StudentConfig, init_student

    repos, inst = swebench
    tasks, _ = import_instances(write_jsonl(tmp_path / "i.jsonl", [inst]), "swebench", repos)
    path = write_tasks(tasks, tmp_path / "tasks.jsonl")
    run = tmp_path / "oec"
    collect(CollectConfig(tasks=str(path), out=str(run), mode="oec", student="scripted:noisy?error_rate=0.9",
                          samples=3, workers=1, switch="late"), progress=False)
    trajs = read_trajectories(run / "trajectories.jsonl")
    assert len(trajs) == 3 and all(t.exit_status != "error" for t in trajs), [t.exit_message for t in trajs]
    assert any(s.actor == "student" for t in trajs for s in t.steps)
    model = init_student(tasks, tmp_path / "m", StudentConfig(hidden_size=32, layers=1, heads=2, vocab_size=400,
                                                               context=256))
    assert (model / "tokenizer.json").exists()
