"""The rollout loop: one episode, start to verdict.

Ask the plan who acts, render the history in that actor's format, get its output, parse it, run it, record the
step with its actor. Stop on submit, the step limit, too many format errors in a row, or an error. Modes live in the
schedule's plan, never here.
"""

from __future__ import annotations

import random
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field

from oec.core.errors import FormatError
from oec.core.protocols import Env, Episode, EpisodePlan, Policy
from oec.core.types import Actor, Label, Step, Task, Trajectory, Verdict


class LoopConfig(BaseModel):
    """Limits of one episode."""

    model_config = ConfigDict(extra="forbid")
    step_limit: int = Field(30, ge=1, description="turns before the episode ends with exit status step_limit")
    max_format_errors: int = Field(3, ge=1, description="format errors in a row before the episode ends")


def _label(expert: Policy, task: Task, env: Env, steps: list[Step], rng: random.Random) -> Label:
    """DAgger relabelling: what the expert would do in the state the student is in. Not executed."""
    completion = expert.act(expert.format.render(task, steps), Episode(task, env.workspace, steps, rng, "expert"))
    try:
        _, action = expert.format.parse(completion)
    except FormatError:
        action = None
    return Label(output=completion.text, action=action, completion=completion)


@dataclass
class Plan:
    policies: dict[Actor, Policy]
    choose: Callable[[int, Sequence[Step]], Actor]
    label_student_steps: bool = False
    info: dict = field(default_factory=dict)

    def actor(self, turn: int, steps: Sequence[Step]) -> Actor:
        return self.choose(turn, steps)


def rollout(
    task: Task,
    env: Env,
    plan: EpisodePlan,
    *,
    mode: str,
    seed: int,
    sample: int = 0,
    config: LoopConfig | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    verify: bool = True,
) -> Trajectory:
    config = config or LoopConfig()
    rngs = {actor: random.Random(f"{seed}:{actor}") for actor in ("student", "expert")}
    steps: list[Step] = []
    status, message, errors_in_row = "step_limit", "", 0
    t_start, t_policy, t_env = time.monotonic(), 0.0, 0.0
    try:
        for turn in range(config.step_limit):
            if should_stop():
                status, message = "cancelled", "stopped by the user"
                break
            actor = plan.actor(turn, steps)
            policy = plan.policies[actor]
            t0 = time.monotonic()
            completion = policy.act(policy.format.render(task, steps),
                                    Episode(task, env.workspace, steps, rngs[actor], actor))
            label = None
            if plan.label_student_steps and actor == "student":
                label = _label(plan.policies["expert"], task, env, steps, rngs["expert"])
            t_policy += time.monotonic() - t0
            fmt = policy.format.name
            try:
                thought, action = policy.format.parse(completion)
            except FormatError as e:
                errors_in_row += 1
                steps.append(Step(turn=turn, actor=actor, output=completion.text, format=fmt, action=None,
                                  observation=str(e), format_error=True, completion=completion, label=label))
                if errors_in_row >= config.max_format_errors:
                    status, message = "format_errors", f"{errors_in_row} format errors in a row"
                    break
                continue
            errors_in_row = 0
            if action.kind == "submit":
                steps.append(Step(turn=turn, actor=actor, output=completion.text, format=fmt, thought=thought,
                                  action=action, observation="", completion=completion, label=label))
                status = "submitted"
                break
            t0 = time.monotonic()
            result = env.execute(action.command)
            t_env += time.monotonic() - t0
            steps.append(Step(turn=turn, actor=actor, output=completion.text, format=fmt, thought=thought,
                              action=action, observation=result.output, returncode=result.returncode,
                              completion=completion, env_latency_s=time.monotonic() - t0, label=label))
            if policy.format.submits(result.output, result.returncode):  # a scaffold's submit command (miniswe)
                status = "submitted"
                break
    except Exception as e:  # a policy or environment failure ends this episode, never the collection
        status = "error"
        message = f"{e.__class__.__name__}: {e}\n" + "".join(traceback.format_exc(limit=-3))
    t_verify = time.monotonic()
    verdict = None
    if verify and status != "cancelled":
        try:
            verdict = env.verify()
        except Exception as e:  # the steps are kept; the verdict says why there is none
            verdict = Verdict(resolved=False, tests={}, error=f"verification failed: {e.__class__.__name__}: {e}")
    timings = {"total_s": time.monotonic() - t_start, "policy_s": t_policy, "env_s": t_env,
               "verify_s": time.monotonic() - t_verify}
    switch_turn = plan.info.get("switch_turn")
    return Trajectory(
        task_id=task.task_id,
        sample=sample,
        mode=mode,
        policies={actor: p.spec for actor, p in plan.policies.items()},
        switch_turn=switch_turn if switch_turn is not None and switch_turn < len(steps) else None,
        switch_info=plan.info,
        steps=steps,
        exit_status=status,
        exit_message=message,
        verdict=verdict,
        seed=seed,
        timings=timings,
    )
