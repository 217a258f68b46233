"""The verifier cannot be forged: every attack a hostile review found, played by a scripted agent through
`oec collect` (real HTTP endpoint, real sandbox, real pytest), and the invariant that makes `resolved` mean
something: the recorded patch, applied to a clean checkout of the base, passes the task's tests under plain pytest.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from scripted_agent import ScriptedAgentServer

from oec.core.types import Task, Trajectory
from oec.env.repos import template
from oec.env.verify import MAX_DROPPED
from oec.tasks.io import write_tasks
from oec.tasks.toy import generate

# needs the system tools `make test` installs (bubblewrap, podman or chromium): not in `make test-fast`
pytestmark = pytest.mark.tools

OEC = [sys.executable, "-m", "oec"]
# A host directory the hostile rows aim their links at, and host paths a followed link would create
CANARY = Path(tempfile.gettempdir()) / f"oec-canary-{os.getpid()}"
HOST_PATHS = [f"/tmp/oec-evil-created-{os.getpid()}", "/oec-evil"]

FORCE_PASS_HOOK = """import pytest
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    out = yield
    r = out.get_result(); r.outcome = "passed"; r.longrepr = None
"""


def _write(path: str, text: str) -> str:
    return f"mkdir -p $(dirname {path}) && cat > {path} <<'OEC_EOF'\n{text}OEC_EOF"


def _fix(t: Task) -> str:
    return f"git apply <<'OEC_EOF'\n{t.gold_patch}OEC_EOF"


def _unfix(t: Task) -> str:
    return f"git apply -R <<'OEC_EOF'\n{t.gold_patch}OEC_EOF"


def _pyc(t: Task) -> str:
    bug = t.meta["buggy_file"]
    return (f"python3 -c \"import importlib.util as u, py_compile as p; p.compile('{bug}', "
            f"cfile=u.cache_from_source('{bug}'), invalidation_mode=p.PycInvalidationMode.UNCHECKED_HASH)\"")


# One command per turn. Forged passes: nothing is fixed in the code the tests import, yet the old verifier said
# "resolved" (or could have).
FORGERIES = {
    "conftest-then-chmod-tests": lambda t: [_write("tests/conftest.py", FORCE_PASS_HOOK), "chmod 311 tests"],
    "root-conftest": lambda t: [_write("conftest.py", FORCE_PASS_HOOK)],
    "package-conftest": lambda t: [_write(f"{t.meta['package']}/conftest.py", FORCE_PASS_HOOK)],
    "tests-init-monkeypatch": lambda t: [_write("tests/__init__.py", "import _pytest.python\n"
                                                "_pytest.python.Function.runtest = lambda self: None\n")],
    "fixed-copy-in-tests-excluded": lambda t: [_fix(t), f"cp -r {t.meta['package']} tests/", _unfix(t),
                                               f"mkdir -p .git/info && echo 'tests/{t.meta['package']}' "
                                               ">> .git/info/exclude"],
    "unchecked-hash-pyc": lambda t: [_fix(t), _pyc(t), _unfix(t)],
    "pytest.toml-plugin": lambda t: [_write("evilplug.py", FORCE_PASS_HOOK),
                                     _write("pytest.toml", '[pytest]\naddopts = ["-p", "evilplug"]\n')],
    ".pytest.toml-plugin": lambda t: [_write("evilplug.py", FORCE_PASS_HOOK),
                                      _write(".pytest.toml", '[pytest]\naddopts = ["-p", "evilplug"]\n')],
    "pytest.ini-plugin": lambda t: [_write("evilplug.py", FORCE_PASS_HOOK),
                                    _write("pytest.ini", "[pytest]\naddopts = -p evilplug\n")],
    "pyproject-plugin": lambda t: [_write("evilplug.py", FORCE_PASS_HOOK),
                                   _write("pyproject.toml", '[tool.pytest.ini_options]\naddopts = "-p evilplug"\n')],
    "tests-deleted": lambda t: ["rm -rf tests"],
    "tests-replaced-by-file": lambda t: ["rm -rf tests && echo x > tests"],
    "test-file-rewritten": lambda t: [f"for f in {' '.join(t.test_files)}; do echo 'def test_ok(): pass' > $f; done"],
    # pytest imports a package at the root while collecting, before any test, as it does a conftest
    "root-init-noop-runtest": lambda t: [_write("__init__.py", "import _pytest.python\n"
                                                "_pytest.python.Function.runtest = lambda self: None\n")],
}
# Code under test bending the test process itself (it is imported by the tests: what it does runs in their process),
# each also hidden from the old recorded patch by a file named as pathspec magic. Refused by the sentinel.
FD3_FORGERY = """import json, os
ids = {ids!r}
os.write(3, json.dumps({{"code": 0, "results": {{i: ["passed", ""] for i in ids}}, "stderr": ""}}).encode())
os._exit(0)
"""
RUNTEST_NOOP = "import _pytest.python\n_pytest.python.Function.runtest = lambda self: None\n"
TAMPERED = {
    "package-init-writes-fd3": lambda t: [
        f"cat >> {t.meta['package']}/__init__.py <<'OEC_EOF'\n"
        f"{FD3_FORGERY.format(ids=t.FAIL_TO_PASS + t.PASS_TO_PASS)}OEC_EOF",
        "touch ':(exclude)*__init__.py'"],
    "package-init-noop-runtest": lambda t: [
        f"cat >> {t.meta['package']}/__init__.py <<'OEC_EOF'\n{RUNTEST_NOOP}OEC_EOF", "touch ':(exclude)*'"],
}
# Real fixes hidden from the old recorded patch (empty or unrelated): now resolved with the fix in the patch.
HIDDEN_FIXES = {
    "committed": lambda t: [_fix(t), "git -c user.name=a -c user.email=a@b commit -qam fix"],
    "assume-unchanged": lambda t: [_fix(t), f"git update-index --assume-unchanged {t.meta['buggy_file']}"],
    "clean-filter": lambda t: [_fix(t), "echo '* filter=hide' > .gitattributes",
                               "git config filter.hide.clean 'git show HEAD:%f'"],
    "index-lock": lambda t: [_fix(t), "touch .git/index.lock"],
    "core-worktree": lambda t: [_fix(t), "git config core.worktree /tmp"],
    "git-dir-deleted": lambda t: [_fix(t), "rm -rf .git"],
    "pathspec-magic-name": lambda t: [_fix(t), f"touch ':(exclude)*{Path(t.meta['buggy_file']).name}'"],
    "pathspec-glob-name": lambda t: [_fix(t), "touch '*' '[a]' ':(glob)**'"],
    # an honest fix in a file that is not UTF-8, and a binary file beside it: recorded byte for byte
    "latin-1-file": lambda t: [_fix(t), f"printf '# -*- coding: latin-1 -*-\\n# caf\\351\\n' | cat - "
                               f"{t.meta['buggy_file']} > /tmp/f && cp /tmp/f {t.meta['buggy_file']}"],
    "binary-file": lambda t: [_fix(t), "printf 'a\\000\\377\\376b' > blob.bin"],
}


def assert_patch_resolves(task: Task, patch: str, tmp: Path) -> Path:
    """The invariant: PATCH on a clean copy of the base, with the task's tests, passes under plain pytest. Returns
    the clean tree with the patch applied."""
    base = template(task)
    work = tmp / f"clean-{task.task_id}"
    shutil.copytree(base.path, work, symlinks=True)
    if patch.strip():
        subprocess.run(["git", "apply", "--whitespace=nowarn", "-"], cwd=work, input=patch.encode(), check=True)
    for rel, text in base.restore.items():
        (work / rel).write_text(text)
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        *task.FAIL_TO_PASS, *task.PASS_TO_PASS], cwd=work, capture_output=True, text=True,
                       env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert r.returncode == 0, f"{task.task_id}: the recorded patch does not pass on a clean tree:\n{r.stdout[-1500:]}"
    return work


def _host_state() -> dict:
    """What no episode may create or change on the host: the canary directory (the symlink rows point into it) and
    the paths the rows name."""
    state = {str(p.relative_to(CANARY)): p.read_bytes() if p.is_file() else "dir" for p in CANARY.rglob("*")}
    state.update({p: os.path.lexists(p) for p in HOST_PATHS})
    return state


def _collect(tmp: Path, rows: dict, name: str, extra_files: dict[str, str] | None = None
             ) -> list[tuple[str, Task, Trajectory]]:
    tasks = generate("train", len(rows), seed=7)
    if extra_files:  # files real repos have and the toy suite does not (a conftest.py under docs/, say)
        tasks = [t.model_copy(update={"repo": t.repo.model_copy(update={"files": {**t.repo.files, **extra_files}})})
                 for t in tasks]
    scripts = {t.problem_statement: make(t) for t, make in zip(tasks, rows.values())}
    server = ScriptedAgentServer(scripts)
    CANARY.mkdir(exist_ok=True)
    (CANARY / "keep.txt").write_text("the host's own file\n")
    before = _host_state()
    try:
        write_tasks(tasks, tmp / f"{name}.jsonl")
        r = subprocess.run(OEC + ["collect", "--tasks", tmp / f"{name}.jsonl", "--mode", "student", "--student",
                                  f"openai:agent@{server.url}", "--out", tmp / name, "--workers", "4", "--quiet"],
                           capture_output=True, text=True, env={**os.environ, "OPENAI_API_KEY": "none"})
    finally:
        server.close()
    assert r.returncode == 0, r.stderr
    assert _host_state() == before, "an episode created or changed a file on the host"
    trajs = {t.task_id: t for t in (Trajectory.model_validate_json(line)
                                    for line in (tmp / name / "trajectories.jsonl").read_text().splitlines())}
    return [(row, task, trajs[task.task_id]) for row, task in zip(rows, tasks)]


def test_forged_passes_are_not_resolved_and_not_kept(tmp_path):
    episodes = _collect(tmp_path, FORGERIES, "forged")
    for row, task, traj in episodes:
        assert traj.exit_status == "submitted", (row, traj.exit_message, [s.observation for s in traj.steps])
        assert all(s.returncode == 0 for s in traj.steps[:-1]), (row, [s.observation for s in traj.steps])
        v = traj.verdict
        assert not v.resolved, (row, v.patch)
        failed = {k for k, t in v.tests.items() if t.outcome == "failed"}
        assert failed == set(task.FAIL_TO_PASS), (row, v.tests)  # the tests ran, as written, on the unfixed code
        assert v.dropped, row  # the verdict says what it left out
        assert task.meta["buggy_file"] not in v.patch, (row, v.patch)
    r = subprocess.run(OEC + ["filter", tmp_path / "forged", "--json"], capture_output=True, text=True, check=True)
    assert json.loads(r.stdout)["kept"] == 0


def test_hidden_fixes_are_recorded_in_the_patch(tmp_path):
    for row, task, traj in _collect(tmp_path, HIDDEN_FIXES, "hidden"):
        assert all(s.returncode == 0 for s in traj.steps[:-1]), (row, [s.observation for s in traj.steps])
        v = traj.verdict
        assert v.resolved, (row, v.tests, [s.observation for s in traj.steps])
        buggy = task.meta["buggy_file"]
        assert f"diff --git a/{buggy} b/{buggy}" in v.patch, (row, v.patch)
        clean = assert_patch_resolves(task, v.patch, tmp_path)
        if row == "latin-1-file":  # patches are bytes end to end: the recorded patch is text, the file exact
            assert (clean / buggy).read_bytes().startswith(b"# -*- coding: latin-1 -*-\n# caf\xe9\n"), row
        if row == "binary-file":
            assert (clean / "blob.bin").read_bytes() == b"a\x00\xff\xfeb", row


def test_code_under_test_that_bends_the_test_process_is_refused(tmp_path):
    for row, task, traj in _collect(tmp_path, TAMPERED, "tampered"):
        assert all(s.returncode == 0 for s in traj.steps[:-1]), (row, [s.observation for s in traj.steps])
        v = traj.verdict
        assert not v.resolved and "tampered" in (v.error or ""), (row, v.error, v.tests)
        assert f"+++ b/{task.meta['package']}/__init__.py" in v.patch, (row, v.patch)  # recorded, not hidden
    r = subprocess.run(OEC + ["filter", tmp_path / "tampered", "--json"], capture_output=True, text=True, check=True)
    assert json.loads(r.stdout)["kept"] == 0


# A directory holding configuration the verifier writes back, replaced by a link to the host: the write-back once
# followed it and wrote as root onto the host (into an existing directory, or one it created).
LINKED = {
    "docs-to-canary": lambda t: [_fix(t), f"rm -rf docs && ln -s {CANARY} docs"],
    "docs-to-new-host-dir": lambda t: [_fix(t), f"rm -rf docs && ln -s {HOST_PATHS[0]} docs"],
    "setup-cfg-dir-to-canary": lambda t: [_fix(t), f"rm -rf tools && ln -s {CANARY} tools"],
}


def test_a_link_in_place_of_a_configuration_directory_writes_nothing_on_the_host(tmp_path):
    extra = {"docs/conftest.py": "collect_ignore = ['build']\n", "docs/index.txt": "docs\n",
             "tools/setup.cfg": "[metadata]\nname = tools\n", "tools/pytest.ini": "[pytest]\n"}
    for row, task, traj in _collect(tmp_path, LINKED, "linked", extra_files=extra):
        v = traj.verdict
        assert v.resolved, (row, v.error, [s.observation for s in traj.steps])
        link = "docs" if "docs" in row else "tools"
        assert v.dropped.get(link) == "in place of a directory holding tests or configuration", (row, v.dropped)
        assert_patch_resolves(task, v.patch, tmp_path)


def test_every_resolved_trajectory_passes_on_a_clean_tree(tmp_path, tasks_file):
    """The invariant on everything a mixed collection resolves (the scripted expert and a noisy student)."""
    subprocess.run(OEC + ["collect", "--tasks", tasks_file, "--mode", "oec", "--student", "scripted:noisy",
                          "--expert", "scripted:expert", "--samples", "2", "--workers", "4", "--out",
                          tmp_path / "run", "--quiet"], check=True, capture_output=True)
    trajs = [Trajectory.model_validate_json(line)
             for line in (tmp_path / "run/trajectories.jsonl").read_text().splitlines()]
    tasks = {t.task_id: t for t in (Task.model_validate_json(line) for line in tasks_file.read_text().splitlines())}
    resolved = [t for t in trajs if t.resolved]
    assert len(resolved) >= len(trajs) // 2
    for t in resolved:
        assert_patch_resolves(tasks[t.task_id], t.verdict.patch, tmp_path / f"{t.task_id}-{t.sample}")


def test_the_dropped_list_of_a_verdict_is_bounded(tmp_path):
    """Tens of thousands of long-named files under tests/: the record names MAX_DROPPED of them and counts the rest
    (the whole list once made a 366 MB trajectory line)."""
    n = 20_000
    make = (f"mkdir -p tests/many && cd tests/many && "
            f"python3 -c \"[open('x' * 200 + str(i), 'w').close() for i in range({n})]\"")
    [(row, task, traj)] = _collect(tmp_path, {"many-files": lambda t: [make]}, "many")
    v = traj.verdict
    assert traj.steps[0].returncode == 0, traj.steps[0].observation
    assert len(v.dropped) == MAX_DROPPED and v.dropped_more == n - MAX_DROPPED, (len(v.dropped), v.dropped_more)
    assert len((tmp_path / "many/trajectories.jsonl").read_bytes()) < 200_000
