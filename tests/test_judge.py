"""The optional LLM judge of failed trajectories against a real OpenAI-compatible server (`transformers serve` with the
tiny untrained student, fixtures `served` and `proxy` in conftest.py): the protocol, caching and error handling.
The tiny model's answers carry no meaning; what is checked is that whatever it says is either one of the rubric's
categories or recorded as unparsed, never guessed."""

import json

import pytest

from oec.viewer.failures import CATEGORIES, FAILURES, RESOLVED, failures_of
from oec.viewer.judge import RUBRIC, judge_messages, parse_answer
from oec.tasks.io import InputError
from oec.core.types import Action, Step, TestResult, Trajectory, Verdict


def _traj(task_id, status, resolved=False):
    steps = [Step(turn=0, actor="student", output="x", action=Action(kind="bash", command="cat a.py"),
                  observation="x = 1"), Step(turn=1, actor="student", output="y", action=Action(kind="submit"),
                                             observation="")]
    return Trajectory(task_id=task_id, sample=0, mode="student", policies={"student": "hand"}, steps=steps,
                      exit_status=status, seed=0,
                      verdict=Verdict(resolved=resolved, tests={"t::a": TestResult(outcome="passed" if resolved
                                                                                    else "failed")}))


@pytest.fixture
def run(tmp_path):
    """A run directory of two failed trajectories and one resolved one (no tasks file: the judge does without)."""
    trajs = [_traj("a", "submitted"), _traj("b", "step_limit"), _traj("c", "submitted", resolved=True)]
    (tmp_path / "trajectories.jsonl").write_text("".join(t.model_dump_json() + "\n" for t in trajs))
    return tmp_path


def test_answers_are_parsed_against_the_rubric():
    assert parse_answer('Sure. {"category": "never_edited", "reason": "no diff"}') == {"category": "never_edited",
                                                                                      "reason": "no diff"}
    assert parse_answer("I think repeated.")["category"] == "repeated"
    assert parse_answer('{"category": "laziness"} or never_edited or repeated')["category"] is None
    assert parse_answer("")["unparsed"] == ""
    messages = judge_messages(_traj("a", "submitted"), None)
    assert messages[0]["content"] == RUBRIC and all(c in RUBRIC for c in CATEGORIES)
    assert "$ cat a.py" in messages[1]["content"] and "t::a failed" in messages[1]["content"]
    long = _traj("a", "step_limit")
    long = long.model_copy(update={"steps": [long.steps[0].model_copy(update={"turn": i}) for i in range(50)]})
    text = judge_messages(long, None)[1]["content"]
    assert "(10 turns left out)" in text and "turn 19 " in text and "turn 20 " not in text and "turn 49 " in text


def test_judge_against_a_real_server(run, proxy, tiny_model):
    spec = f"openai:{tiny_model}@{proxy.url}?max_tokens=12&backoff=0.01&max_retries=3"
    proxy.faults = ["500", "garbage"]  # transient: retried by the policy's client
    rows = failures_of(run, judge=spec)
    judged = {r["task_id"]: r["judge"] for r in rows if "judge" in r}
    assert sorted(judged) == ["a", "b"] and all("judge" not in r for r in rows if r["category"] == RESOLVED)
    assert proxy.seen == 4 and sum(j["retries"] for j in judged.values()) == 2
    for j in judged.values():  # a tiny untrained model: its answer means nothing, but it is classified honestly
        assert j["prompt_tokens"] > 100 and j["completion_tokens"] > 0 and j["judge"] == spec
        assert j["category"] in CATEGORIES or (j["category"] is None and "unparsed" in j)
    stored = [json.loads(line) for line in (run / FAILURES).read_text().splitlines()]
    assert [r.get("judge") for r in stored] == [r.get("judge") for r in rows]

    # a rerun asks nothing again: the answers are kept while the trajectories are the same
    assert failures_of(run, judge=spec) == rows and proxy.seen == 4

    # a failure no retry can fix stops with one line naming the judge; failures.jsonl keeps the last complete answer
    before = (run / FAILURES).read_text()
    proxy.faults = ["400"]
    with pytest.raises(InputError, match=r"judge openai:.*HTTP 400, not retried"):
        failures_of(run, judge=spec.replace("max_tokens=12", "max_tokens=13"))
    assert (run / FAILURES).read_text() == before
