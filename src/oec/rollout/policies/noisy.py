"""A weak scripted student: follows the expert most of the time, and otherwise makes a plausible mistake.

Mistakes are the ones a small model makes: reading the wrong module, grepping for the wrong function, repeating
its last command, editing a line that was fine, replying without a bash block, submitting too early. The error rate
is seeded per episode, so a collection with a fixed `--seed` is reproducible.
"""

from __future__ import annotations

import functools
import re
import time

from pydantic import BaseModel, ConfigDict, Field

from oec.core.protocols import Episode, Format, Message
from oec.core.types import Completion, Task
from oec.formats import TextFormat
from oec.rollout.policies.edits import Edit
from oec.rollout.policies.scripted import ScriptedExpert, base_texts, read_workspace, reply


@functools.lru_cache(maxsize=256)
def _source_files(task_json: str) -> dict[str, str]:
    return {p: t for p, t in base_texts(Task.model_validate_json(task_json)).items() if t is not None}


def source_files(task: Task) -> dict[str, str]:
    """The base files a student's mistakes are drawn from: an inline repo's, or a git repo's watched files (read once
    per task, not per turn, since a real repo's files come from its template on disk)."""
    return task.repo.files if task.repo.kind == "inline" else _source_files(task.model_dump_json())

MISTAKES = {"wrong_cat": 0.25, "wrong_grep": 0.2, "repeat": 0.2, "wrong_edit": 0.25, "format_error": 0.05,
            "early_submit": 0.05}
SWAPS = [(" + ", " - "), (" - ", " + "), (" < ", " > "), (" > ", " < "), (" * ", " + "), ("[:n]", "[:n - 1]"),
         ("if ", "if not ")]


class NoisyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    error_rate: float = Field(0.3, ge=0, le=1, description="chance that a turn is a mistake")
    latency: float = Field(0.0, ge=0, description="seconds to sleep per call (benchmarks)")


def perturb(line: str, rng) -> str | None:
    """A plausible wrong version of LINE (an operator or comparison changed, a constant bumped), or None."""
    options = [(a, b) for a, b in SWAPS if a in line]
    digits = [m for m in re.finditer(r"\b\d+\b", line)]
    if digits:
        options.append(("digit", None))
    if not options:
        return None
    a, b = rng.choice(options)
    if a == "digit":
        m = rng.choice(digits)
        return line[: m.start()] + str(int(m.group()) + rng.choice([-1, 1])) + line[m.end() :]
    return line.replace(a, b, 1)


class NoisyStudent:
    def __init__(self, spec: str = "scripted:noisy", config: NoisyConfig | None = None, format: Format | None = None):
        self.spec, self.config, self.format = spec, config or NoisyConfig(), format or TextFormat()
        self._expert = ScriptedExpert(format=self.format)  # its fallback acts in the same scaffold

    def close(self) -> None:
        pass

    def act(self, messages: list[Message], episode: Episode) -> Completion:
        t0 = time.monotonic()
        if self.config.latency:
            time.sleep(self.config.latency)
        rng, turn = episode.rng, len(episode.steps)
        completion = None
        if rng.random() < self.config.error_rate:
            # draw mistake kinds without replacement until one applies here (no previous command to repeat, ...)
            kinds = dict(MISTAKES)
            while kinds and completion is None:
                kind = rng.choices(list(kinds), list(kinds.values()))[0]
                del kinds[kind]
                made = self.mistake(kind, episode)
                if isinstance(made, tuple):
                    completion = reply(self.format, *made, turn)
                else:
                    completion = made
        completion = completion or reply(self.format, *self._expert.decide(episode), turn)
        return completion.model_copy(update={"latency_s": time.monotonic() - t0})

    def mistake(self, kind: str, episode: Episode) -> tuple[str, str] | Completion | None:
        """A wrong (thought, command), a malformed Completion, or None when KIND does not apply here."""
        rng, files = episode.rng, source_files(episode.task)
        modules = sorted(p for p in files if p.endswith(".py") and not p.startswith("tests/") and files[p].strip())
        if kind == "wrong_cat" and modules:
            path = rng.choice(modules)
            return f"Maybe the problem is in {path}.", f"cat {path}"
        if kind == "wrong_grep":
            names = sorted({n for p in modules for n in re.findall(r"^def (\w+)\(", files[p], re.M)})
            if names:
                pkg = episode.task.meta.get("package", ".")
                return "Let me look for this function.", f"grep -rn 'def {rng.choice(names)}(' {pkg}"
        if kind == "repeat":
            prev = [s.completion for s in episode.steps if s.actor == episode.actor and s.completion]
            return prev[-1] if prev else None
        if kind == "wrong_edit" and modules:
            path = rng.choice(modules)
            text = read_workspace(episode.workspace, path)
            if text is None:
                return None
            lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith(("def ", "from "))]
            rng.shuffle(lines)
            for line in lines:
                new = perturb(line, rng)
                if new and new != line and text.count(line) == 1:
                    return "I think this line is the bug; let me fix it.", Edit(path, line, new).command()
            return None
        if kind == "format_error":
            return Completion(text="I think the bug is in one of the functions, I should fix it.")
        if kind == "early_submit":
            return "I think it is fixed now.", "submit"
        return None
