"""Task repositories on the host: the template repo an episode's workspace is copied from, and what verification
writes back into it.

A template is built once per task per process. For an `inline` repo it holds the task's files; for a `git` repo the
tree of `base_commit` checked out of the local clone (plus `bug_patch`). Either way it is a fresh repo with one commit,
so `git diff` shows exactly the agent's changes and no history (a local clone may hold the very commit that fixed
the bug). The `test_patch` of a git repo never reaches the workspace: verification writes the patched test files in
just before the tests run.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from oec.core.errors import MaterialiseError
from oec.core.types import GitRepo, Task
from oec.env.sandbox.tempdirs import owned_tempdir

# Fixed identity and dates: a template repo's commit hash is the same on every machine.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "oec", "GIT_AUTHOR_EMAIL": "oec@localhost", "GIT_COMMITTER_NAME": "oec",
    "GIT_COMMITTER_EMAIL": "oec@localhost", "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+0000",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+0000", "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent",
    # No background git: on a tree of thousands of files a commit starts a detached `gc --auto`, which deletes loose
    # objects while the template is being copied ("No such file .git/objects/..."; 1 run in 3 on django).
    "GIT_CONFIG_COUNT": "2", "GIT_CONFIG_KEY_0": "gc.auto", "GIT_CONFIG_VALUE_0": "0",
    "GIT_CONFIG_KEY_1": "maintenance.auto", "GIT_CONFIG_VALUE_1": "false",
}
PYTEST_CONFIG = {"conftest.py", "pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml"}


def git(cwd: str | Path, *args: str, input: bytes | None = None, env: dict | None = None) -> str:
    """Run git in CWD; raise CalledProcessError (with stderr) on failure."""
    out = subprocess.run(["git", "-C", str(cwd), *args], input=input, capture_output=True, check=True,
                         env={**os.environ, **GIT_ENV, **(env or {})})
    return out.stdout.decode(errors="replace")


def patch_paths(patch: str) -> list[str]:
    """Files a unified diff changes (new names; deleted files under their old name), in order."""
    out: list[str] = []
    old = None
    for line in patch.splitlines():
        if line.startswith("--- "):
            old = line[4:].split("\t")[0].removeprefix("a/")
        elif line.startswith("+++ "):
            new = line[4:].split("\t")[0].removeprefix("b/")
            path = old if new == "/dev/null" else new
            if path and path not in out:
                out.append(path)
    return out


def reverse_patch(patch: str) -> str:
    """The diff that undoes PATCH (what `git apply -R` applies): old and new sides swapped, file by file."""
    out: list[str] = []
    left = [0, 0]  # lines of the current hunk still to come on the old and new side (0, 0: between hunks)
    lines = patch.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        line = lines[i]
        body, eol = line.rstrip("\r\n"), line[len(line.rstrip("\r\n")):]
        i += 1
        if left != [0, 0]:  # inside a hunk: counting lines is the only safe way to tell '--- x' from a header
            tag = body[:1]
            if tag in ("-", " ", ""):
                left[0] -= 1
            if tag in ("+", " ", ""):
                left[1] -= 1
            out.append({"-": "+", "+": "-"}.get(tag, tag) + body[1:] + eol if tag != "" else line)
            left = [max(left[0], 0), max(left[1], 0)]
            continue
        if body.startswith("@@ "):
            old, new = body[3:].split(" @@")[0].split()[:2]
            rest = body[3:].partition(" @@")[2]
            left = [_count(old), _count(new)]
            out.append(f"@@ -{new[1:]} +{old[1:]} @@{rest}{eol}")
        elif body.startswith("--- ") and i < len(lines) and lines[i].startswith("+++ "):
            new_body = lines[i].rstrip("\r\n")
            i += 1
            out.append("--- " + _side(new_body[4:], "a/") + eol)
            out.append("+++ " + _side(body[4:], "b/") + eol)
        elif body.startswith("new file mode"):
            out.append("deleted file mode" + body[len("new file mode"):] + eol)
        elif body.startswith("deleted file mode"):
            out.append("new file mode" + body[len("deleted file mode"):] + eol)
        elif body.startswith("index ") and ".." in body:
            ids, _, mode = body[6:].partition(" ")
            a, b = ids.split("..", 1)
            out.append(f"index {b}..{a}{' ' + mode if mode else ''}{eol}")
        else:
            out.append(line)
    return "".join(out)


def _count(rng: str) -> int:
    """Lines a hunk range covers: '-3,4' -> 4, '+7' -> 1."""
    return int(rng[1:].split(",")[1]) if "," in rng else 1


def _side(name: str, prefix: str) -> str:
    """A header path re-prefixed for the other side: `a/x` <-> `b/x`; /dev/null stays."""
    if name.startswith("/dev/null"):
        return name
    return prefix + name[2:] if name[:2] in ("a/", "b/") else name


@dataclass
class Template:
    """A task's base state on the host (never modified after it is built)."""

    path: Path
    files: list[str]
    restore: dict[str, str] = field(default_factory=dict)  # the task's test files, written back before the tests run
    tests: frozenset[str] = frozenset()  # the task's test files (test_patch's too): never part of the agent's change

    def read_bytes(self, rel: str) -> bytes | None:
        """A base file's bytes, or None when the base has no such regular file (a link is not followed)."""
        path = self.path / rel
        if not path.is_file() or path.is_symlink():
            return None
        return path.read_bytes()

    def read(self, rel: str) -> str | None:
        """A base file's text as the workspace holds it (CRLF kept, as the expert reads the workspace), or None
        when the base has no such (text) file."""
        try:
            return (self.path / rel).read_bytes().decode()
        except (OSError, UnicodeDecodeError):
            return None


_templates: dict[str, Template] = {}
_lock = threading.Lock()
_root: Path | None = None


def template(task: Task) -> Template:
    """The task's template, built on first use (thread-safe)."""
    global _root
    # keyed by content too: two task files may reuse an id for different repos
    key = task.task_id + ":" + hashlib.sha256(task.repo.model_dump_json().encode()).hexdigest()
    with _lock:
        if key in _templates:
            return _templates[key]
        if _root is None:
            _root = owned_tempdir("templates")  # named by our pid: a collection sweeps it if we are killed
            atexit.register(shutil.rmtree, _root, True)
        path = _root / f"t{len(_templates)}"
        try:
            built = _build(task, path)
        except (OSError, subprocess.CalledProcessError) as e:
            shutil.rmtree(path, ignore_errors=True)
            detail = e.stderr.decode(errors="replace").strip() if isinstance(e, subprocess.CalledProcessError) else e
            raise MaterialiseError(f"task {task.task_id}: cannot build its workspace: {detail}") from e
        except MaterialiseError:
            shutil.rmtree(path, ignore_errors=True)
            raise
        _templates[key] = built
        return built


def _build(task: Task, path: Path) -> Template:
    path.mkdir(parents=True)
    repo = task.repo
    if repo.kind == "inline":
        for rel, content in repo.files.items():
            target = (path / rel).resolve()
            if not target.is_relative_to(path.resolve()):
                raise MaterialiseError(f"task {task.task_id}: repo.files path {rel!r} escapes the workspace")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
    else:
        check_commit(repo.path, repo.base_commit, task.task_id)
        # a private index: the clone's own index and work tree are left alone
        with tempfile.TemporaryDirectory() as scratch:
            env = {"GIT_INDEX_FILE": os.path.join(scratch, "index"), "GIT_WORK_TREE": str(path)}
            git(repo.path, "read-tree", repo.base_commit, env=env)
            git(repo.path, "checkout-index", "-a", "-f", env=env)
    # --template=: no sample hooks to copy (most of the cost of `git init`)
    git(path, "init", "-q", "-b", "main", "--template=")
    git(path, "config", "gc.auto", "0")  # the workspaces copied from it start no background gc either
    if repo.kind == "git" and repo.bug_patch:
        _apply(path, repo.bug_patch, task.task_id, "bug_patch")
    git(path, "add", "-A")
    git(path, "commit", "-q", "--allow-empty", "-m", "base")
    files = [f for f in git(path, "ls-files", "-z").split("\0") if f]
    tests = set(task.test_files)
    if repo.kind == "git" and repo.test_patch:
        tests |= set(patch_paths(repo.test_patch))
    restore = {}
    for rel in files:
        if rel in tests:
            text = Template(path, files).read(rel)
            if text is not None:
                restore[rel] = text
    if repo.kind == "git" and repo.test_patch:
        restore.update(_patched(path, repo, task.task_id))
        files = sorted(set(files) | set(restore))
    return Template(path, files, restore, frozenset(tests))


def check_commit(repo_path: str | Path, commit: str, what: str) -> str:
    """The full hash of COMMIT in the clone at REPO_PATH; MaterialiseError naming WHAT if either is missing."""
    if not Path(repo_path).is_dir():
        raise MaterialiseError(f"{what}: repository {repo_path} does not exist (clone it there, or pass --repos-dir)")
    try:
        return git(repo_path, "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}").strip()
    except subprocess.CalledProcessError:
        raise MaterialiseError(f"{what}: commit {commit} is not in {repo_path} "
                               f"(fetch it: git -C {repo_path} fetch origin {commit})") from None


def _apply(cwd: Path, patch: str, task_id: str, what: str) -> None:
    try:
        git(cwd, "apply", "--whitespace=nowarn", "-", input=patch.encode())
    except subprocess.CalledProcessError as e:
        raise MaterialiseError(f"task {task_id}: its {what} does not apply: "
                               f"{e.stderr.decode(errors='replace').strip()}") from None


def _patched(template_path: Path, repo: GitRepo, task_id: str) -> dict[str, str]:
    """The test files as verification sees them: the base versions with test_patch applied (in a scratch copy)."""
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for rel in patch_paths(repo.test_patch):
            if (template_path / rel).is_file():
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(template_path / rel, root / rel)
        git(root, "init", "-q", "--template=")
        _apply(root, repo.test_patch, task_id, "test_patch")
        out = {}
        for rel in patch_paths(repo.test_patch):
            try:
                out[rel] = (root / rel).read_bytes().decode()  # CRLF kept: written back byte for byte
            except (OSError, UnicodeDecodeError):  # deleted or binary: verification cannot write it back
                continue
        return out
