"""Schedules: who acts at each turn. Switching and mixing are schedules; the rollout loop has no modes.

`uniform` and `late` sample the switch turn over the student's *own* episode length, as the paper does: a probe
episode of the student alone is run first, the switch turn k is drawn over its length, and the OEC episode replays
the probe's first k outputs before the expert takes over. So every OEC trajectory has a switch turn inside the
student's real trajectory, and at least one expert step.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Sequence

from oec.core.protocols import Episode, Message, Policy, Probe
from oec.core.types import Actor, Completion, Step, Task


@dataclass
class Plan:
    policies: dict[Actor, Policy]
    choose: Callable[[int, Sequence[Step]], Actor]
    label_student_steps: bool = False
    info: dict = field(default_factory=dict)

    def actor(self, turn: int, steps: Sequence[Step]) -> Actor:
        return self.choose(turn, steps)


class Replay:
    """The student, replaying a probe episode's outputs for its first turns."""

    def __init__(self, policy: Policy, completions: list[Completion]):
        self.policy, self.completions = policy, completions
        self.spec, self.format = policy.spec, policy.format

    def act(self, messages: list[Message], episode: Episode) -> Completion:
        turn = len(episode.steps)
        return self.completions[turn] if turn < len(self.completions) else self.policy.act(messages, episode)

    def close(self) -> None:
        pass  # the wrapped policy belongs to the collector, which closes it


class Solo:
    """One actor for the whole episode: modes `expert` and `student`."""

    def __init__(self, actor: Actor):
        self.actor, self.mode = actor, actor

    def plan(self, task: Task, policies: dict[Actor, Policy], rng: random.Random, probe: Probe) -> Plan:
        return Plan(policies, lambda turn, steps: self.actor)


class Switch:
    """OEC: the student acts until turn k, then the expert finishes the task from the state the student left."""

    mode = "oec"

    def __init__(self, sampler: str):
        self.name, _, arg = sampler.partition(":")
        if self.name == "fixed":
            if not arg.isdigit():
                raise ValueError(f"--switch fixed:K needs a non-negative integer K, got {sampler!r}")
            self.k = int(arg)
        elif self.name == "late":
            a, _, b = (arg or "3,1").partition(",")
            try:
                self.a, self.b = float(a), float(b)
            except ValueError:
                raise ValueError(f"--switch late:A,B needs two numbers (Beta shape), got {sampler!r}") from None
        elif self.name != "uniform" or arg:
            raise ValueError(f"unknown --switch {sampler!r}; use uniform, late, late:A,B, fixed:K or trigger:DIR")

    def plan(self, task: Task, policies: dict[Actor, Policy], rng: random.Random, probe: Probe) -> Plan:
        info: dict = {"sampler": self.name}
        student = policies["student"]
        if self.name == "fixed":
            k = self.k
        else:
            first = probe()
            n = len(first.steps)
            if self.name == "uniform":
                k = rng.randrange(n) if n else 0
            else:  # Beta(a, b) over the relative position; a > b leans late
                k = min(int(rng.betavariate(self.a, self.b) * n), max(n - 1, 0))
            info.update(probe_length=n, probe_exit=first.exit_status)
            student = Replay(student, [s.completion or Completion(text=s.output) for s in first.steps[:k]])
        info["switch_turn"] = k
        return Plan({"student": student, "expert": policies["expert"]},
                    lambda turn, steps: "student" if turn < k else "expert", info=info)


class Mix:
    """DAgger: at each turn the expert acts with probability beta; where the student acts, the expert's action is
    also asked for and recorded as the step's label (never executed)."""

    mode = "dagger"

    def __init__(self, beta: float):
        if not 0 <= beta <= 1:
            raise ValueError(f"--beta must be in [0, 1], got {beta}")
        self.beta = beta

    def plan(self, task: Task, policies: dict[Actor, Policy], rng: random.Random, probe: Probe) -> Plan:
        return Plan(policies, lambda turn, steps: "expert" if rng.random() < self.beta else "student",
                    label_student_steps=True, info={"beta": self.beta})


def make_schedule(mode: str, switch: str = "uniform", beta: float = 0.5, trigger_threshold: float = 0.99):
    if mode in ("expert", "student"):
        return Solo(mode)
    if mode == "oec" and switch.startswith("trigger:"):
        from oec.rollout.trigger import Trigger  # numpy, scikit-learn and the embedder only when asked for

        return Trigger(switch.removeprefix("trigger:"), trigger_threshold)
    if mode == "oec":
        return Switch(switch)
    if mode == "dagger":
        return Mix(beta)
    raise ValueError(f"unknown mode {mode!r}; choose from expert, student, oec, dagger")
