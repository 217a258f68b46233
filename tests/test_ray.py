"""The Ray backend against a real local Ray (2 CPUs, started once for the module): same trajectories as the local
backend, a killed worker, a killed driver, a flaky server, and a rate limit that holds across workers."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler

import pytest
import ray
from local_http import LocalServer, chat_completion, send
from typer.testing import CliRunner

from oec.cli.main import app
from oec.core.errors import InputError, PolicySpecError
from oec.core.store import read_trajectories
from oec.rollout.collect import CollectConfig, collect
from oec.tasks.io import write_tasks
from oec.tasks.toy import generate

# needs the system tools `make test` installs (bubblewrap, podman or chromium): not in `make test-fast`
pytestmark = pytest.mark.tools


@pytest.fixture(scope="module")
def cluster():
    """The address of a local Ray; collect() uses it as it is (it only starts and stops a Ray of its own)."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def _cfg(tasks_file, out, **kw):
    return CollectConfig(tasks=str(tasks_file), out=str(out), **{"workers": 4, **kw})


def _canonical(out):
    return sorted((t.canonical() for t in read_trajectories(out)), key=lambda c: (c["task_id"], c["sample"]))


def _worker_pids():
    """Ray sets an actor's process title to ray::CLASS (its cmdline)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read().startswith(b"ray::EpisodeWorker"):
                    pids.append(int(pid))
        except OSError:
            pass
    return pids


def _lines(path):
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_ray_and_local_give_identical_trajectories(cluster, tmp_path):
    tasks = write_tasks(generate("train", 12, seed=3), tmp_path / "t.jsonl")
    opts = dict(mode="dagger", student="scripted:noisy", expert="scripted:expert", beta=0.4, seed=5)
    collect(_cfg(tasks, tmp_path / "local", **opts), progress=False)
    result = collect(_cfg(tasks, tmp_path / "ray", backend="ray", **opts), progress=False)
    assert result["written"] == 12 and result["retried"] == 0
    local, remote = _canonical(tmp_path / "local"), _canonical(tmp_path / "ray")
    assert len(local) == 12 and sum(t["verdict"]["resolved"] for t in local) >= 9
    assert remote == local


def test_a_killed_worker_loses_and_duplicates_nothing(cluster, tmp_path):
    tasks = write_tasks(generate("train", 12, seed=4), tmp_path / "t.jsonl")
    out = tmp_path / "run"
    cfg = _cfg(tasks, out, samples=3, backend="ray", expert="scripted:expert?latency=0.01")
    result = {}
    thread = threading.Thread(target=lambda: result.update(collect(cfg, progress=False)))
    thread.start()
    deadline = time.monotonic() + 120
    while _lines(out / "trajectories.jsonl") < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    victims = _worker_pids()
    assert victims, "no Ray worker process found"
    os.kill(victims[0], signal.SIGKILL)  # mid-collection: it holds several episodes, running or queued
    thread.join(timeout=180)
    trajs = read_trajectories(out)
    keys = [t.key for t in trajs]
    assert len(keys) == len(set(keys)) == 36
    assert result["retried"] >= 1
    retries = [json.loads(line) for line in (out / "retries.jsonl").read_text().splitlines()]
    assert len(retries) == result["retried"] and all("RayActorError" in r["error"] or "Actor" in r["error"]
                                                      for r in retries)
    retried = {(r["task_id"], r["sample"]) for r in retries}
    assert all(t.resolved for t in trajs if t.key in retried)  # re-run in full, not recorded as errors


def test_driver_interrupted_then_killed_then_resumed(cluster, tmp_path):
    """Ctrl-C stops cleanly, kill -9 loses at most the episodes in flight; each driver joins the running cluster."""
    tasks = write_tasks(generate("train", 6, seed=0), tmp_path / "t.jsonl")
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "oec", "collect", "--tasks", str(tasks), "--mode", "oec", "--student",
           "scripted:noisy?latency=0.02", "--samples", "2", "--workers", "4", "--backend", "ray", "--ray-address",
           cluster, "--out", str(out), "--quiet"]
    rng = random.Random(0)
    for sig in (signal.SIGINT, signal.SIGKILL):
        start = _lines(out / "trajectories.jsonl")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
        target, deadline = start + rng.randint(1, 3), time.monotonic() + 120
        while _lines(out / "trajectories.jsonl") < target and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        if sig == signal.SIGINT:
            proc.send_signal(sig)
            stdout, stderr = proc.communicate(timeout=120)
            assert proc.returncode == 130, stderr[-2000:]
            assert "run the same command to resume" in stdout and "Traceback" not in stderr
        else:
            os.killpg(proc.pid, sig)
            proc.communicate()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a line cut by kill -9 is reported and ignored
        keys = [t.key for t in read_trajectories(out)]
    assert len(keys) == len(set(keys)) == 6 * 2


def test_an_expert_rate_limit_holds_across_workers(cluster, tmp_path, train_tasks):
    tasks = write_tasks(train_tasks[:6], tmp_path / "t.jsonl")
    server = StubServer(delay=0.3)
    try:
        url = f"openai:m@{server.url}?max_tokens=8"
        collect(_cfg(tasks, tmp_path / "free", mode="expert", expert=url, backend="ray"), progress=False)
        free = server.reset()
        collect(_cfg(tasks, tmp_path / "capped", mode="expert", expert=url + "&max_concurrency=1", backend="ray"),
                progress=False)
        capped = server.reset()
    finally:
        server.close()
    assert free >= 2  # without the cap, the two workers' episodes do call at once ...
    assert capped == 1  # ... with it, never: the cap is cluster-wide, not per worker process
    assert [t.exit_status for t in read_trajectories(tmp_path / "capped")] == ["submitted"] * 6


def test_eval_on_ray(cluster, tmp_path, train_tasks):
    tasks = write_tasks(train_tasks[:3], tmp_path / "t.jsonl")
    res = CliRunner().invoke(app, ["eval", "--model", "scripted:noisy", "--tasks", str(tasks), "--out",
                                   str(tmp_path / "ev"), "--backend", "ray", "--workers", "2", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["n"] == 3


def test_a_bad_policy_spec_is_raised_by_the_driver(cluster, tmp_path, train_tasks):
    tasks = write_tasks(train_tasks[:1], tmp_path / "t.jsonl")
    with pytest.raises(PolicySpecError, match="unknown scripted policy 'nope'"):
        collect(_cfg(tasks, tmp_path / "r", mode="student", student="scripted:nope", backend="ray"), progress=False)


def test_without_ray_installed_the_error_says_how_to_install_it(tmp_path, tasks_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    with pytest.raises(InputError, match=r"pip install 'oec\[ray\]'"):
        collect(_cfg(tasks_file, tmp_path / "r", backend="ray"), progress=False)


@pytest.mark.slow
def test_a_flaky_server_leaves_every_episode_with_an_exit_status(cluster, proxy, tiny_model, train_tasks, tmp_path):
    tasks = write_tasks(train_tasks[:4], tmp_path / "t.jsonl")
    rng = random.Random(1)
    proxy.faults = [rng.choice(["429", "500", "timeout", "garbage"]) if rng.random() < 0.2 else "ok"
                    for _ in range(60)]
    proxy.faults[5] = "400"  # one fatal answer: that episode ends with status error, the others go on
    cfg = _cfg(tasks, tmp_path / "run", mode="student", workers=2, backend="ray", loop={"step_limit": 3},
               student=f"openai:{tiny_model}@{proxy.url}?max_tokens=24&timeout=1&backoff=0.01&max_retries=5")
    collect(cfg, progress=False)
    trajs = read_trajectories(tmp_path / "run")
    assert sorted(t.task_id for t in trajs) == sorted(t.task_id for t in train_tasks[:4])
    assert all(t.exit_status in ("format_errors", "step_limit", "submitted", "error") for t in trajs)
    assert any(t.exit_status == "error" and "HTTP 400" in t.exit_message for t in trajs)
    assert any(s.completion.retries for t in trajs for s in t.steps)  # transient faults were retried, not fatal


class StubServer(LocalServer):
    """An OpenAI-compatible server that answers `submit` after DELAY s and records how many calls overlapped."""

    def __init__(self, delay: float):
        self.inflight = self.peak = 0
        lock = threading.Lock()
        stub = self
        body = chat_completion("```bash\nsubmit\n```")

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers["content-length"]))
                with lock:
                    stub.inflight += 1
                    stub.peak = max(stub.peak, stub.inflight)
                time.sleep(delay)
                with lock:
                    stub.inflight -= 1
                send(self, body)

        super().__init__(Handler)

    def reset(self) -> int:
        peak, self.peak = self.peak, 0
        return peak

