"""The agent's change as a patch, verified on a clean tree (in the spirit of the SWE-bench harness).

When an episode ends, every process of the agent is dead, but the workspace is still the agent's: its `.git` (config,
hooks, filters, index, `info/exclude`), its file modes, its stray files. Nothing there may decide the verdict. So the
host reads the workspace as plain files (never following a link, never running git in it), compares it with the
task's pristine template, and keeps only changes a fix can be made of:

- dropped: test files and anything under a test directory, every file name pytest reads configuration from,
  `conftest.py` anywhere, site hooks (`*.pth`, `sitecustomize.py`), bytecode, compiled modules and caches, git
  metadata. Each dropped path is recorded with its reason (`Verdict.dropped`).
- kept: everything else, as bytes, with the executable bit, and symlinks as links.

The patch is computed by our own git from the kept changes alone, the workspace is rebuilt as the template plus those
changes, and the task's tests (with `test_patch`) are written back before they run.
So `Verdict.patch` is exactly the change that was verified: applied to a clean checkout of the base, it passes the
same tests. tests/test_verify.py checks that on every resolved trajectory it produces.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from oec.env.repos import GIT_ENV, PYTEST_CONFIG, Template, template
from oec.core.types import Task, TestResult, Verdict

# Every name pytest reads configuration or plugins from (pytest 9 adds pytest.toml and .pytest.toml), and the
# interpreter's own start-up hooks. A fix never needs to change them; a forged verdict often does.
CONFIG_NAMES = PYTEST_CONFIG | {".pytest.ini", "pytest.toml", ".pytest.toml", "sitecustomize.py", "usercustomize.py"}
GIT_NAMES = {".gitattributes", ".gitmodules", ".gitignore"}
CACHE_DIRS = {".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", ".tox", ".nox",
              ".eggs"}
TEST_DIRS = {"tests", "test", "testing"}
COMPILED = re.compile(r"\.(pyc|pyo|so|pyd|dll|dylib)$")
TEST_FILE = re.compile(r"^(test_.*|.*_test)\.py$")  # pytest's default python_files
# The change is written into every trajectory record and verified file by file: past these it is not a fix.
MAX_FILES = 2000
MAX_BYTES = 16 << 20
# Our git, in our repository: nothing may run, and nothing of a user's global or system configuration may apply.
GIT = ["git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "core.autocrlf=false",
       "-c", "core.safecrlf=false", "-c", "core.excludesFile=/dev/null", "-c", "diff.noprefix=false"]


class ChangeTooLarge(ValueError):
    """The workspace differs from the base in more files or bytes than a fix can; it is not verified."""


@dataclass(frozen=True)
class Entry:
    """One path as a patch sees it: file content and executable bit, or a symlink's target."""

    data: bytes
    executable: bool = False
    link: bool = False


@dataclass
class Change:
    kept: dict[str, Entry | None] = field(default_factory=dict)  # path -> new entry, None = deleted
    dropped: dict[str, str] = field(default_factory=dict)  # path -> why it was left out


def drop_reason(rel: str, tests: frozenset[str] | set[str], test_dirs: set[str]) -> str | None:
    """Why a changed path REL cannot be part of a fix, or None when it can."""
    parts = PurePosixPath(rel).parts
    name = parts[-1]
    if any(p in CACHE_DIRS or p.endswith(".egg-info") for p in parts[:-1]):
        return "cache or git metadata"
    if name in GIT_NAMES:
        return "git metadata"
    if COMPILED.search(name):
        return "bytecode or compiled module"
    if name in CONFIG_NAMES or name.endswith(".pth"):
        return "pytest or interpreter configuration"
    if rel in tests or TEST_FILE.match(name):
        return "test file"
    if any(p in TEST_DIRS for p in parts[:-1]) or any(rel.startswith(d + "/") for d in test_dirs):
        return "under a test directory"
    if name in TEST_DIRS or rel in test_dirs or any(t.startswith(rel + "/") for t in tests):
        return "in place of a test directory"
    return None


def test_dirs(base: Template, tests: set[str]) -> set[str]:
    """Directories of the task's test files that hold nothing but tests (a directory mixing source and tests,
    e.g. the repo root of a flat layout, is not one)."""
    out = set()
    for rel in tests:
        parent = str(PurePosixPath(rel).parent)
        if parent == ".":
            continue
        siblings = [f for f in base.files if str(PurePosixPath(f).parent) == parent and f.endswith(".py")]
        if all(f in tests or TEST_FILE.match(PurePosixPath(f).name) or f.endswith(("/__init__.py", "/conftest.py"))
               for f in siblings):
            out.add(parent)
    return out


def _read(path: str, limit: int = MAX_BYTES) -> Entry | None:
    """A file or symlink as an Entry, without following links or blocking on a FIFO; None for anything else."""
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return Entry(os.readlink(path).encode(errors="surrogateescape"), link=True)
    if not stat.S_ISREG(st.st_mode):
        return None  # FIFOs, sockets, devices: git has no such thing either
    if st.st_size > limit:
        raise ChangeTooLarge(f"{path} holds {st.st_size} bytes")
    if not st.st_mode & stat.S_IRUSR:  # the agent's chmod 000 on a file we own: the owner may read it again
        os.chmod(path, 0o600)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        return Entry(f.read(limit + 1), executable=bool(st.st_mode & stat.S_IXUSR))


def _walk(root: str):
    """Relative paths of every file and link under ROOT but its .git, without recursion (an agent can nest
    directories thousands deep) and without following links."""
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        here = os.path.join(root, rel_dir) if rel_dir else root
        try:
            entries = list(os.scandir(here))
        except PermissionError:  # the agent's chmod on a directory of ours: we are its owner
            os.chmod(here, 0o700)
            entries = list(os.scandir(here))
        except OSError:  # deeper than PATH_MAX: pytest cannot reach it either
            continue
        for e in entries:
            rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
            if not e.is_dir(follow_symlinks=False):
                yield rel
            elif rel != ".git":
                stack.append(rel)


def _differs(workspace: Path, base: Template, rel: str, files: set[str]) -> bool:
    """Whether a path the agent may not change differs from the base (its size alone may tell, so a huge file in a
    dropped place costs nothing to read)."""
    new, old = os.lstat(workspace / rel), os.lstat(base.path / rel) if rel in files else None
    if old is None or (new.st_mode, new.st_size) != (old.st_mode, old.st_size):
        return True
    return _read(str(workspace / rel), 1 << 30) != _read(str(base.path / rel), 1 << 30)


def diff(workspace: Path, base: Template) -> Change:
    """What the agent changed in WORKSPACE relative to BASE, split into what a fix may hold and what is dropped."""
    dirs = test_dirs(base, set(base.tests))
    files = {f for f in base.files if os.path.lexists(base.path / f)}  # a test_patch may add files the base lacks
    change, seen, size = Change(), set(), 0
    for rel in _walk(str(workspace)):
        seen.add(rel)
        why = drop_reason(rel, base.tests, dirs)
        if why:
            if _differs(workspace, base, rel, files):
                change.dropped[rel] = why
            continue
        entry = _read(str(workspace / rel))
        if entry is None or (rel in files and entry == _read(str(base.path / rel))):
            continue
        size += len(entry.data)
        change.kept[rel] = entry
        if len(change.kept) > MAX_FILES or size > MAX_BYTES:
            raise ChangeTooLarge(f"more than {MAX_FILES} files or {MAX_BYTES >> 20} MiB changed")
    for rel in sorted(files - seen):
        why = drop_reason(rel, base.tests, dirs)
        if why:
            change.dropped[rel] = f"{why} (deleted)"
        else:
            change.kept[rel] = None
    return change


def _git(env: dict[str, str], *args: str, input: bytes | None = None) -> str:
    env = {**os.environ, **GIT_ENV, "GIT_CONFIG_GLOBAL": "/dev/null", **env}
    return subprocess.run(GIT + list(args), input=input, capture_output=True, check=True, env=env, timeout=300,
                          cwd=env["GIT_WORK_TREE"]).stdout.decode(errors="replace")


def _clear(path: Path) -> None:
    """Empty PATH, whatever modes the agent left on what is inside (we own it all, so chmod is allowed)."""
    for attempt in range(2):
        children = [str(c) for c in path.iterdir()]
        if not children:
            return
        if attempt:  # a directory the agent made read-only kept its contents
            subprocess.run(["chmod", "-R", "u+rwx", "--", *children], capture_output=True, check=False)
        subprocess.run(["rm", "-rf", "--one-file-system", "--", *children], capture_output=True, check=False)


def patch_of(base: Template, change: Change) -> str:
    """CHANGE as a git patch against BASE's commit. Our git, on a scratch work tree holding only the kept files,
    with a scratch index (a copy of the base's) and object store (the base's objects as alternates): nothing of the
    agent's repository, and no .gitattributes of the agent's (those are always dropped), is read."""
    if not change.kept:
        return ""
    with tempfile.TemporaryDirectory(prefix=f"oec-verify-{os.getpid()}-") as scratch:  # swept if we are killed
        tree, git_dir = Path(scratch) / "tree", base.path / ".git"
        tree.mkdir()
        _apply(tree, {rel: e for rel, e in change.kept.items() if e is not None})
        shutil.copyfile(git_dir / "index", Path(scratch) / "index")
        (Path(scratch) / "objects").mkdir()
        env = {"GIT_DIR": str(git_dir), "GIT_WORK_TREE": str(tree), "GIT_INDEX_FILE": f"{scratch}/index",
               "GIT_OBJECT_DIRECTORY": f"{scratch}/objects", "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(git_dir / "objects")}
        # deleted paths are absent from the scratch tree, so `add -A` stages their deletion
        spec = b"".join(p.encode(errors="surrogateescape") + b"\0" for p in change.kept)
        _git(env, "add", "-A", "-f", "--pathspec-from-file=-", "--pathspec-file-nul", input=spec)
        return _git(env, "diff", "--cached", "--binary", "--no-color", "--no-ext-diff", "--no-textconv",
                    "--no-renames", "--full-index")


def rebuild(workspace: Path, base: Template, change: Change) -> str:
    """Make WORKSPACE the base tree plus the kept change, with the task's test files written back for the test
    run, and return the change as a patch (a/ b/ prefixes, binary files included)."""
    patch = patch_of(base, change)
    _clear(workspace)
    shutil.copytree(base.path, workspace, symlinks=True, dirs_exist_ok=True)
    _apply(workspace, change.kept)
    for rel, text in base.restore.items():
        path = workspace / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode())  # byte for byte: CRLF test files stay CRLF
    return patch


def _apply(tree: Path, kept: dict[str, Entry | None]) -> None:
    """Write KEPT into TREE; deletions first, so that a file the agent replaced with a directory is deleted before
    the directory's files are written."""
    for rel, entry in sorted(kept.items(), key=lambda kv: kv[1] is not None):
        path = tree / rel
        for parent in list(reversed(PurePosixPath(rel).parents))[1:]:  # a file where the change needs a directory
            p = tree / parent
            if p.is_symlink() or (p.exists() and not p.is_dir()):
                p.unlink()
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()
        if entry is None:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if entry.link:
            os.symlink(entry.data.decode(errors="surrogateescape"), path)
        else:
            path.write_bytes(entry.data)
            path.chmod(0o755 if entry.executable else 0o644)


def verdict_from(task: Task, report: dict, patch: str, dropped: dict[str, str], t0: float) -> Verdict:
    """The Verdict for a test report ({node id: (outcome, message)} under "results") of the task's tests."""
    results = report.get("results", {})
    tests = {}
    for tid in task.FAIL_TO_PASS + task.PASS_TO_PASS:
        outcome, message = results.get(tid, ("missing", "test was not run (timeout or collection error)"))
        tests[tid] = TestResult(outcome=outcome if outcome != "skipped" else "failed", message=message)
    resolved = all(t.outcome == "passed" for t in tests.values())
    error = "tests timed out" if report.get("timed_out") else None
    return Verdict(resolved=resolved, tests=tests, patch=patch, dropped=dropped, duration_s=time.monotonic() - t0,
                   error=error)


def verify_workspace(task: Task, workspace: Path, stop: Callable[[], object], run_tests: Callable[[], dict],
                     errors: tuple[type[BaseException], ...] = ()) -> Verdict:
    """The whole verification, for any runtime: STOP every process of the agent, read and rebuild WORKSPACE (the
    host path of the workspace), then RUN_TESTS there (a report with "results" and "timed_out"). A failure of the
    runtime itself (ERRORS, or git on our side) is a verdict with an error, never resolved."""
    t0 = time.monotonic()
    base = template(task)
    try:
        stop()
        try:
            change = diff(workspace, base)
        except ChangeTooLarge as e:
            return Verdict(resolved=False, tests={}, duration_s=time.monotonic() - t0,
                           error=f"not verified: the change is too large ({e})")
        patch = rebuild(workspace, base, change)
        report = run_tests()
    except (OSError, subprocess.SubprocessError, *errors) as e:
        return Verdict(resolved=False, tests={}, duration_s=time.monotonic() - t0, error=f"verifier failed: {e}")
    return verdict_from(task, report, patch, change.dropped, t0)
