"""The OpenAI-compatible policy against a real local server (`transformers serve` with the tiny student), and a
fault-injecting HTTP proxy in front of it for the retry and failure paths."""

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from oec.collect import CollectConfig, collect
from oec.policies import make_policy
from oec.protocols import Episode, PolicyError
from oec.store import read_trajectories
from oec.tasks import write_tasks


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def served(tiny_model, tmp_path_factory):
    port = _free_port()
    cache = tmp_path_factory.mktemp("hf-cache")
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    exe = Path(sys.executable).with_name("transformers")
    log = open(cache / "serve.log", "w")
    proc = subprocess.Popen([str(exe), "serve", "--host", "127.0.0.1", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/models", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"transformers serve did not start: {(cache / 'serve.log').read_text()[-2000:]}")
            time.sleep(0.5)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


class FaultProxy:
    """Forwards to UPSTREAM, but answers the next requests with the scripted faults first."""

    def __init__(self, upstream: str):
        self.upstream, self.faults, self.seen = upstream, [], 0
        lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _reply(self, code, body, ctype="application/json"):
                self.send_response(code)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                with lock:
                    proxy.seen += 1
                    fault = proxy.faults.pop(0) if proxy.faults else "ok"
                if fault == "timeout":
                    time.sleep(3)
                    return self._reply(504, b"{}")
                if fault == "garbage":
                    return self._reply(200, b"<html>not json at all")
                if fault == "empty":
                    return self._reply(200, json.dumps({"id": "x", "object": "chat.completion", "created": 0,
                                                        "model": "m", "choices": []}).encode())
                if fault in ("429", "500", "503", "400", "401"):
                    return self._reply(int(fault), json.dumps({"error": {"message": f"injected {fault}"}}).encode())
                req = urllib.request.Request(proxy.upstream + self.path.removeprefix("/v1"), data=body,
                                             headers={"content-type": "application/json"})
                with urllib.request.urlopen(req, timeout=60) as r:
                    self._reply(r.status, r.read())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


@pytest.fixture
def proxy(served):
    p = FaultProxy(served)
    yield p
    p.close()


def _episode(task):
    return Episode(task, None, [], random.Random(0), "student")


def test_real_server_round_trip(served, tiny_model, train_tasks):
    pol = make_policy(f"openai:{tiny_model}@{served}?max_tokens=16&price_in=2&price_out=8")
    c = pol.act(pol.format.render(train_tasks[0], []), _episode(train_tasks[0]))
    assert c.prompt_tokens > 10 and 0 < c.completion_tokens <= 16 and isinstance(c.text, str)
    assert c.cost == pytest.approx((c.prompt_tokens * 2 + c.completion_tokens * 8) / 1e6)


def test_transient_faults_are_retried(proxy, tiny_model, train_tasks):
    proxy.faults = ["429", "500", "garbage", "empty", "timeout", "503"]
    pol = make_policy(f"openai:{tiny_model}@{proxy.url}?max_tokens=8&timeout=1&backoff=0.01&max_retries=8")
    c = pol.act(pol.format.render(train_tasks[0], []), _episode(train_tasks[0]))
    assert c.retries == 6 and c.completion_tokens > 0 and proxy.seen == 7


@pytest.mark.parametrize("faults,needle", [(["400"], "HTTP 400, not retried"), (["401"], "HTTP 401"),
                                           (["500"] * 3, "gave up after 3 attempts")])
def test_fatal_and_exhausted_failures_raise_policy_error(proxy, tiny_model, train_tasks, faults, needle):
    proxy.faults = list(faults)
    pol = make_policy(f"openai:{tiny_model}@{proxy.url}?max_tokens=8&backoff=0.01&max_retries=2")
    with pytest.raises(PolicyError, match=needle):
        pol.act(pol.format.render(train_tasks[0], []), _episode(train_tasks[0]))


def test_collection_through_a_flaky_server_records_every_episode(proxy, tiny_model, train_tasks, tmp_path):
    tasks = write_tasks(train_tasks[:4], tmp_path / "t.jsonl")
    rng = random.Random(0)
    proxy.faults = [rng.choice(["429", "500", "garbage", "ok", "ok", "ok"]) for _ in range(30)] + ["400"] * 2
    proxy.faults.insert(3, "400")
    cfg = CollectConfig(tasks=str(tasks), out=str(tmp_path / "run"), mode="student", workers=2,
                        student=f"openai:{tiny_model}@{proxy.url}?max_tokens=24&backoff=0.01&max_retries=5",
                        loop={"step_limit": 3})
    collect(cfg, progress=False)
    trajs = read_trajectories(tmp_path / "run")
    assert sorted(t.task_id for t in trajs) == sorted(t.task_id for t in train_tasks[:4])
    assert all(t.exit_status in ("format_errors", "step_limit", "submitted", "error") for t in trajs)
    errors = [t for t in trajs if t.exit_status == "error"]
    assert errors and all("HTTP 400" in t.exit_message for t in errors)
    steps = [s for t in trajs for s in t.steps]
    assert steps and all(s.completion.prompt_tokens > 0 for s in steps)
