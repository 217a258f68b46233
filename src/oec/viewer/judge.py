"""An optional LLM judge of failed trajectories (`oec show --failures --judge openai:MODEL@URL`).

The rubric is fixed (the rule-based categories of failures.py, so the two can be compared line by line); the judge
reads the problem, the agent's actions with the start of each observation, and the per-test verdict, and answers one
category with a reason. Its calls go through the OpenAI-compatible policy, so transient failures are retried with
backoff like any policy's. An answer that names no category is recorded as unparsed (with its text), never guessed;
a failure that retrying cannot fix (a wrong model name, a bad key, a server that stays down) stops the command with
one line, since every later call would fail alike.
"""

from __future__ import annotations

import json
import re

from oec.viewer.failures import CATEGORIES
from oec.rollout.policies import make_policy
from oec.core.protocols import PolicyError
from oec.tasks.io import InputError
from oec.core.types import Problem, Task, Trajectory

OBS_CHARS = 300  # of each observation: enough to see an error, small enough for a judge's context
MAX_TURNS = 40  # a longer episode shows its first and last 20 turns: where it went wrong and where it ended

RUBRIC = ("You review a failed attempt of a software-engineering agent to fix a bug. Pick the ONE category that best "
          "explains why it failed:\n" + "\n".join(f"- {name}: {text}" for name, text in CATEGORIES.items())
          + '\nAnswer with one JSON object and nothing else: {"category": "<one of the names above>", '
            '"reason": "<one sentence>"}')


def judge_messages(traj: Trajectory, task: Task | Problem | None) -> list[dict]:
    lines = [f"Problem:\n{task.problem_statement}" if task else
             f"Task {traj.task_id} (problem statement not available)"]
    steps = traj.steps
    if len(steps) > MAX_TURNS:
        half = MAX_TURNS // 2
        steps = [*steps[:half], None, *steps[-half:]]
    for s in steps:
        if s is None:
            lines.append(f"({len(traj.steps) - MAX_TURNS} turns left out)")
            continue
        act = ("(unparseable output)" if s.action is None else
               "submit" if s.action.kind == "submit" else f"$ {s.action.command}")
        lines.append(f"turn {s.turn} ({s.actor}): {act}\n{s.observation[:OBS_CHARS]}")
    tests = traj.verdict.tests if traj.verdict else {}
    lines.append(f"Episode ended: {traj.exit_status} {traj.exit_message[:200]}".rstrip())
    lines.append("Tests after the episode: " + (", ".join(f"{k} {v.outcome}" for k, v in tests.items()) or "none run"))
    return [{"role": "system", "content": RUBRIC}, {"role": "user", "content": "\n\n".join(lines)}]


def parse_answer(text: str) -> dict:
    """{category, reason} from the judge's text; category None (and the text kept) when it names none."""
    for match in re.finditer(r"\{.*?\}", text, re.DOTALL):
        try:
            data = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict) and data.get("category") in CATEGORIES:
            return {"category": data["category"], "reason": str(data.get("reason", ""))[:300]}
    named = [c for c in CATEGORIES if re.search(rf"\b{c}\b", text)]
    if len(named) == 1:  # a bare name, without the JSON around it
        return {"category": named[0], "reason": ""}
    return {"category": None, "unparsed": text[:300]}


class Judge:
    def __init__(self, spec: str):
        if not spec.startswith("openai:"):
            raise InputError(f"--judge {spec!r}: the judge is an OpenAI-compatible model, e.g. "
                             "--judge openai:gpt-4.1@https://api.openai.com/v1 (options: ?max_tokens=200&timeout=60)")
        self.spec = spec
        self.policy = make_policy(spec)

    def __call__(self, traj: Trajectory, task: Task | Problem | None) -> dict:
        try:
            # LM policies never look at the episode (protocols.Episode is for scripted ones)
            completion = self.policy.act(judge_messages(traj, task), None)
        except PolicyError as e:
            raise InputError(f"judge {self.spec}: {e}") from None
        return {**parse_answer(completion.text), "judge": self.spec, "retries": completion.retries,
                "prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens}

    def close(self) -> None:
        self.policy.close()
