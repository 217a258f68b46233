"""The agent's environment: a task's workspace (a git repo), a sandboxed persistent shell, and the verifier.

Workspaces are copied from a per-task template repo built once per process (see repos.py), so an episode's set-up is a directory
copy rather than `git init` + commit. Sandboxes are pooled slots (see sandbox/shell.py) with pytest already imported,
so `runtests` and the final verification each cost one fork instead of a cold interpreter and pytest start.
"""

from __future__ import annotations

import time
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from oec.repos import GIT_ENV, PYTEST_CONFIG, MaterialiseError, template  # noqa: F401 (GIT_ENV, PYTEST_CONFIG: re-exported)
from oec.runtimes.docker import DockerConfig
from oec.sandbox.bwrap import WORKSPACE
from oec.sandbox.shell import POOL, CommandResult, SandboxError, Slot, SlotPool
from oec.types import Task, TestResult, Verdict


class EnvConfig(BaseModel):
    """Limits of the sandboxed shell and the verifier, and which runtime runs them."""

    model_config = ConfigDict(extra="forbid")
    command_timeout: float = Field(10.0, gt=0, description="seconds before a command is killed (the shell restarts)")
    output_limit: int = Field(1500, ge=100, description="bytes of output shown; the rest is cut, and it says so")
    verify_timeout: float = Field(60.0, gt=0, description="seconds for the final test run")
    runtime: Literal["bwrap", "docker"] = Field(
        "bwrap", description="bwrap: pooled bubblewrap sandboxes (default); docker: a container per episode from "
                             "the instance's image (docker or podman: docs/containers.md)")
    docker: DockerConfig = Field(default_factory=DockerConfig, description="options of the docker runtime")


class PytestVerifier:
    """Runs the task's FAIL_TO_PASS and PASS_TO_PASS tests with pytest inside the episode's sandbox.

    First everything the agent started is killed (a background process, a fake test server), and the test files are
    restored to their base version; the tests then run in a child forked from the slot's pristine process.
    """

    def __init__(self, slot: Slot, timeout: float = 60.0):
        self.slot, self.timeout = slot, timeout

    def verify(self, task: Task) -> Verdict:
        t0 = time.monotonic()
        # test files (with a git task's test_patch applied) and pytest configuration go back to their base
        # version; unknown pytest configuration goes
        base = template(task)
        try:
            report = self.slot.control("verify", timeout=self.timeout + 60, cwd=WORKSPACE, restore=base.restore,
                                       known=base.files, tests=task.FAIL_TO_PASS + task.PASS_TO_PASS,
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

    def __new__(cls, task: Task, config: EnvConfig | None = None, pool: SlotPool = POOL):
        # The runtime is a config choice (env.runtime=docker), and every caller builds a SandboxEnv: pick it here.
        if cls is SandboxEnv and config is not None and config.runtime == "docker":
            from oec.runtimes.docker import DockerEnv

            return DockerEnv(task, config)
        return super().__new__(cls)

    def __init__(self, task: Task, config: EnvConfig | None = None, pool: SlotPool = POOL):
        self.task = task
        self.config = config or EnvConfig()
        base = template(task).path
        self._pool = pool
        self._slot = pool.acquire()
        try:
            self._slot.load(base)
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
