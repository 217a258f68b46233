"""A container runtime (env.runtime=docker): one container per episode from the instance's image, as SWE-bench runs.

Tested against a real engine: tests/test_docker_runtime.py runs it on podman 4.3 (runc) with an offline Debian base
image that scripts/podman-image.sh builds; toy tasks and a mutated real package resolve with the scripted expert as
in bubblewrap, and the attacks that apply to a container (network, fork bombs, memory, writes outside the workspace,
processes outliving an episode, output floods, hangs) are contained. Docker takes the same command lines (run, exec,
cp, kill, rm) but no Docker engine runs on our machines. Setup: docs/containers.md.

The workspace is built on the host exactly as for the bubblewrap sandbox (the template repo of the task) and
bind-mounted over the image's repo directory (/testbed in SWE-bench images, whose editable installs point there),
so the scripted expert reads it the same way. Each command runs in a fresh `bash` inside the container (like
mini-swe-agent's docker environment); the working directory is carried from one command to the next, variables
are not. A command that times out or floods its output is killed with everything else the agent started in the
container (only the container's init is left), as the bubblewrap sandbox restarts its shell. The sandbox's `edit`
and `runtests` tools are unpacked into the container.
"""

from __future__ import annotations

import base64
import io
import os
import select
import shlex
import shutil
import subprocess
import tarfile
import threading
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from oec.core.protocols import CommandResult
from oec.core.types import Task, Verdict
from oec.env.repos import template
from oec.env.sandbox.bwrap import TOOLS_DIR
from oec.env.sandbox.shell import MAX_STREAM, cap_output
from oec.env.sandbox.tempdirs import owned_tempdir
from oec.env.verify import sentinel_source, verify_workspace

TOOLS = "/oec/bin"
KILLS = "/oec/kills"
# The container's init: kills every other process on SIGUSR1 (kill(-1) spares only the caller when it is init, and the
# kernel holds new forks off while it runs) and then counts the kills in KILLS, with builtins only; it also reaps
# orphans, so dead background processes do not pile up as zombies against the pids limit as under `sleep infinity`.
INIT = f"trap 'kill -9 -1; k=$((k + 1)); echo $k > {KILLS}' USR1; while :; do sleep 100000 & wait $!; done"
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
                                description="extra `docker run` arguments; a command that leaves half the "
                                            "--pids-limit in use gets every process killed (a fork bomb)")


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


def pids_limit(run_args: list[str]) -> int | None:
    """The `--pids-limit` in RUN_ARGS (None: none, or unlimited)."""
    for i, arg in enumerate(run_args):
        value = run_args[i + 1] if arg == "--pids-limit" and i + 1 < len(run_args) \
            else arg.partition("--pids-limit=")[2]
        if value.lstrip("-").isdigit():
            return int(value) if int(value) > 0 else None
    return None


def run_capped(argv: list[str], data: bytes, timeout: float, limit: int, cwd: Path | None = None
               ) -> tuple[int | None, bytes, bool]:
    """Run ARGV (in CWD) with DATA on stdin; return (returncode, stdout and stderr as one stream, flooded).

    The output is capped here, by the reader: a command in the container can write to the exec's stdout directly
    (through /proc/PID/fd/1 of its shell), past anything the script could put in between. Past LIMIT bytes or
    TIMEOUT seconds the client is killed and the returncode is None.
    """
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=cwd)

    def feed():  # in a thread: a script larger than the pipe buffer would block until the container reads it
        try:
            proc.stdin.write(data)
            proc.stdin.close()
        except OSError:  # the client is gone (killed, or the engine failed): its output says why
            pass

    threading.Thread(target=feed, daemon=True).start()
    chunks, size, fd = [], 0, proc.stdout.fileno()
    poller = select.poll()  # not select(): a process running many episodes may hold fds past FD_SETSIZE
    poller.register(fd, select.POLLIN)
    deadline = time.monotonic() + timeout
    try:
        while size <= limit:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                break
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return proc.wait(timeout=30), b"".join(chunks), False
            chunks.append(chunk)
            size += len(chunk)
    except subprocess.TimeoutExpired:  # output closed but the client hangs on
        pass
    finally:
        proc.stdout.close()
    proc.kill()
    proc.wait()
    return None, b"".join(chunks), size > limit


class DockerEnv:
    """Implements the Env protocol (core/protocols.py) with a container; built by SandboxEnv when env.runtime=docker."""

    # config: oec.env.sandbox_env.EnvConfig (not imported: env imports this module)
    def __init__(self, task: Task, config):
        self.task, self.config, self.cfg = task, config, config.docker
        if shutil.which(self.cfg.docker) is None:
            raise RuntimeError(f"env.runtime=docker: `{self.cfg.docker}` is not on PATH; install Docker or podman "
                               "(docs/containers.md) or use the default runtime (env.runtime=bwrap)")
        self._base = template(task)
        self._dir = owned_tempdir("docker")  # swept by the next collection if this process is killed
        self.workspace = self._dir / "ws"
        shutil.copytree(self._base.path, self.workspace, symlinks=True)
        self.cwd = self.cfg.workdir
        self.container: str | None = None
        self._pids_limit = pids_limit(self.cfg.run_args)
        self._kills = 0  # kills asked of the init (see INIT)
        image = image_for(task, self.cfg)
        try:
            # --stop-timeout 0: `podman rm -f` would first wait 10 s for the init to take SIGTERM, which it ignores
            self.container = self._docker(
                "run", "-d", "--rm", "--stop-timeout", "0", *self.cfg.run_args,
                "-v", f"{self.workspace}:{self.cfg.workdir}", "-w", self.cfg.workdir, image, "bash", "-c", INIT,
            ).stdout.decode().strip()
            self._setup_container(image)
        except BaseException:
            self.close()
            raise

    def _setup_container(self, image: str) -> None:
        """Unpack the tools into /oec/bin, link /workspace, and fail at once, in one line, when the image cannot run
        the verifier (`python -m pytest`) or the tools (python3): else every test of every episode would only read
        "missing: test was not run". One `exec`, the tools in the script as base64: each call costs ~0.2 s."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            tar.add(TOOLS_DIR, arcname=TOOLS.lstrip("/"), filter=lambda t: None if "__pycache__" in t.name else t)
        # the scripted expert and the agents' habits use the sandbox's path for the repo root
        script = (f"base64 -d <<'__OEC_TOOLS__' | tar -x -C / || exit 1\n{base64.encodebytes(buf.getvalue()).decode()}"
                  f"__OEC_TOOLS__\nln -sfn {shlex.quote(self.cfg.workdir)} /workspace || exit 1\n"
                  "for py in python python3; do\n"
                  "  command -v $py >/dev/null || { echo \"no \\`$py\\` on PATH\"; exit 3; }\n"
                  "  $py -c 'import pytest' 2>/dev/null || { echo \"\\`$py\\` cannot import pytest\"; exit 3; }\n"
                  "done\n")
        proc = self._bash(script, 60)
        if proc.returncode != 0:
            why = proc.stdout.strip().splitlines()[-1:] or [f"exit status {proc.returncode}"]
            raise RuntimeError(f"env.runtime=docker: image {image}: {why[0]} (after env.docker.setup); "
                               "the verifier runs `python -m pytest` and the tools python3: use an image with both "
                               "and pytest, or set env.docker.setup to activate its environment (docs/containers.md)")

    def _docker(self, *args: str, input: bytes | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
        try:
            # in our own directory: podman's conmon writes an `oom` file into its working directory when a process
            # of the container is OOM-killed (it once landed at the root of the checkout the tests ran in)
            return subprocess.run([self.cfg.docker, *args], input=input, capture_output=True, timeout=timeout,
                                  check=True, cwd=self._dir)
        except subprocess.CalledProcessError as e:
            hint = "; docs/containers.md says how to set up Docker or podman" if args[0] == "run" else ""
            raise RuntimeError(f"{self.cfg.docker} {args[0]} failed: "
                               f"{e.stderr.decode(errors='replace').strip()[-500:]}{hint}") from None

    def _run(self, script: str, timeout: float) -> tuple[int | None, bytes, bool]:
        # `timeout` runs inside the container: killing the client would leave the command running there
        wrapped = f"{self.cfg.setup}\nexport PATH={TOOLS}:$PATH PAGER=cat GIT_PAGER=cat\n{script}"
        argv = [self.cfg.docker, "exec", "-i", "-w", self.cwd, self.container,
                "timeout", "-s", "KILL", f"{timeout:g}", "bash", "-s"]
        return run_capped(argv, wrapped.encode(), timeout + 30, MAX_STREAM, cwd=self._dir)

    def _bash(self, script: str, timeout: float) -> subprocess.CompletedProcess:
        """SCRIPT's output (stdout and stderr) as text; returncode 137 when it was killed."""
        rc, out, _ = self._run(script, timeout)
        return subprocess.CompletedProcess(script, 137 if rc is None else rc, out.decode(errors="replace"), "")

    def _kill_all(self) -> None:
        """Kill every process in the container but its init (what the bubblewrap sandbox's shell restart does).

        The init does it (see INIT): a signal reaches it from outside, where an `exec` cannot even start once a fork
        bomb's survivors hold the pids limit. Returns when the init has counted the kill and a process can be started
        in the container again (the next command must not start before the kill, or it would be killed too).
        """
        self._kills += 1
        subprocess.run([self.cfg.docker, "kill", "--signal", "USR1", self.container], capture_output=True, timeout=60,
                       cwd=self._dir, check=False)
        for _ in range(100):
            probe = subprocess.run([self.cfg.docker, "exec", self.container, "cat", KILLS], capture_output=True,
                                   cwd=self._dir, text=True, timeout=60, check=False)
            if probe.returncode == 0 and probe.stdout.strip().isdigit() and int(probe.stdout) >= self._kills:
                return
            time.sleep(0.1)

    def execute(self, command: str) -> CommandResult:
        timeout = self.config.command_timeout
        # a brace group, not a subshell: `cd` inside it moves the shell whose $PWD is printed after it; stdin is
        # /dev/null, or a command that reads stdin would eat the rest of this script. The mark carries the container's
        # process count, taken without a fork (a fork bomb's survivors may have used up the pids limit).
        script = (f"{{\n{command}\n}} </dev/null 2>&1\n__oec_rc=$?\n__oec_p=(/proc/[0-9]*)\n"
                  f"printf '\\n{CWD_MARK}%s %s\\n' ${{#__oec_p[@]}} \"$PWD\"\nexit $__oec_rc\n")
        t0 = time.monotonic()
        rc, data, flood = self._run(script, timeout)
        out, mark, tail = data.rpartition(CWD_MARK.encode())
        # `timeout -s KILL` dies with the shell (137), as does a command the OOM killer ends: only a killed shell
        # prints no mark, and only a timeout kills it that late (a quick 137 without a mark is `kill -9 $$`)
        if flood or rc is None or (rc == 137 and not mark and time.monotonic() - t0 >= timeout):
            self._kill_all()
            self.cwd = self.cfg.workdir
            shown, truncated = cap_output(data, b"", len(data), self.config.output_limit)
            why = f"printed more than {MAX_STREAM >> 20} MiB" if flood else f"timed out after {timeout:g}s"
            note = f"\n[command {why} and was killed; a fresh shell was started: cwd and variables were reset]"
            return CommandResult(shown + note, None, timed_out=not flood, truncated=truncated, restarted=True)
        processes = 0
        if mark:  # absent when the command replaced the shell (`exec`) or exited it
            count, _, cwd = tail.decode(errors="replace").partition("\n")[0].partition(" ")
            processes, self.cwd = int(count) if count.isdigit() else 0, cwd.strip() or self.cwd
            data = out[:-1] if out.endswith(b"\n") else out
        shown, truncated = cap_output(data, b"", len(data), self.config.output_limit)
        if self._pids_limit and processes >= self._pids_limit // 2:
            # what the bubblewrap sandbox's watchdog does past its task limit: else every later command of the
            # episode would fail to fork until one timed out
            self._kill_all()
            self.cwd = self.cfg.workdir
            note = (f"\n[the sandbox killed every process: {processes} processes were running; the limit is "
                    f"{self._pids_limit}]\n[a fresh shell was started: cwd and variables were reset]")
            return CommandResult(shown + note, 137, truncated=truncated, restarted=True)
        return CommandResult(shown, rc, truncated=truncated)

    def verify(self) -> Verdict:
        """As in the bubblewrap sandbox (oec/env/verify.py): everything the agent started is killed, the host rebuilds
        the bind-mounted workspace as the base plus the agent's change, and the task's tests run in the container."""
        ids = self.task.FAIL_TO_PASS + self.task.PASS_TO_PASS

        def run_tests(sentinel: str) -> dict:
            self.cwd = self.cfg.workdir
            if self.task.test_command:  # the repository's own command, graded by its harness (harness.py)
                proc = self._bash(self.task.test_command.command,
                                  self.task.test_command.timeout or self.config.verify_timeout)
                return {"log": proc.stdout, "timed_out": proc.returncode == 137}
            where = f"/tmp/{sentinel}/test_{sentinel}.py"
            cmd = (f"mkdir -p /tmp/{sentinel} && printf %s {shlex.quote(sentinel_source(sentinel))} > {where} && "
                   "python -m pytest -rA -p no:cacheprovider " + " ".join(shlex.quote(t) for t in [*ids, where]))
            proc = self._bash(cmd, self.config.verify_timeout)
            return {"results": parse_pytest_rA(proc.stdout), "timed_out": proc.returncode == 137}

        return verify_workspace(self.task, self.workspace, self._kill_all, run_tests, errors=(RuntimeError,))

    def close(self) -> None:
        if self.container:
            subprocess.run([self.cfg.docker, "rm", "-f", self.container], capture_output=True, timeout=120,
                           check=False)
            self.container = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> DockerEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
