"""The docker runtime (env.runtime=docker) on a real container engine: podman, with the offline Debian base image that
scripts/podman-image.sh builds (`make test` builds it first; the `engine` fixture builds it too if missing).

Nothing here is a test double: real containers (runc), the real scripted expert, the real verifier in the container.
"""

import os
import secrets
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
from test_swe_tasks import swebench, write_jsonl  # noqa: F401 (swebench: a fixture)

from oec.core.store import read_trajectories
from oec.env.docker import DockerConfig, DockerEnv
from oec.env.sandbox_env import EnvConfig, SandboxEnv
from oec.rollout.collect import CollectConfig, collect
from oec.tasks.importers import import_instances
from oec.tasks.io import load_tasks, write_tasks
from oec.tasks.mutate import MutateConfig, mutate
from oec.tasks.toy import generate

# needs the system tools `make test` installs (bubblewrap, podman or chromium): not in `make test-fast`
pytestmark = pytest.mark.tools

REPO = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("OEC_PODMAN_IMAGE", "localhost/oec-base:bookworm")
NO_PYTHON = "localhost/oec-test-no-python:bookworm"
LABEL = f"oec-test={secrets.token_hex(4)}"  # this run's containers, whatever else runs on the machine
# small limits: the attacks below run on a shared machine
RUN_ARGS = ["--network", "none", "--memory", "256m", "--memory-swap", "256m", "--pids-limit", "128", "--label", LABEL]


def podman(*args, check=True):
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check, timeout=300)


@pytest.fixture(scope="module")
def engine():
    """podman, configured by scripts/containers.conf (runc: crun refuses hybrid cgroup hosts), with the base image."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CONTAINERS_CONF", str(REPO / "scripts" / "containers.conf"))
        build = subprocess.run([str(REPO / "scripts" / "podman-image.sh"), IMAGE], capture_output=True, text=True,
                               check=False)
        assert build.returncode == 0, f"scripts/podman-image.sh failed: {build.stdout[-1000:]}{build.stderr[-2000:]}"
        yield
        # every container of these tests is gone (`--rm`, and `rm -f` at close)
        left = podman("ps", "-a", "--filter", f"label={LABEL}", "--format", "{{.ID}}").stdout.split()
        assert not left, f"containers left behind: {left}"


def docker_cfg(image: str = IMAGE) -> EnvConfig:
    return EnvConfig(runtime="docker", docker=DockerConfig(docker="podman", image=image, run_args=RUN_ARGS))


def _outcomes(run: Path) -> dict:
    """Per task: resolved, the recorded patch, per-test outcomes, and the commands with their observations."""
    return {t.task_id: (t.resolved, t.verdict.patch, {k: v.outcome for k, v in t.verdict.tests.items()},
                        [(s.output, s.observation, s.returncode) for s in t.steps])
            for t in read_trajectories(run / "trajectories.jsonl")}


def test_toy_tasks_resolve_in_podman_as_in_bubblewrap(engine, tmp_path):
    tasks = write_tasks(generate("train", 2, seed=5), tmp_path / "tasks.jsonl")
    for name, env in (("bwrap", EnvConfig()), ("podman", docker_cfg())):
        collect(CollectConfig(tasks=str(tasks), out=str(tmp_path / name), workers=2, env=env), progress=False)
    bwrap, container = _outcomes(tmp_path / "bwrap"), _outcomes(tmp_path / "podman")
    assert all(resolved for resolved, *_ in container.values()), container
    # same commands and observations, same verdicts, per-test outcomes and recorded patches
    assert container == bwrap


def test_a_swebench_git_task_in_podman(engine, swebench, tmp_path):  # noqa: F811
    """A git task (hidden test_patch, multi-file fix with a new file): cwd, the hidden tests, both verdicts."""
    repos, inst = swebench
    (task,), _ = import_instances(write_jsonl(tmp_path / "i.jsonl", [inst]), "swebench", repos)
    with SandboxEnv(task, docker_cfg()) as env:
        assert isinstance(env, DockerEnv)
        assert env.execute("cd calc && pwd").output.strip() == "/testbed/calc"
        assert env.execute("pwd").output.strip() == "/testbed/calc"  # cwd carried to the next command
        assert env.execute("ls /workspace/calc/ops.py").returncode == 0  # the sandbox's path works too
        assert "test_clamp_high" not in env.execute("cat ../tests/test_ops.py").output
        visible = env.execute("cd /testbed && runtests tests")  # the sandbox's tool, in the container
        assert "3 passed" in visible.output, visible.output
        verdict = env.verify()
        assert not verdict.resolved and verdict.tests["tests/test_ops.py::test_clamp_high"].outcome == "failed"
        assert verdict.tests["tests/test_ops.py::test_add"].outcome == "passed", verdict
        (env.workspace / "fix.patch").write_text(task.gold_patch)
        assert env.execute("git apply fix.patch && rm fix.patch").returncode == 0
        verdict = env.verify()
    assert verdict.resolved and "calc/extra.py" in verdict.patch, verdict


def test_an_image_without_python_is_a_one_line_error_at_start(engine, train_tasks):
    if podman("image", "exists", NO_PYTHON, check=False).returncode != 0:
        name = f"oec-test-{secrets.token_hex(4)}"
        podman("run", "--name", name, IMAGE, "rm", "/usr/bin/python")
        podman("commit", "-q", name, NO_PYTHON)
        podman("rm", name)
    with pytest.raises(RuntimeError) as err:
        SandboxEnv(train_tasks[0], docker_cfg(NO_PYTHON))
    msg = str(err.value)
    assert "\n" not in msg and NO_PYTHON in msg and "no `python` on PATH" in msg, msg
    assert not podman("ps", "-a", "--filter", f"label={LABEL}", "-q").stdout.split()  # no container left


def test_attacks_that_apply_to_a_container_are_contained(engine, train_tasks, tmp_path):
    token = secrets.token_hex(8)
    marker = f"oec-daemon-{token}"
    host_file = Path("/tmp") / f"oec-host-{token}"  # exists on the host; the same path in the container is not it
    host_file.write_text("host\n")
    server = socket.create_server(("127.0.0.1", 0))
    server.setblocking(False)
    port = server.getsockname()[1]
    hosts = Path("/etc/hosts").read_bytes()
    rows = [  # (command, what the CommandResult must say[, command timeout: 3 s])
        (f"python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 2)\"", "denied"),
        ("getent hosts deb.debian.org", "denied"),
        (f"echo pwned > {host_file}; cat {host_file}", "runs"),  # the container's /tmp, not the host's
        ("echo '6.6.6.6 pypi.org' >> /etc/hosts", "runs"),
        ("ln -s /etc/hosts hosts-link && echo '6.6.6.7 x' >> hosts-link", "runs"),  # the container's, not the host's
        (f"cat {REPO}/pyproject.toml", "denied"),  # host files are not there
        (f"kill -9 {os.getpid()}", "denied"),  # host pids are not there
        (f"(exec -a {marker} sleep 600) & setsid bash -c 'exec -a {marker} sleep 600' & echo started", "runs"),
        ("python3 -c 'x = []\nwhile True: x.append(bytearray(16 << 20))'", "killed", 20),  # OOM kills take seconds here
        ("python3 -c 'import os\nwhile True: os.fork()'", "fails"),  # its survivors are killed, or die out
        (":(){ :|:& };:; sleep 1", "stopped", 1.5),  # killed at the pids limit, or at the timeout
        ("trap '' INT TERM HUP; sleep infinity", "timeout", 1.5),
        ("yes > /proc/$$/fd/1", "flood"),  # straight to the client's stdout, past anything in the script
        ("read line; cat; echo read-nothing", "read"),  # stdin is /dev/null: the script is not eaten
        ("kill -9 -1; echo survived", "any"),
        ("kill -9 $$", "killed"),  # the shell killed itself: not a timeout
        ("exec true", "runs"),
    ]
    expect = {
        "denied": lambda r: not r.timed_out and r.returncode not in (0, None),
        "runs": lambda r: r.returncode == 0,
        "read": lambda r: r.returncode == 0 and r.output == "read-nothing\n",
        "killed": lambda r: r.returncode == 137 and not r.timed_out,
        "timeout": lambda r: r.timed_out and r.restarted and "timed out" in r.output,
        "flood": lambda r: r.truncated and r.restarted and "printed more than" in r.output and len(r.output) < 2000,
        "fails": lambda r: r.returncode != 0,
        "stopped": lambda r: r.restarted and ("the sandbox killed every process" in r.output or r.timed_out),
        "any": lambda r: True,
    }
    try:
        with SandboxEnv(train_tasks[0], docker_cfg()) as env:
            for command, what, *timeout in rows:
                env.config.command_timeout = timeout[0] if timeout else 3
                result = env.execute(command)
                assert expect[what](result), (command, result)
                if what not in ("denied", "runs"):  # the next command works, and nothing of this one runs on:
                    # 8 = the init and its sleep, the two sleeps started to outlive a command (until a kill), and
                    # this command's timeout, bash, ls and grep; a fork bomb's survivors would be dozens
                    ps = env.execute("cd /tmp && ls /proc | grep -c '^[0-9]'")
                    assert ps.returncode == 0 and int(ps.output) <= 8, (command, ps)
                if "started" in command:  # the processes run until the episode ends
                    assert len(_host_processes_with(marker, wait_for=2)) == 2
        assert not _host_processes_with(marker), "a process of the episode outlived it"
        with pytest.raises(BlockingIOError):  # no connection ever reached the host
            server.accept()
        with SandboxEnv(train_tasks[0], docker_cfg()) as env:  # the next episode starts clean
            after = env.execute("cat /proc/*/cmdline | tr '\\0' ' '; cat /etc/hosts; ls /tmp")
            assert after.returncode == 0 and marker not in after.output and "6.6.6.6" not in after.output, after
            assert host_file.name not in after.output
    finally:
        server.close()
        host_file_text = host_file.read_text()
        host_file.unlink()
    assert host_file_text == "host\n" and Path("/etc/hosts").read_bytes() == hosts


def _host_processes_with(marker: str, wait_for: int = 0) -> list[str]:
    """Host pids whose command line holds MARKER; with WAIT_FOR, polls up to 10 s until that many are there (`echo
    started` can return before a background `bash -c 'exec -a ...'` has exec'd, on a loaded machine)."""
    deadline = time.monotonic() + 10
    while True:
        found = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(pid)
            except OSError:
                continue
        if len(found) >= wait_for or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


REAL = ("inflection", "0.5.1")  # as in tests/test_mutate.py: small, pure Python, its sdist ships its pytest suite


@pytest.mark.slow
def test_a_mutated_real_package_resolves_in_podman(engine, tmp_path):
    """`oec tasks mutate` on a real PyPI package (validated in bubblewrap), then the scripted expert in podman."""
    name, ver = REAL
    dl = subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
                         f"{name}=={ver}", "-d", str(tmp_path)],
                        capture_output=True, text=True, timeout=120, check=False)
    assert dl.returncode == 0, f"cannot download {name}=={ver} from the package index: {dl.stderr.strip()[-300:]}"
    with tarfile.open(next(tmp_path.glob(f"{name}-{ver}.tar.gz"))) as tar:
        tar.extractall(tmp_path, filter="data")
    out = tmp_path / "m.jsonl"
    mutate(MutateConfig(repo=str(tmp_path / f"{name}-{ver}"), out=str(out), n=1, workers=2), progress=False)
    tasks = load_tasks(out)
    assert len(tasks) == 1
    # the task's FAIL_TO_PASS and PASS_TO_PASS are what its mutant did in bubblewrap: all pass here after the fix
    collect(CollectConfig(tasks=str(out), out=str(tmp_path / "run"), workers=1, env=docker_cfg()), progress=False)
    (traj,) = read_trajectories(tmp_path / "run" / "trajectories.jsonl")
    assert traj.resolved and len(traj.verdict.tests) > 400, (traj.exit_message, traj.verdict)
