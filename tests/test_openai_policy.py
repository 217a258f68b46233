"""The OpenAI-compatible policy against a real local server (`transformers serve` with the tiny student), and a
fault-injecting HTTP proxy in front of it for the retry and failure paths (fixtures `served` and `proxy` in
conftest.py, shared with the Ray backend's tests)."""

import random

import pytest

from oec.core.errors import PolicyError
from oec.core.protocols import Episode
from oec.core.store import read_trajectories
from oec.rollout.collect import CollectConfig, collect
from oec.rollout.policies import make_policy
from oec.tasks.io import write_tasks

# needs the system tools `make test` installs (bubblewrap, podman or chromium): not in `make test-fast`
pytestmark = pytest.mark.tools


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
    # every episode ends for the reason its steps show: three format errors in a row, three steps, a submit, or an
    # error the server gave
    ended = {"format_errors": lambda t: len(t.steps) >= 3 and all(s.format_error for s in t.steps[-3:]),
             "step_limit": lambda t: len(t.steps) == 3 and not all(s.format_error for s in t.steps),
             "submitted": lambda t: t.steps[-1].action is not None and t.steps[-1].action.kind == "submit",
             "error": lambda t: "HTTP 400" in t.exit_message}
    assert all(ended[t.exit_status](t) for t in trajs), [(t.exit_status, len(t.steps)) for t in trajs]
    errors = [t for t in trajs if t.exit_status == "error"]
    assert errors and all("HTTP 400" in t.exit_message for t in errors)
    steps = [s for t in trajs for s in t.steps]
    assert steps and all(s.completion.prompt_tokens > 0 for s in steps)
