"""`oec collect --retry-errors`: episodes whose latest attempt ended in an error are run again and appended; readers
take the latest attempt per (task, sample), so nothing is deleted and nothing counts twice.

The model server is a test double: a stdlib http.server in a thread that answers the OpenAI chat-completions protocol
with 500 for its first N calls, then with a fixed `submit` reply (a real model's answers do not matter here, and
`transformers serve` cannot be made to fail on cue). The client (the openai package, with oec's retries), the sandbox
and the pytest verifier are the real ones.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler

import pytest
from local_http import LocalServer, chat_completion, send
from typer.testing import CliRunner

from oec.cli.main import app
from oec.core.metrics import summarize
from oec.core.store import iter_trajectories, read_trajectories
from oec.data.filter import FilterConfig, filter_run
from oec.rollout.collect import CollectConfig, collect
from oec.tasks.io import write_tasks

# needs the system tools `make test` installs (bubblewrap, podman or chromium): not in `make test-fast`
pytestmark = pytest.mark.tools

REPLY = chat_completion("THOUGHT: done\n\n```bash\nsubmit\n```")


class FailingServer(LocalServer):
    """Answers 500 to the first FAIL_FIRST chat-completion calls, then REPLY."""

    def __init__(self, fail_first: int):
        self.fail_first, self.calls = fail_first, 0
        lock, server = threading.Lock(), self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers["content-length"]))
                with lock:
                    server.calls += 1
                    failing = server.calls <= server.fail_first
                if failing:
                    send(self, json.dumps({"error": {"message": "injected outage"}}).encode(), code=500)
                else:
                    send(self, REPLY)

        super().__init__(Handler)


@pytest.fixture
def server():
    s = FailingServer(fail_first=4)
    yield s
    s.close()


def test_retry_errors_reruns_only_the_errored_pairs(server, train_tasks, tmp_path):
    tasks = write_tasks(train_tasks[:2], tmp_path / "t.jsonl")
    run = tmp_path / "run"
    # one retry per call: an episode errors when both of its calls fail, so the first 4 failures end 2 episodes
    # (one worker: episodes run one after another, so which ones is fixed)
    student = f"openai:m@{server.url}?max_retries=1&backoff=0.01"
    cfg = CollectConfig(tasks=str(tasks), out=str(run), mode="student", student=student, samples=2, workers=1,
                        loop={"step_limit": 3})
    assert collect(cfg, progress=False)["written"] == 4
    first = read_trajectories(run)
    errored = sorted(t.key for t in first if t.exit_status == "error")
    assert len(errored) == 2 and all("500" in t.exit_message for t in first if t.exit_status == "error")
    assert server.calls == 6  # 2 x 2 failed calls, then one answer per episode

    # a plain rerun counts an error as done: nothing is retried
    assert collect(cfg, progress=False)["written"] == 0

    # the server has recovered; the flag reruns exactly the errored pairs, through the command line
    out = CliRunner().invoke(app, ["collect", "--tasks", str(tasks), "--out", str(run), "--mode", "student",
                                   "--student", student, "--samples", "2", "--workers", "1", "--quiet",
                                   "--retry-errors", "loop.step_limit=3"])
    assert out.exit_code == 0, out.output
    assert "2 earlier attempts superseded by retries" in out.output
    assert server.calls == 8

    latest = read_trajectories(run)
    assert len(latest) == 4 and len({t.key for t in latest}) == 4
    assert all(t.exit_status in ("submitted", "step_limit", "format_errors") for t in latest)
    on_disk = list(iter_trajectories(run))
    assert len(on_disk) == 6 and sorted(t.key for t in on_disk if t.exit_status == "error") == errored
    summary = summarize(run)
    assert summary["n"] == 4 and summary["superseded"] == 2 and "error" not in summary["by_exit_status"]
    assert filter_run(run, FilterConfig(require_resolved=False))["n"] == 4  # every reader takes the latest attempt

    # nothing left to retry: a second --retry-errors run writes nothing
    assert collect(cfg, progress=False, retry_errors=True)["written"] == 0
