"""The agent's environment: a task's workspace (a git repo), a sandboxed persistent shell, and the verifier.

Workspaces are copied from a per-task template repo built once per process, so an episode's set-up is a directory
copy rather than `git init` + commit. The verifier's sandbox is started with the episode and imports pytest while the
agent works, so the final verification costs one fork instead of a cold pytest start.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from oec.sandbox.bwrap import TOOLS, WORKSPACE, bwrap_argv
from oec.sandbox.shell import CommandResult, PersistentShell
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
    output_limit: int = Field(1500, ge=100, description="characters of output shown; the rest is cut, and it says so")
    verify_timeout: float = Field(60.0, gt=0, description="seconds for the final test run")


class MaterialiseError(RuntimeError):
    """A task's workspace could not be built; the message names the task and the reason."""


_templates: dict[str, Path] = {}
_templates_lock = threading.Lock()
_template_root: Path | None = None


def _template(task: Task) -> Path:
    """A git repo with the task's files committed at its base state; built once per task per process."""
    global _template_root
    with _templates_lock:
        if task.task_id in _templates:
            return _templates[task.task_id]
        if _template_root is None:
            _template_root = Path(tempfile.mkdtemp(prefix="oec-templates-"))
        path = _template_root / f"t{len(_templates)}"
        try:
            for rel, content in task.repo.files.items():
                target = (path / rel).resolve()
                if not target.is_relative_to(path.resolve()):
                    raise MaterialiseError(f"task {task.task_id}: repo.files path {rel!r} escapes the workspace")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
            env = {**os.environ, **GIT_ENV}
            for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "base"]):
                subprocess.run(["git", "-C", str(path), *cmd], env=env, check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError) as e:
            shutil.rmtree(path, ignore_errors=True)
            detail = e.stderr.decode(errors="replace").strip() if isinstance(e, subprocess.CalledProcessError) else e
            raise MaterialiseError(f"task {task.task_id}: cannot build its workspace: {detail}") from e
        _templates[task.task_id] = path
        return path


class PytestVerifier:
    """Runs the task's FAIL_TO_PASS and PASS_TO_PASS tests in a fresh sandbox over the workspace.

    Fresh, not the agent's shell: nothing the agent started (a background process, a fake test server, a changed
    PATH) survives into verification, and test files are restored to their base version first.
    """

    def __init__(self, workspace: Path, timeout: float = 60.0):
        self.timeout = timeout
        argv = bwrap_argv(workspace, ["python3", "-I", f"{TOOLS}/testserver.py", "verify"])
        self._proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, start_new_session=True)

    def verify(self, task: Task) -> Verdict:
        t0 = time.monotonic()
        restore = {p: task.repo.files[p] for p in task.test_files}
        req = {"cwd": WORKSPACE, "restore": restore, "tests": task.FAIL_TO_PASS + task.PASS_TO_PASS,
               "timeout": self.timeout}
        try:
            out, err = self._proc.communicate(json.dumps(req) + "\n", timeout=self.timeout + 30)
            report = json.loads(out.strip().splitlines()[-1])
        except (subprocess.TimeoutExpired, json.JSONDecodeError, IndexError) as e:
            self.close()
            return Verdict(resolved=False, tests={}, duration_s=time.monotonic() - t0,
                           error=f"verifier failed: {e.__class__.__name__}: {e}")
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
        if self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, 9)
            except ProcessLookupError:
                pass
        self._proc.wait()


class SandboxEnv:
    """One episode's environment. `workspace` is the host path (for privileged readers such as the scripted expert)."""

    def __init__(self, task: Task, config: EnvConfig | None = None):
        self.task = task
        self.config = config or EnvConfig()
        self._dir = Path(tempfile.mkdtemp(prefix="oec-ep-"))
        self.workspace = self._dir / "ws"
        shutil.copytree(_template(task), self.workspace, symlinks=True)
        self._verifier = PytestVerifier(self.workspace, self.config.verify_timeout)
        self._shell = PersistentShell(self.workspace, self.config.command_timeout, self.config.output_limit)

    def execute(self, command: str) -> CommandResult:
        return self._shell.run(command)

    def verify(self) -> Verdict:
        self._shell.close()  # everything the agent started dies with its pid namespace
        return self._verifier.verify(self.task)

    def close(self) -> None:
        self._shell.close()
        self._verifier.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> SandboxEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
