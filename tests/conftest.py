import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

# `make test` runs two workers on two cores, and many tests start more processes: torch's default of one thread per
# core would put several spinning thread pools on each core (about 10% of the torch-heavy tests' time). Set before
# any torch import, so the workers and every process they start inherit it; a test that needs more sets its own.
os.environ.setdefault("OMP_NUM_THREADS", "1")

from oec.tasks.io import write_tasks
from oec.tasks.toy import ToyConfig, generate

# A test run started in the background (`make test &`, nohup) inherits SIGINT *ignored*, and so would every
# `oec collect` a test starts, since an ignored signal stays ignored across exec; the Ctrl-C tests need it delivered.
# A handled signal is reset to the default across exec, so this gives every child the normal Ctrl-C.
signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def train_tasks():
    return generate("train", 12, seed=0)


@pytest.fixture(scope="session")
def varied_tasks():
    """Tasks across the difficulty knobs: no hops, deep chains, one-liners only, many modules."""
    cfgs = [ToyConfig(hops=0), ToyConfig(hops=3, modules=4), ToyConfig(shapes=["clamp", "sign", "count_above"]),
            ToyConfig(modules=1, functions_per_module=5, hops=0), ToyConfig(direct_test_prob=0.0, hops=2)]
    out = []
    for i, cfg in enumerate(cfgs):
        out += [t.model_copy(update={"task_id": f"{t.task_id}-k{i}"})
                for t in generate("heldout", 3, seed=10 + i, cfg=cfg)]
    return out


@pytest.fixture
def tasks_file(tmp_path, train_tasks):
    return write_tasks(train_tasks[:6], tmp_path / "tasks.jsonl")


@pytest.fixture
def rng():
    return random.Random(0)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, worker_id):
    """A tiny untrained student built offline from the toy tasks (the real `oec student init` code path); built
    once per run and shared by the pytest-xdist workers (the first to take the lock builds it)."""
    from filelock import FileLock

    from oec.train.student import StudentConfig, init_student

    # the workers' base directories share a parent that is this run's alone; a run without workers has its own
    root = tmp_path_factory.getbasetemp().parent if worker_id != "master" else tmp_path_factory.mktemp("models")
    out = root / "tiny-model"
    with FileLock(str(root / "tiny-model.lock")):
        if not (out / "config.json").exists():  # init_student writes the directory whole or not at all
            init_student(generate("train", 30, seed=0), out,
                         StudentConfig(hidden_size=64, layers=2, heads=2, vocab_size=1024, context=1024))
    return out


# A real OpenAI-compatible server and a fault-injecting proxy (test_openai_policy.py, test_ray.py)

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


def trained_texts(row, tokenizer) -> list[str]:
    """The decoded runs of trained tokens (assistant_masks == 1) of one built example."""
    runs, cur = [], []
    for tok, m in zip(row["input_ids"], row["assistant_masks"]):
        if m:
            cur.append(tok)
        elif cur:
            runs.append(tokenizer.decode(cur))
            cur = []
    return runs + ([tokenizer.decode(cur)] if cur else [])
