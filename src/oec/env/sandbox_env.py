"""The agent's environment: a task's workspace (a git repo), a sandboxed persistent shell, and the verifier.

Workspaces are copied from a per-task template repo built once per process (see repos.py), so an episode's set-up is a
directory copy rather than `git init` + commit. Sandboxes are pooled slots (see sandbox/shell.py) with pytest already
imported, so `runtests` and the final verification each cost one fork instead of a cold interpreter and pytest start.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from oec.core.errors import InputError, SandboxError
from oec.core.protocols import CommandResult
from oec.core.types import Task, Verdict
from oec.env.docker import DockerConfig
from oec.env.repos import template
from oec.env.sandbox.bwrap import WORKSPACE, python_prefixes
from oec.env.sandbox.limits import Limits
from oec.env.sandbox.shell import Slot, SlotPool, pool_for
from oec.env.verify import sentinel_source, verify_workspace


class EnvConfig(BaseModel):
    """Limits of the sandboxed shell and the verifier, and which runtime runs them."""

    model_config = ConfigDict(extra="forbid")
    command_timeout: float = Field(10.0, gt=0, description="seconds before a command is killed (the shell restarts)")
    output_limit: int = Field(1500, ge=100, description="bytes of output shown; the rest is cut, and it says so")
    verify_timeout: float = Field(60.0, gt=0, description="seconds for the final test run")
    disk_mb: int = Field(1024, ge=16, description="MiB the workspace may hold (a size-capped filesystem; needs root, "
                                                 "else not enforced and a warning says so)")
    max_files: int = Field(100_000, ge=1000, description="files the workspace, /tmp, /run and /dev/shm may each hold")
    python: str | None = Field(None, description="interpreter of a venv with the task's dependencies: the tests and "
                                                 "the agent's python/pytest run on it (bwrap runtime; None: oec's)")
    runtime: Literal["bwrap", "docker"] = Field(
        "bwrap", description="bwrap: pooled bubblewrap sandboxes (default); docker: a container per episode from "
                             "the instance's image (docker or podman: docs/containers.md)")
    docker: DockerConfig = Field(default_factory=DockerConfig, description="options of the docker runtime")

    @model_validator(mode="after")
    def _runs_here(self) -> EnvConfig:
        # what would fail every episode (an interpreter that does not run, a workspace too big for the memory) is
        # refused with the config, before any work, rather than as an error exit of each episode
        if self.python and self.runtime == "docker":
            raise ValueError("env.python is for the bwrap runtime; in a container the image's environment runs "
                             "the tests (env.docker.setup activates it)")
        try:
            self.limits()
            if self.python:
                python_prefixes(self.python)
        except InputError as e:
            raise ValueError(str(e)) from None
        return self

    def limits(self) -> Limits:
        """The sandbox limits (and interpreter) these settings ask for."""
        return Limits(disk=self.disk_mb << 20, files=self.max_files, python=self.python)


MAX_LOG = 32 << 20  # bytes of a test command's log kept for grading (django prints a line per test)


class PytestVerifier:
    """Verifies the agent's change on a clean tree (see verify.py): every process the agent started is killed and
    its /tmp and IPC objects go; the host rebuilds the workspace as the base plus the change, with the original
    tests; then the tests run in a child forked from the slot's pristine process, under the slot's limits.
    """

    def __init__(self, slot: Slot, timeout: float = 60.0):
        self.slot, self.timeout = slot, timeout

    def verify(self, task: Task) -> Verdict:
        tests = task.FAIL_TO_PASS + task.PASS_TO_PASS

        def pytest_run(sentinel: str) -> dict:
            return self.slot.control("verify", timeout=self.timeout + 60, cwd=WORKSPACE, tests=tests,
                                     test_timeout=self.timeout, sentinel=sentinel,
                                     sentinel_source=sentinel_source(sentinel))

        def command_run(sentinel: str) -> dict:
            """The repository's own test command in a fresh shell of the slot (the agent's processes are gone),
            its whole log kept for the harness's parser."""
            self.slot.control("shell")
            result = self.slot.run(task.test_command.command, task.test_command.timeout or self.timeout, MAX_LOG)
            return {"log": result.output, "timed_out": result.timed_out}

        return verify_workspace(task, self.slot.workspace, lambda: self.slot.control("reset"),
                                command_run if task.test_command else pytest_run, errors=(SandboxError,))

    def close(self) -> None:
        pass


class SandboxEnv:
    """One episode's environment. `workspace` is the host path (for privileged readers such as the scripted expert).

    The sandbox comes from a pool of slots that outlive episodes; `close` gives it back for the next one.
    """

    def __new__(cls, task: Task, config: EnvConfig | None = None, pool: SlotPool | None = None):
        # The runtime is a config choice (env.runtime=docker), and every caller builds a SandboxEnv: pick it here.
        if cls is SandboxEnv and config is not None and config.runtime == "docker":
            from oec.env.docker import DockerEnv

            return DockerEnv(task, config)
        return super().__new__(cls)

    def __init__(self, task: Task, config: EnvConfig | None = None, pool: SlotPool | None = None):
        self.task = task
        self.config = config or EnvConfig()
        base = template(task).path
        self._pool = pool or pool_for(self.config.limits())
        self._slot = self._pool.acquire()
        try:
            self._slot.load(base)
        except BaseException:
            self._slot.close()
            raise
        self.workspace = self._slot.workspace
        self._verifier = PytestVerifier(self._slot, self.config.verify_timeout)

    def execute(self, command: str) -> CommandResult:
        timeout = self.config.command_timeout
        if self.task.test_command and command.strip() == self.task.test_command.command:
            # the repository's own test run (django's runtests.py over its modules) gets the time its task gives it
            timeout = max(timeout, self.task.test_command.timeout or 0)
        return self._slot.run(command, timeout, self.config.output_limit)

    def verify(self) -> Verdict:
        return self._verifier.verify(self.task)

    def close(self) -> None:
        self._pool.release(self._slot)

    def __enter__(self) -> SandboxEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
