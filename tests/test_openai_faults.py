"""The OpenAI-compatible policy against a deliberately broken server: one that drips its reply a byte at a time, answers
200 with HTML or with bodies that are not chat completions, or sends a reply far too large.

The server is a test double, said here as the standards ask: it is a real HTTP server (stdlib http.server in a thread)
that the real `openai` client talks to over a socket, but no real model server misbehaves on demand, so this one is
written to. The well-behaved path against a real server (`transformers serve`) is in test_openai_policy.py.
"""

import json
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from oec.core.errors import PolicyError
from oec.core.protocols import Episode
from oec.core.store import read_trajectories
from oec.rollout.collect import CollectConfig, collect
from oec.rollout.policies import make_policy
from oec.tasks.io import write_tasks

# needs the system tools `make test` installs (bubblewrap, podman or chromium): not in `make test-fast`
pytestmark = pytest.mark.tools

OK = {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
      "choices": [{"index": 0, "finish_reason": "stop",
                   "message": {"role": "assistant", "content": "THOUGHT: done\n```bash\nsubmit\n```"}}],
      "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}}
MALFORMED = {  # a 200 reply -> what the error must name
    "html": (b"<html><body>502 Bad Gateway</body></html>", "not JSON"),
    "null-message": (json.dumps({**OK, "choices": [{"index": 0, "message": None}]}).encode(), "choices.0.message"),
    "missing-message": (json.dumps({**OK, "choices": [{"index": 0}]}).encode(), "choices.0.message"),
    "numeric-content": (json.dumps({**OK, "choices": [{"message": {"role": "assistant", "content": 42}}]}).encode(),
                        "choices.0.message.content"),
    "string-usage": (json.dumps({**OK, "usage": "lots"}).encode(), "usage"),
    "no-choices": (json.dumps({**OK, "choices": []}).encode(), "choices"),
}


class BrokenServer:
    """Answers each POST with the next scripted behaviour (then plain OK replies)."""

    def __init__(self):
        self.script, self.seen = [], 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers["content-length"]))
                server.seen += 1
                kind = server.script.pop(0) if server.script else "ok"
                if kind == "drip":  # headers at once, then a byte every 0.2 s of a body that never ends
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", "1000000")
                    self.end_headers()
                    try:
                        for _ in range(300):
                            self.wfile.write(b" ")
                            self.wfile.flush()
                            time.sleep(0.2)
                    except OSError:  # the client gave up: what it should do
                        pass
                    return
                if kind == "surrogate":  # valid JSON (json.dumps escapes it), but a str that UTF-8 cannot encode
                    body = json.dumps({**OK, "choices": [{"message": {"content": "THOUGHT: \udcff"}}]}).encode()
                elif kind == "huge":
                    body = json.dumps({**OK, "choices": [{"message": {"content": "x" * (3 << 20)}}]}).encode()
                else:
                    body = MALFORMED[kind][0] if kind in MALFORMED else json.dumps(OK).encode()
                self.send_response(200)
                self.send_header("content-type", "text/html" if kind == "html" else "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def _server():
    server = BrokenServer()
    yield server
    server.httpd.shutdown()


@pytest.fixture
def broken(_server):
    _server.script, _server.seen = [], 0
    return _server


def _act(policy, task):
    return policy.act(policy.format.render(task, []), Episode(task, None, [], random.Random(0), "student"))


def test_a_lone_surrogate_in_a_reply_cannot_break_the_trajectory_file(broken, train_tasks, tmp_path):
    broken.script = ["surrogate"]
    c = _act(make_policy(f"openai:m@{broken.url}"), train_tasks[0])
    assert c.text == "THOUGHT: ?" and c.model_dump_json()


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_a_malformed_200_reply_is_retried_and_named(broken, train_tasks, kind):
    broken.script = [kind, kind]
    pol = make_policy(f"openai:m@{broken.url}?backoff=0.01&max_retries=1")
    with pytest.raises(PolicyError, match=r"gave up after 2 attempts; last: MalformedReply") as e:
        _act(pol, train_tasks[0])
    assert MALFORMED[kind][1] in str(e.value) and "AttributeError" not in str(e.value)
    broken.script = [kind]  # once only: the retry gets the answer
    c = _act(pol, train_tasks[0])
    assert c.retries == 1 and c.prompt_tokens == 7 and "submit" in c.text


def test_an_oversize_reply_ends_the_episode_unretried_and_unstored(broken, train_tasks, tmp_path):
    broken.script = ["huge"] * 3
    tasks = write_tasks(train_tasks[:1], tmp_path / "t.jsonl")
    cfg = CollectConfig(tasks=str(tasks), out=str(tmp_path / "run"), mode="student",
                        student=f"openai:m@{broken.url}?max_reply_bytes=1000000&backoff=0.01&max_retries=2")
    collect(cfg, progress=False)
    (traj,) = read_trajectories(tmp_path / "run")
    assert traj.exit_status == "error" and "max_reply_bytes=1000000" in traj.exit_message and broken.seen == 1
    assert (tmp_path / "run/trajectories.jsonl").stat().st_size < 20_000


def test_a_collection_against_a_dripping_server_ends_within_its_deadline(broken, train_tasks, tmp_path):
    broken.script = ["drip"] * 10
    tasks = write_tasks(train_tasks[:2], tmp_path / "t.jsonl")
    deadline, retries = 1.0, 1
    cfg = CollectConfig(tasks=str(tasks), out=str(tmp_path / "run"), mode="student", workers=2,
                        student=f"openai:m@{broken.url}?deadline={deadline}&timeout=5&backoff=0.01"
                                f"&max_retries={retries}")
    t0 = time.monotonic()
    collect(cfg, progress=False)
    took = time.monotonic() - t0
    trajs = read_trajectories(tmp_path / "run")
    assert len(trajs) == 2 and all(t.exit_status == "error" for t in trajs)
    assert all("DeadlineExceeded" in t.exit_message and "deadline=1.0" in t.exit_message for t in trajs)
    # each episode: (1 + retries) calls of at most deadline + one 0.2 s drip, run side by side; plus the sandboxes
    assert took < (1 + retries) * (deadline + 0.5) + 8, took
