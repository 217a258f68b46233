"""The agent's change as a patch, verified on a clean tree (in the spirit of the SWE-bench harness).

When an episode ends, every process of the agent is dead, but the workspace is still the agent's: its `.git` (config,
hooks, filters, index, `info/exclude`), its file modes, its stray files and links. Nothing there may decide the
verdict or steer a host-side write. So the host reads the workspace as plain files (never following a link, never
running git in it), compares it with the task's pristine template, and keeps only changes a fix can be made of:

- dropped: test files and anything under a test directory, every file name pytest reads configuration from,
  `conftest.py` anywhere and a root `__init__.py` (pytest imports both before any test), site hooks (`*.pth`,
  `sitecustomize.py`), bytecode, compiled modules and caches, git metadata, and a link or file standing where the
  base has a directory of such paths. Each dropped path is recorded with its reason (`Verdict.dropped`, bounded).
- kept: everything else, as bytes, with the executable bit, and symlinks as links.

The patch is computed by our own git from the kept changes alone (paths taken literally, never as pathspec magic;
a file that is not UTF-8 is diffed as binary, so the patch is text and still byte-exact). The workspace is then
emptied and rebuilt as the template with *that patch* applied by `git apply`, and the task's tests are written back
through no-follow writes. So `Verdict.patch` is by construction the change that was verified: applied to a clean
checkout of the base, it passes the same tests. tests/test_verify.py checks that on every trajectory it produces.

The test run itself holds a sentinel: a test the verifier adds under a name drawn for this run, which must fail. Code
under test runs inside the test process and could bend what that process reports (a forged report on its result
pipe, an outcome hook); a report where the sentinel passed or vanished while every task test passed is refused.
"""

from __future__ import annotations

import configparser
import os
import re
import secrets
import shutil
import stat
import subprocess
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from oec.core.errors import ChangeTooLarge
from oec.core.types import Task, TestResult, Verdict
from oec.env import harness, nofollow
from oec.env.repos import GIT_ENV, PYTEST_CONFIG, Template, template
from oec.env.sandbox.tempdirs import clear_dir

# Every name pytest reads configuration or plugins from (pytest 9 adds pytest.toml and .pytest.toml), and the
# interpreter's own start-up hooks. A fix never needs to change them; a forged verdict often does.
CONFIG_NAMES = PYTEST_CONFIG | {".pytest.ini", "pytest.toml", ".pytest.toml", "sitecustomize.py", "usercustomize.py"}
# Files pytest reads one section of: a change elsewhere in them (a dependency, a version) is kept.
SECTIONED = {"setup.cfg", "tox.ini", "pyproject.toml"}
# Imported by pytest during collection, before any test, as a conftest is: a package at the root of the tree.
ROOT_IMPORTS = {"__init__.py"}
GIT_NAMES = {".gitattributes", ".gitmodules", ".gitignore"}
CACHE_DIRS = {".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis", ".tox", ".nox",
              ".eggs"}
TEST_DIRS = {"tests", "test", "testing"}
COMPILED = re.compile(r"\.(pyc|pyo|so|pyd|dll|dylib)$")
TEST_FILE = re.compile(r"^(test_.*|.*_test)\.py$")  # pytest's default python_files
# The change is written into every trajectory record and verified file by file: past these it is not a fix.
MAX_FILES = 2000
MAX_BYTES = 16 << 20
# Dropped paths listed in a verdict; the rest are counted (an agent can drop 100k files in one command).
MAX_DROPPED = 100
# Our git, in our repository: nothing may run, nothing of a user's global or system configuration may apply, and
# a path is a path (a file named `:(exclude)*.py` must not become pathspec magic).
GIT = ["git", "-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "core.autocrlf=false",
       "-c", "core.safecrlf=false", "-c", "core.excludesFile=/dev/null", "-c", "diff.noprefix=false",
       "-c", "core.quotePath=true", "-c", "gc.auto=0", "--literal-pathspecs"]


@dataclass(frozen=True)
class Entry:
    """One path as a patch sees it: file content and executable bit, or a symlink's target."""

    data: bytes
    executable: bool = False
    link: bool = False


@dataclass
class Change:
    kept: dict[str, Entry | None] = field(default_factory=dict)  # path -> new entry, None = deleted
    dropped: dict[str, str] = field(default_factory=dict)  # path -> why it was left out (MAX_DROPPED at most)
    dropped_more: int = 0  # dropped paths past MAX_DROPPED, counted only

    def drop(self, rel: str, why: str) -> None:
        if len(self.dropped) < MAX_DROPPED:
            self.dropped[rel] = why
        else:
            self.dropped_more += 1


def drop_reason(rel: str, tests: frozenset[str] | set[str], test_dirs: set[str]) -> str | None:
    """Why a changed path REL cannot be part of a fix, or None when it can. TEST_DIRS: the directories of the task's
    tests (see test_dirs); library code under a directory merely *named* test (`django/test/html.py`,
    `sympy/testing/runtests.py`) is code a gold patch may change, and is kept."""
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
    if rel in ROOT_IMPORTS:
        return "imported by pytest before the tests (a package at the root)"
    if rel in tests or TEST_FILE.match(name):
        return "test file"
    if any(rel.startswith(d + "/") for d in test_dirs):
        return "under a test directory"
    if rel in test_dirs or any(t.startswith(rel + "/") for t in tests):
        return "in place of a test directory"
    return None


def pytest_section(name: str, data: bytes | None) -> object:
    """What pytest reads from a setup.cfg, tox.ini or pyproject.toml (its own section), for comparison; a file that
    does not parse compares unequal to everything."""
    if data is None:
        return None
    try:
        text = data.decode()
        if name == "pyproject.toml":
            return tomllib.loads(text).get("tool", {}).get("pytest")
        parser = configparser.RawConfigParser(strict=False, interpolation=None)
        parser.read_string(text)
        section = "tool:pytest" if name == "setup.cfg" else "pytest"
        return dict(parser.items(section)) if parser.has_section(section) else None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, configparser.Error):
        return object()


def test_dirs(base: Template, tests: set[str]) -> set[str]:
    """Directories of the task's test files that hold nothing but tests (a directory mixing source and tests,
    e.g. the repo root of a flat layout, is not one), and every directory named tests/test/testing above a task
    test (django's whole `tests/` tree, with its models and settings, is the test suite)."""
    out = set()
    for rel in tests:
        path = PurePosixPath(rel)
        out |= {str(p) for p in path.parents if p.name in TEST_DIRS}
        parent = str(path.parent)
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
        os.chmod(path, 0o600, follow_symlinks=False)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        return Entry(f.read(limit + 1), executable=bool(st.st_mode & stat.S_IXUSR))


def _bytes(path: Path) -> bytes | None:
    """A regular file's bytes (bounded as any kept file), None for a link or anything else."""
    entry = _read(str(path))
    return entry.data if entry is not None and not entry.link else None


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
            os.chmod(here, 0o700, follow_symlinks=False)
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
        if why and PurePosixPath(rel).name in SECTIONED and not any(rel.startswith(d + "/") for d in dirs) \
                and pytest_section(PurePosixPath(rel).name, _bytes(workspace / rel)) \
                == pytest_section(PurePosixPath(rel).name, base.read_bytes(rel)):
            why = None  # a project file whose pytest section is the base's: a fix may change the rest
        if why:
            if _differs(workspace, base, rel, files):
                change.drop(rel, why)
            continue
        entry = _read(str(workspace / rel))
        if entry is None or (rel in files and entry == _read(str(base.path / rel))):
            continue
        size += len(entry.data)
        change.kept[rel] = entry
        if len(change.kept) > MAX_FILES or size > MAX_BYTES:
            raise ChangeTooLarge(f"more than {MAX_FILES} files or {MAX_BYTES >> 20} MiB changed")
    kept_back = set(base.restore)  # what the verifier writes back, and base files whose deletion is dropped
    for rel in sorted(files - seen):
        why = drop_reason(rel, base.tests, dirs)
        if why:
            change.drop(rel, f"{why} (deleted)")
            kept_back.add(rel)
        else:
            change.kept[rel] = None
    # A link or file where the base has a directory of such paths would carry them (and the writes that put them
    # back) wherever it points: it is dropped, and the directory stays the base's.
    holders = {str(p) for rel in kept_back for p in PurePosixPath(rel).parents if str(p) != "."}
    for rel in [r for r, e in change.kept.items() if e is not None and r in holders]:
        del change.kept[rel]
        change.drop(rel, "in place of a directory holding tests or configuration")
    return change


def _git(env: dict[str, str], *args: str, input: bytes | None = None) -> bytes:
    env = {**os.environ, **GIT_ENV, "GIT_CONFIG_GLOBAL": "/dev/null", **env}
    return subprocess.run(GIT + list(args), input=input, capture_output=True, check=True, env=env, timeout=300,
                          cwd=env["GIT_WORK_TREE"]).stdout


def _is_text(data: bytes | None) -> bool:
    try:
        (data or b"").decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _attribute_pattern(rel: str) -> str:
    """A gitattributes line that matches exactly the path REL and marks it binary: wildmatch's special characters
    escaped, then the pattern C-quoted byte by byte (a name may hold spaces, quotes, newlines or non-UTF-8 bytes)."""
    glob = ("/" + re.sub(r"([\\*?\[\]!#])", r"\\\1", rel)).encode(errors="surrogateescape")
    quoted = "".join(chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\{b:03o}" for b in glob)
    return f'"{quoted}" binary\n'


def patch_of(base: Template, change: Change) -> str:
    """CHANGE as a git patch against BASE's commit. Our git, on a scratch work tree holding only the kept files,
    with a scratch index (a copy of the base's) and object store (the base's objects as alternates): nothing of the
    agent's repository, and no .gitattributes of the agent's (those are always dropped), is read. A file whose old
    or new content is not UTF-8 is marked binary, so the patch is UTF-8 text that reproduces its bytes exactly."""
    if not change.kept:
        return ""
    with tempfile.TemporaryDirectory(prefix=f"oec-verify-{os.getpid()}-") as scratch:  # swept if we are killed
        tree, git_dir = Path(scratch) / "tree", base.path / ".git"
        tree.mkdir()
        _apply(tree, {rel: e for rel, e in change.kept.items() if e is not None})
        shutil.copyfile(git_dir / "index", Path(scratch) / "index")
        (Path(scratch) / "objects").mkdir()
        binary = [rel for rel, e in change.kept.items()
                  if not _is_text(e.data if e else None) or not _is_text(base.read_bytes(rel))]
        attributes = Path(scratch) / "attributes"
        attributes.write_text("".join(_attribute_pattern(rel) for rel in binary))
        env = {"GIT_DIR": str(git_dir), "GIT_WORK_TREE": str(tree), "GIT_INDEX_FILE": f"{scratch}/index",
               "GIT_OBJECT_DIRECTORY": f"{scratch}/objects",
               "GIT_ALTERNATE_OBJECT_DIRECTORIES": str(git_dir / "objects")}
        # deleted paths are absent from the scratch tree, so `add -A` stages their deletion
        spec = b"".join(p.encode(errors="surrogateescape") + b"\0" for p in change.kept)
        _git(env, "add", "-A", "-f", "--pathspec-from-file=-", "--pathspec-file-nul", input=spec)
        out = _git(env, "-c", f"core.attributesFile={attributes}", "diff", "--cached", "--binary", "--no-color",
                   "--no-ext-diff", "--no-textconv", "--no-renames", "--full-index")
    return out.decode("utf-8")  # strict: a byte that is not UTF-8 here would be a patch that cannot be applied


def rebuild(workspace: Path, base: Template, change: Change) -> str:
    """Make WORKSPACE the base tree with the change's patch applied, and the task's test files written back for
    the test run; return the patch. The tree that is tested is made *from the patch*, so the two cannot differ."""
    patch = patch_of(base, change)
    clear_dir(workspace)
    with os.scandir(workspace) as left:
        if next(left, None) is not None:
            raise OSError(f"the workspace could not be emptied for verification ({workspace})")
    shutil.copytree(base.path, workspace, symlinks=True, dirs_exist_ok=True)
    if patch:
        _git({"GIT_DIR": str(workspace / ".git"), "GIT_WORK_TREE": str(workspace)}, "apply", "--whitespace=nowarn",
             "-", input=patch.encode())
    for rel, text in base.restore.items():
        mode = os.lstat(base.path / rel).st_mode & 0o777 if os.path.lexists(base.path / rel) else 0o644
        nofollow.write_file(workspace, rel, text.encode(), mode)  # byte for byte: CRLF test files stay CRLF
    return patch


def _apply(tree: Path, kept: dict[str, Entry | None]) -> None:
    """Write KEPT into TREE (a scratch tree of ours) without following any link on the way."""
    for rel, entry in kept.items():
        if entry is None:
            nofollow.remove(tree, rel)
        elif entry.link:
            nofollow.write_link(tree, rel, entry.data.decode(errors="surrogateescape"))
        else:
            nofollow.write_file(tree, rel, entry.data, 0o755 if entry.executable else 0o644, replace=True)


def sentinel_source(name: str) -> str:
    """The verifier's must-fail test module, under NAME: a unittest case (collected whatever a project's
    python_functions or python_classes say) and a plain function (collected under `-p no:unittest`)."""
    return (f"import unittest\n\n\nclass Test_{name}(unittest.TestCase):\n    def test_{name}(self):\n"
            f"        self.fail('the verifier sentinel must fail')\n\n\ndef test_{name}():\n"
            f"    assert False, 'the verifier sentinel must fail'\n")


def sentinel_outcomes(results: dict, sentinel: str) -> list[str]:
    return [outcome for nid, (outcome, _) in results.items() if sentinel in nid]


def verdict_from(task: Task, report: dict, patch: str, change: Change, t0: float, sentinel: str | None = None
                 ) -> Verdict:
    """The Verdict for a test report ({node id: (outcome, message)} under "results") of the task's tests. SENTINEL
    names the verifier's own must-fail tests in that run (None: the run had none)."""
    error = "tests timed out" if report.get("timed_out") else None
    if task.test_command is not None:  # the repository's own command, graded by its harness (harness.py)
        tests, resolved = harness.grade(task, report["log"])
        return Verdict(resolved=resolved, tests=tests, patch=patch, dropped=change.dropped,
                       dropped_more=change.dropped_more, duration_s=time.monotonic() - t0, error=error)
    results = report.get("results", {})
    tests = {}
    for tid in task.FAIL_TO_PASS + task.PASS_TO_PASS:
        outcome, message = results.get(tid, ("missing", "test was not run (timeout or collection error)"))
        tests[tid] = TestResult(outcome=outcome if outcome != "skipped" else "failed", message=message)
    resolved = all(t.outcome == "passed" for t in tests.values())
    if sentinel is not None:
        seen = sentinel_outcomes(results, sentinel)
        if any(o in ("passed", "skipped") for o in seen) or (resolved and "failed" not in seen):
            resolved = False
            error = (f"the test report was tampered with: the verifier's sentinel test, which must fail, was "
                     f"reported {', '.join(seen) or 'missing'}; code under test bent the test run")
    return Verdict(resolved=resolved, tests=tests, patch=patch, dropped=change.dropped,
                   dropped_more=change.dropped_more, duration_s=time.monotonic() - t0, error=error)


def verify_workspace(task: Task, workspace: Path, stop: Callable[[], object], run_tests: Callable[[str], dict],
                     errors: tuple[type[BaseException], ...] = ()) -> Verdict:
    """The whole verification, for any runtime: STOP every process of the agent, read and rebuild WORKSPACE (the
    host path of the workspace), then RUN_TESTS there with a sentinel of the name it is given (a report with
    "results" and "timed_out"). A failure of the runtime itself (ERRORS, or git on our side) is a verdict with an
    error, never resolved."""
    t0 = time.monotonic()
    base = template(task)
    sentinel = f"oec_sentinel_{secrets.token_hex(8)}"
    try:
        stop()
        try:
            change = diff(workspace, base)
        except ChangeTooLarge as e:
            return Verdict(resolved=False, tests={}, duration_s=time.monotonic() - t0,
                           error=f"not verified: the change is too large ({e})")
        patch = rebuild(workspace, base, change)
        report = run_tests(sentinel)
    except (OSError, subprocess.SubprocessError, UnicodeDecodeError, *errors) as e:
        return Verdict(resolved=False, tests={}, duration_s=time.monotonic() - t0, error=f"verifier failed: {e}")
    return verdict_from(task, report, patch, change, t0, sentinel)
