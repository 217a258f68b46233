"""Every interface in one place. Implementations are plain classes elsewhere; nothing here has behaviour."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from oec.core.types import Action, Actor, Completion, Problem, Step, Task, Trajectory, Verdict

Message = dict[str, Any]  # OpenAI chat message: role, content, and for tool-call formats tool_calls / tool_call_id


@dataclass
class Episode:
    """What a policy may look at besides its rendered messages. LM policies ignore it; scripted ones are
    privileged (they read the workspace) but act only through ordinary commands."""

    task: Task
    workspace: Path
    steps: Sequence[Step]
    rng: random.Random
    actor: Actor
    info: dict = field(default_factory=dict)


class Format(Protocol):
    """Renders a trajectory as one policy's chat messages, and parses that policy's output into an Action.

    Steps produced under another Format are re-rendered from their canonical thought + action (the context rewrite
    at an OEC switch), so each policy always sees the whole history in its own Format.
    """

    name: str
    tools: list[dict] | None  # native tool definitions to send with the request (None: plain text)
    plain: bool  # the scaffold offers a plain shell only (no `runtests`, `edit`): the scripted expert uses neither

    def render(self, task: Task | Problem, steps: Sequence[Step]) -> list[Message]: ...  # needs only the problem

    def parse(self, completion: Completion) -> tuple[str, Action]: ...  # (thought, action); raises FormatError

    def write(self, thought: str, action: Action) -> str: ...  # a reply's text, as a model in this format writes it

    def submits(self, output: str, returncode: int | None) -> bool: ...  # a command's output ends the episode

    def submission(self, paths: Sequence[str]) -> list[str]: ...  # the commands that submit a fix of PATHS


class Policy(Protocol):
    spec: str  # e.g. "scripted:expert"; recorded in trajectories
    format: Format

    def act(self, messages: list[Message], episode: Episode) -> Completion: ...

    def close(self) -> None: ...  # frees what it holds (a loaded model, an HTTP client); called once, at the end


@dataclass(frozen=True)
class CommandResult:
    """What one shell command gave the agent: its output as shown (cut past the limit) and its exit code (None:
    killed on a timeout)."""

    output: str
    returncode: int | None
    timed_out: bool = False
    truncated: bool = False
    restarted: bool = False  # the shell was started afresh (cwd and variables reset)


class Env(Protocol):
    workspace: Path  # host path; only privileged (scripted) policies read it

    def execute(self, command: str) -> CommandResult: ...

    def verify(self) -> Verdict: ...

    def close(self) -> None: ...


class Verifier(Protocol):
    def verify(self, task: Task) -> Verdict: ...

    def close(self) -> None: ...


class EpisodePlan(Protocol):
    """A schedule's decisions for one episode."""

    policies: dict[Actor, Policy]  # may wrap a policy, e.g. to replay a probe rollout
    label_student_steps: bool  # DAgger: also ask the expert what it would do where the student acts
    info: dict  # recorded in the trajectory as switch_info

    def actor(self, turn: int, steps: Sequence[Step]) -> Actor: ...


class Backend(Protocol):
    """Where a collection's episodes run (threads here, or Ray actors); collect.py drives it."""

    capacity: int  # episodes worth submitting ahead of the results
    running: dict  # episodes in flight, by handle
    retried: int  # episodes run again after their worker died

    def submit(self, task: Task, sample: int) -> None: ...

    def finished(self, timeout: float) -> list[Trajectory]: ...  # those done within TIMEOUT seconds (maybe none)

    def cancel(self) -> None: ...  # episodes in flight end at their next turn, as "cancelled"

    def drain(self) -> list[Trajectory]: ...  # waits for every episode in flight

    def close(self, abandon: bool) -> None: ...


Probe = Callable[[], Trajectory]  # runs a student-only episode of the same task (for switch samplers)


class Schedule(Protocol):
    """Decides who acts at each turn. Modes (expert, student, oec, dagger) are schedules; the loop has no modes."""

    mode: str

    def plan(self, task: Task, policies: dict[Actor, Policy], rng: random.Random, probe: Probe) -> EpisodePlan: ...
