"""A Docker runtime (env.runtime=docker): one container per episode from the instance's image, as SWE-bench runs.

UNTESTED against a real Docker engine: our machines have none. tests/test_swe_tasks.py drives it through a test
double of the `docker` CLI that runs the commands on the host, which checks the command lines and the protocol, not
Docker itself.

The workspace is built on the host exactly as for the bubblewrap sandbox (the template repo of the task) and
bind-mounted over the image's repo directory (/testbed in SWE-bench images, whose editable installs point there),
so the scripted expert reads it the same way. Each command runs in a fresh `bash` inside the container (like
mini-swe-agent's docker environment); the working directory is carried from one command to the next, variables
are not. The sandbox's `edit` and `runtests` tools are copied into the container.
"""

from __future__ import annotations

import io
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from oec.repos import template
from oec.sandbox.bwrap import TOOLS_DIR
from oec.sandbox.shell import CommandResult, cap_output
from oec.types import Task, TestResult, Verdict

TOOLS = "/oec/bin"
CWD_MARK = "\036OEC_CWD "


class DockerConfig(BaseModel):
    """Options of the docker runtime."""

    model_config = ConfigDict(extra="forbid")
    docker: str = Field("docker", description="the docker CLI (or a compatible one, e.g. podman)")
    image: str = Field("swebench/sweb.eval.x86_64.{docker_id}:latest",
                       description="image per task; {instance_id} and {docker_id} (SWE-bench's escaped id) are "
                                   "filled in; a task's meta.image_name (SWE-smith) wins")
    workdir: str = Field("/testbed", description="where the image keeps the repo; the workspace is mounted there")
    setup: str = Field("source /opt/miniconda3/bin/activate testbed 2>/dev/null || true",
                       description="shell lines run before every command (activate the image's environment)")
    run_args: list[str] = Field(["--network", "none", "--memory", "8g", "--pids-limit", "1024"],
                                description="extra `docker run` arguments")


def image_for(task: Task, cfg: DockerConfig) -> str:
    if task.meta.get("image_name"):
        return str(task.meta["image_name"])
    docker_id = task.task_id.replace("__", "_1776_").lower()  # SWE-bench's naming of its instance images
    return cfg.image.format(instance_id=task.task_id, docker_id=docker_id)


def parse_pytest_rA(output: str) -> dict[str, tuple[str, str]]:
    """`pytest -rA` short summary lines (PASSED x / FAILED x - msg / ERROR x) -> {node id: (outcome, message)}."""
    results = {}
    for line in output.splitlines():
        word, _, rest = line.partition(" ")
        outcome = {"PASSED": "passed", "FAILED": "failed", "ERROR": "error", "SKIPPED": "failed",
                   "XFAIL": "failed", "XPASS": "passed"}.get(word)
        if outcome and rest:
            node, _, message = rest.partition(" - ")
            results[node.strip()] = (outcome, message.strip()[:200])
    return results


class DockerEnv:
    """Implements the Env protocol (protocols.py) with a container; built by SandboxEnv when env.runtime=docker."""

    def __init__(self, task: Task, config):  # config: oec.env.EnvConfig (not imported: env imports this module)
        self.task, self.config, self.cfg = task, config, config.docker
        if shutil.which(self.cfg.docker) is None:
            raise RuntimeError(f"env.runtime=docker: `{self.cfg.docker}` is not on PATH; install Docker or use the "
                               "default runtime (env.runtime=bwrap)")
        self._base = template(task)
        self._dir = Path(tempfile.mkdtemp(prefix="oec-docker-"))
        self.workspace = self._dir / "ws"
        shutil.copytree(self._base.path, self.workspace, symlinks=True)
        self.cwd = self.cfg.workdir
        self.container: str | None = None
        try:
            self.container = self._docker(
                "run", "-d", "--rm", *self.cfg.run_args, "-v", f"{self.workspace}:{self.cfg.workdir}",
                "-w", self.cfg.workdir, image_for(task, self.cfg), "sleep", "infinity").stdout.strip()
            self._docker("exec", self.container, "mkdir", "-p", TOOLS)
            # the scripted expert and the agents' habits use the sandbox's path for the repo root
            self._docker("exec", self.container, "ln", "-sfn", self.cfg.workdir, "/workspace")
            self._docker("cp", f"{TOOLS_DIR}/.", f"{self.container}:{TOOLS}")
        except BaseException:
            self.close()
            raise

    def _docker(self, *args: str, input: str | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        try:
            return subprocess.run([self.cfg.docker, *args], input=input, capture_output=True, text=True,
                                  timeout=timeout, check=True)
        except subprocess.CalledProcessError as e:
            raise RuntimeError(f"docker {args[0]} failed: {e.stderr.strip()[-500:]}") from None

    def _bash(self, script: str, timeout: float) -> subprocess.CompletedProcess:
        # `timeout` runs inside the container: killing the docker client would leave the command running there
        wrapped = f"{self.cfg.setup}\nexport PATH={TOOLS}:$PATH PAGER=cat GIT_PAGER=cat\n{script}"
        argv = [self.cfg.docker, "exec", "-i", "-w", self.cwd, self.container,
                "timeout", "-s", "KILL", f"{timeout:g}", "bash", "-s"]
        try:
            return subprocess.run(argv, input=wrapped, capture_output=True, text=True, timeout=timeout + 30)
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
            return subprocess.CompletedProcess(argv, 137, out, "")

    def execute(self, command: str) -> CommandResult:
        timeout = self.config.command_timeout
        # a brace group, not a subshell: `cd` inside it moves the shell whose $PWD is printed after it
        script = f"{{\n{command}\n}} 2>&1\n__oec_rc=$?\nprintf '\\n{CWD_MARK}%s\\n' \"$PWD\"\nexit $__oec_rc\n"
        proc = self._bash(script, timeout)
        out, mark, cwd = proc.stdout.rpartition(CWD_MARK)
        if mark:  # absent when the command replaced the shell (`exec`) or was killed
            self.cwd = cwd.splitlines()[0].strip() if cwd.strip() else self.cwd
            out = out[:-1] if out.endswith("\n") else out
        else:
            out = proc.stdout
        out += proc.stderr
        data = out.encode()
        shown, truncated = cap_output(data, b"", len(data), self.config.output_limit)
        if proc.returncode == 137:
            return CommandResult(shown + f"\n[command timed out after {timeout:g}s and was killed]", None,
                                 timed_out=True, truncated=truncated)
        return CommandResult(shown, proc.returncode, truncated=truncated)

    def verify(self) -> Verdict:
        t0 = time.monotonic()
        task = self.task
        self.cwd = self.cfg.workdir
        patch = self._bash("git add -A >/dev/null 2>&1; git diff --cached --no-color --no-ext-diff", 120).stdout
        # test files (with the test_patch) go in through `docker cp`, so a symlink the agent planted in the
        # workspace is followed inside the container, never on the host
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for rel, content in self._base.restore.items():
                data = content.encode()
                info = tarfile.TarInfo(rel)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
        subprocess.run([self.cfg.docker, "cp", "-", f"{self.container}:{self.cfg.workdir}"], input=buf.getvalue(),
                       capture_output=True, check=False, timeout=120)
        ids = task.FAIL_TO_PASS + task.PASS_TO_PASS
        cmd = "python -m pytest -rA -p no:cacheprovider " + " ".join(shlex.quote(t) for t in ids)
        proc = self._bash(cmd, self.config.verify_timeout)
        results = parse_pytest_rA(proc.stdout)
        tests = {t: TestResult(**dict(zip(("outcome", "message"), results.get(t, ("missing", "test was not run")))))
                 for t in ids}
        error = "tests timed out" if proc.returncode == 137 else None
        return Verdict(resolved=all(t.outcome == "passed" for t in tests.values()), tests=tests, patch=patch,
                       duration_s=time.monotonic() - t0, error=error)

    def close(self) -> None:
        if self.container:
            subprocess.run([self.cfg.docker, "rm", "-f", self.container], capture_output=True, timeout=120)
            self.container = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> DockerEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
