"""What every Format shares: observation text, windowing of old observations and of whole turns that do not fit a
context, format options."""

from __future__ import annotations

from typing import Sequence

from pydantic import BaseModel, ConfigDict, Field

from oec.core.errors import InputError, PolicyError
from oec.core.protocols import Message
from oec.core.types import Action, Problem, Step, Task


class FormatConfig(BaseModel):
    """Options of a Format (`--student-format text?window=4` on the command line)."""

    model_config = ConfigDict(extra="forbid")
    window: int | None = Field(None, ge=1, description="keep only the last N observations in full; older ones elided")
    system: str | None = Field(None, description="system prompt (default: the format's own)")
    config: str | None = Field(None, description="miniswe: the mini-swe-agent config, a file or a name it ships "
                                                 "[swebench_backticks.yaml]")


def text_reply(thought: str, action: Action) -> str:
    """The canonical text rendering of a thought and an action."""
    command = "submit" if action.kind == "submit" else action.command
    return f"THOUGHT: {thought}\n\n```bash\n{command}\n```" if thought else f"```bash\n{command}\n```"


class OecFormat:
    """What oec's own formats share: oec's tools (`runtests`, `edit`) are offered, and `submit` ends an episode."""

    name: str
    default_system: str
    plain = False  # False: the scripted expert may use oec's tools

    def __init__(self, config: FormatConfig | None = None):
        self.config = config or FormatConfig()
        if self.config.config is not None:
            raise InputError(f"format {self.name}: `config` is an option of the miniswe format only")
        self.system = self.config.system or self.default_system

    def write(self, thought: str, action: Action) -> str:
        """A reply as text (for tool-call formats, a DAgger label for a text-trained student)."""
        return text_reply(thought, action)

    def submits(self, output: str, returncode: int | None) -> bool:
        return False  # an episode ends by the `submit` action, never by what a command printed

    def submission(self, paths: Sequence[str]) -> list[str]:
        return ["submit"]


def opening(system: str, task: Task | Problem) -> list[dict]:
    """Every format starts the same way: its system prompt, then the problem statement."""
    return [{"role": "system", "content": system}, {"role": "user", "content": task.problem_statement}]


def observation_text(step: Step) -> str:
    if step.format_error:
        return step.observation
    text = step.observation if step.observation.strip() else "(no output)"
    return text if step.returncode in (0, None) else f"(exit {step.returncode})\n{text}"


def windowed(steps: Sequence[Step], window: int | None) -> list[str]:
    """Observation texts, the older ones replaced by a marker so long episodes fit a small context."""
    texts = [observation_text(s) for s in steps]
    if window is None:
        return texts
    cut = len(texts) - window
    return [f"[output of turn {i} elided: {len(t)} characters]" if i < cut and s.action else t
            for i, (s, t) in enumerate(zip(steps, texts))]


def fit_to_context(messages: list[Message], count, budget: int) -> list[Message]:
    """Drop the oldest (reply, observation) pairs until COUNT(messages) <= BUDGET; the system prompt and the problem
    stay, and a note says how many turns were left out. TRL-style truncation would cut the *start*; we never do."""
    for dropped in range((len(messages) - 2) // 2 + 1):
        kept = messages[:2] + messages[2 + 2 * dropped :]
        if dropped:  # the note counts against the budget too
            note = f"\n\n[{dropped} earlier turns left out to fit]"
            kept[1] = dict(kept[1], content=kept[1]["content"] + note)
        if count(kept) <= budget:
            return kept
    raise PolicyError(f"the prompt needs {count(messages[:2] + messages[-2:])} tokens even with all earlier turns "
                      f"left out, but only {budget} fit (context minus max_new_tokens); shorten the system prompt "
                      "or lower output_limit")
