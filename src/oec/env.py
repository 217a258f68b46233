"""The agent's environment: a task's workspace (a git repo), a sandboxed persistent shell, and the verifier.

Workspaces are copied from a per-task template repo built once per process, so an episode's set-up is a directory
copy rather than `git init` + commit. Sandboxes are pooled slots (see sandbox/shell.py) with pytest already imported,
so `runtests` and the final verification each cost one fork instead of a cold interpreter and pytest start.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from oec.sandbox.bwrap import WORKSPACE
from oec.sandbox.shell import POOL, CommandResult, SandboxError, Slot, SlotPool
from oec.types import Task, TestResult, Verdict

# Fixed identity and dates: the template repo's commit hash is the same on every machine.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "oec", "GIT_AUTHOR_EMAIL": "oec@localhost", "GIT_COMMITTER_NAME": "oec",
    "GIT_COMMITTER_EMAIL": "oec@localhost", "GIT_AUTHOR_DATE": "2000-01-01T00:00:00+0000",
    "GIT_COMMITTER_DATE": "2000-01-01T00:00:00+0000", "GIT_CONFIG_NOSYSTEM": "1", "HOME": "/nonexistent",
}


class EnvConfig(BaseModel):
    """Limits of the sandboxed shell and the verifier."""

    model_config = ConfigDict(extra="forbid")
    command_timeout: float = Field(10.0, gt=0, description="seconds before a command is killed (the shell restarts)")
    output_limit: int = Field(1500, ge=100, description="bytes of output shown; the rest is cut, and it says so")
    verify_timeout: float = Field(60.0, gt=0, description="seconds for the final test run")


class MaterialiseError(RuntimeError):
    """A task's workspace could not be built; the message names the task and the reason."""


_templates: dict[str, Path] = {}
_templates_lock = threading.Lock()
_template_root: Path | None = None


def _template(task: Task) -> Path:
    """A git repo with the task's files committed at its base state; built once per task per process."""
    global _template_root
    # keyed by content too: two task files may reuse an id for different repos
    key = task.task_id + ":" + hashlib.sha256(task.repo.model_dump_json().encode()).hexdigest()
    with _templates_lock:
        if key in _templates:
            return _templates[key]
        if _template_root is None:
            _template_root = Path(tempfile.mkdtemp(prefix="oec-templates-"))
            atexit.register(shutil.rmtree, _template_root, True)
        path = _template_root / f"t{len(_templates)}"
        try:
            for rel, content in task.repo.files.items():
                target = (path / rel).resolve()
                if not target.is_relative_to(path.resolve()):
                    raise MaterialiseError(f"task {task.task_id}: repo.files path {rel!r} escapes the workspace")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
            env = {**os.environ, **GIT_ENV}
            # --template=: no sample hooks to copy (most of the cost of `git init`)
            for cmd in (["init", "-q", "-b", "main", "--template="], ["add", "-A"], ["commit", "-q", "-m", "base"]):
                subprocess.run(["git", "-C", str(path), *cmd], env=env, check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError) as e:
            shutil.rmtree(path, ignore_errors=True)
            detail = e.stderr.decode(errors="replace").strip() if isinstance(e, subprocess.CalledProcessError) else e
            raise MaterialiseError(f"task {task.task_id}: cannot build its workspace: {detail}") from e
        _templates[key] = path
        return path


PYTEST_CONFIG = {"conftest.py", "pytest.ini", "tox.ini", "setup.cfg", "pyproject.toml"}


class PytestVerifier:
    """Runs the task's FAIL_TO_PASS and PASS_TO_PASS tests with pytest inside the episode's sandbox.

    First everything the agent started is killed (a background process, a fake test server), and the test files are
    restored to their base version; the tests then run in a child forked from the slot's pristine process.
    """

    def __init__(self, slot: Slot, timeout: float = 60.0):
        self.slot, self.timeout = slot, timeout

    def verify(self, task: Task) -> Verdict:
        t0 = time.monotonic()
        # test files and pytest configuration go back to their base version; unknown pytest configuration goes
        restore = {p: c for p, c in task.repo.files.items() if p in task.test_files or Path(p).name in PYTEST_CONFIG}
        try:
            report = self.slot.control("verify", timeout=self.timeout + 60, cwd=WORKSPACE, restore=restore,
                                       known=sorted(task.repo.files), tests=task.FAIL_TO_PASS + task.PASS_TO_PASS,
                                       test_timeout=self.timeout)
        except SandboxError as e:
            return Verdict(resolved=False, tests={}, duration_s=time.monotonic() - t0, error=f"verifier failed: {e}")
        results = report.get("results", {})
        tests = {}
        for tid in task.FAIL_TO_PASS + task.PASS_TO_PASS:
            outcome, message = results.get(tid, ("missing", "test was not run (timeout or collection error)"))
            tests[tid] = TestResult(outcome=outcome if outcome != "skipped" else "failed", message=message)
        resolved = all(t.outcome == "passed" for t in tests.values())
        error = "tests timed out" if report.get("timed_out") else None
        return Verdict(resolved=resolved, tests=tests, patch=report.get("patch", ""),
                       duration_s=time.monotonic() - t0, error=error)

    def close(self) -> None:
        pass


class SandboxEnv:
    """One episode's environment. `workspace` is the host path (for privileged readers such as the scripted expert).

    The sandbox comes from a pool of slots that outlive episodes; `close` gives it back for the next one.
    """

    def __init__(self, task: Task, config: EnvConfig | None = None, pool: SlotPool = POOL):
        self.task = task
        self.config = config or EnvConfig()
        template = _template(task)
        self._pool = pool
        self._slot = pool.acquire()
        try:
            self._slot.load(template)
        except BaseException:
            self._slot.close()
            raise
        self.workspace = self._slot.workspace
        self._verifier = PytestVerifier(self._slot, self.config.verify_timeout)

    def execute(self, command: str) -> CommandResult:
        return self._slot.run(command, self.config.command_timeout, self.config.output_limit)

    def verify(self) -> Verdict:
        return self._verifier.verify(self.task)

    def close(self) -> None:
        self._pool.release(self._slot)

    def __enter__(self) -> SandboxEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
