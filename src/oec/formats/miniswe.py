"""mini-swe-agent's text format, read from the installed `mini-swe-agent` package, so that a student trained on it
runs in stock mini-swe-agent and every request it gets there equals what it was trained on.

Nothing here restates mini-swe-agent: the system and instance templates, the observation and format-error
templates come from one of its configs (default `swebench_backticks.yaml`), the action regex from that config or its
text-based model's default, parsing and observation rendering are its own functions, and an episode ends when its
local environment's rule says the output submitted. A new mini-swe-agent release is one version bump.

What oec cannot make equal, and so names (docs/formats.md): the working directory the templates mention (mini-swe-agent
uses /testbed, oec's sandbox /workspace), what commands print about the machine (paths, timings), a command that
timed out (mini-swe-agent reports an exception, oec a note), and that oec's shell keeps `cd` between commands.
"""

from __future__ import annotations

import os
import re
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Sequence

import yaml

from oec.core.errors import FormatError, InputError
from oec.core.protocols import Message
from oec.core.types import Action, Completion, Problem, Step, Task
from oec.formats.base import FormatConfig

# the first output line that ends an episode in mini-swe-agent (its environments' `_check_finished`); only used to
# find the submit command in the config's instructions, the rule itself is mini-swe-agent's (see `submits`)
SUBMIT_WORD = "COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"
MIN_OUTPUT_LIMIT = 10_000  # the observation template shows outputs up to 10,000 characters whole
PATCH_FILE = "patch.txt"  # where the config's instructions have the agent write its patch before submitting
# oec's shell caps long output as head + this note + tail (oec.env.sandbox.shell.cap_output)
CUT = re.compile(r"\n\[\.\.\. output truncated: (\d+) bytes in all; showing the first and last (\d+) \.\.\.\]\n")


def _minisweagent():
    """Import mini-swe-agent quietly: no banner on stdout, no network fetch of litellm's price table."""
    os.environ.setdefault("MSWEA_SILENT_STARTUP", "1")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    try:
        import minisweagent  # noqa: F401
    except ImportError:
        raise InputError("format miniswe needs the mini-swe-agent package: pip install 'oec[miniswe]'") from None
    import minisweagent.config as config

    return config


class MiniSweFormat:
    name = "miniswe"
    tools = None
    plain = True  # mini-swe-agent offers a plain shell: no `runtests`, no `edit`

    def __init__(self, config: FormatConfig | None = None):
        self.config = config or FormatConfig()
        if self.config.window is not None or self.config.system is not None:
            raise InputError("format miniswe: window and system are mini-swe-agent's (its config decides them); "
                             "leave them out, or give another config with miniswe?config=FILE")
        spec = self.config.config or "swebench_backticks.yaml"
        path = Path(spec)
        if not path.is_file():
            builtin = Path(_minisweagent().builtin_config_dir)
            found = sorted(builtin.rglob(spec if spec.endswith(".yaml") else f"{spec}.yaml"))
            if not found:
                raise InputError(f"format miniswe: no mini-swe-agent config {spec!r} (a file, or a name under "
                                 f"{builtin}, e.g. swebench_backticks.yaml)")
            path = found[0]
        self.path = path
        raw = yaml.safe_load(path.read_text()) or {}
        agent, model = raw.get("agent") or {}, raw.get("model") or {}
        missing = [k for k in ("system_template", "instance_template") if k not in agent] + \
                  [k for k in ("observation_template", "format_error_template") if k not in model]
        if missing:
            raise InputError(f"{path}: not a text-based mini-swe-agent config (no {', '.join(missing)})")
        from minisweagent.agents.default import AgentConfig

        self.agent = AgentConfig(**agent)
        self.model = model
        self.system = self._template(self.agent.system_template, {})
        # every turn renders the whole history again, and Jinja compiles a template on each call (40 ms for 18
        # steps): an output, and a task's instructions, are rendered once
        self._observe = lru_cache(maxsize=1024)(self._render_observation)
        self._instance = lru_cache(maxsize=256)(self._render_instance)

    @cached_property
    def action_regex(self) -> str:
        if "action_regex" in self.model:
            return self.model["action_regex"]
        _minisweagent()
        from minisweagent.models.litellm_textbased_model import LitellmTextbasedModelConfig

        return LitellmTextbasedModelConfig.model_fields["action_regex"].default

    def _template(self, template: str, values: dict) -> str:
        """Render one of the config's templates as mini-swe-agent does (Jinja, undefined names are errors) with the
        agent config's fields and VALUES; a name from the machine mini-swe-agent runs on cannot be reproduced."""
        from jinja2 import StrictUndefined, Template, UndefinedError

        try:
            return Template(template, undefined=StrictUndefined).render(**{**self.agent.model_dump(), **values})
        except UndefinedError as e:
            raise InputError(f"{self.path}: a template uses a value of the machine mini-swe-agent runs on ({e}); "
                             "oec renders the task and the agent config's fields only: use a config without it"
                             ) from None

    # ---- writing and reading replies ---------------------------------------------------------------------------
    @cached_property
    def _fence(self) -> tuple[str, str]:
        """The text around a command in the config's own example of an action (the first one its system prompt
        shows), so that a written reply is what the config asks a model for and what its regex reads."""
        for text in (self.system, self.agent.instance_template):
            m = re.search(self.action_regex, text, re.DOTALL)
            if m:
                return m.group(0)[: m.start(1) - m.start(0)], m.group(0)[m.end(1) - m.start(0):]
        raise InputError(f"{self.path}: its prompts show no example action that its action regex reads")

    def write(self, thought: str, action: Action) -> str:
        """A reply in this format: a THOUGHT section, then the one action block."""
        before, after = self._fence
        command = self.submit_command if action.kind == "submit" else action.command
        return f"THOUGHT: {thought}\n\n{before}{command}{after}" if thought else f"{before}{command}{after}"

    def output(self, step: Step) -> str:
        if step.format == self.name or step.action is None:
            return step.output
        return self.write(step.thought, step.action)

    def parse(self, completion: Completion) -> tuple[str, Action]:
        from minisweagent.exceptions import FormatError as MiniFormatError
        from minisweagent.models.utils.actions_text import parse_regex_actions

        text = completion.text
        try:
            actions = parse_regex_actions(text, action_regex=self.action_regex,
                                          format_error_template=self.model["format_error_template"],
                                          template_kwargs={"finish_reason": completion.finish_reason or "stop"})
        except MiniFormatError as e:
            raise FormatError(e.messages[0]["content"]) from None
        thought = text[: re.search(self.action_regex, text, re.DOTALL).start()].strip()
        return thought.removeprefix("THOUGHT:").strip(), Action(kind="bash", command=actions[0]["command"])

    # ---- submitting --------------------------------------------------------------------------------------------
    def submits(self, output: str, returncode: int | None) -> bool:
        """Whether mini-swe-agent's environment would end the episode on this output (its own rule)."""
        from minisweagent.exceptions import Submitted

        try:
            self._environment._check_finished({"output": output, "returncode": returncode})
        except Submitted:
            return True
        return False

    @cached_property
    def _environment(self):
        _minisweagent()
        from minisweagent.environments.local import LocalEnvironment

        return LocalEnvironment()

    @cached_property
    def submit_command(self) -> str:
        """The submit command the config's instructions give (the action that prints the submit word)."""
        blocks = re.findall(self.action_regex, self.agent.instance_template + self.system, re.DOTALL)
        found = [b.strip() for b in blocks if SUBMIT_WORD in b]
        if not found:
            raise InputError(f"{self.path}: its instructions show no action that prints {SUBMIT_WORD}")
        return found[0]

    def submission(self, paths: Sequence[str]) -> list[str]:
        """The commands that submit a fix of PATHS, as the config's instructions ask: write the patch, then submit."""
        if PATCH_FILE not in self.submit_command:
            return [self.submit_command]
        return [f"git diff -- {' '.join(paths)} > {PATCH_FILE}", self.submit_command]

    # ---- rendering ---------------------------------------------------------------------------------------------
    def observation(self, step: Step) -> str:
        if step.format_error:  # already the config's format-error message
            return step.observation
        return self._observe(step.observation, step.returncode)

    def _render_observation(self, shown: str, returncode: int | None) -> str:
        from minisweagent.models.utils.actions_text import format_observation_messages

        output = {"output": _uncut(shown), "returncode": -1 if returncode is None else returncode, "exception_info": ""}
        return format_observation_messages([output], observation_template=self.model["observation_template"],
                                           template_vars=self.agent.model_dump())[0]["content"]

    def _render_instance(self, problem_statement: str) -> str:
        return self._template(self.agent.instance_template, {"task": problem_statement})

    def render(self, task: Task | Problem, steps: Sequence[Step]) -> list[Message]:
        messages = [{"role": "system", "content": self.system},
                    {"role": "user", "content": self._instance(task.problem_statement)}]
        for step in steps:
            messages.append({"role": "assistant", "content": self.output(step)})
            messages.append({"role": "user", "content": self.observation(step)})
        return messages


def _uncut(text: str) -> str:
    """The output as long as it was, for the observation template's length test and head/tail: oec's shell kept
    the first and last HALF bytes (at least 5,000 each when env.output_limit >= 10,000, all the template shows), and
    the cut middle, which no template shows, is stood in for by as many spaces."""
    m = CUT.search(text)
    if not m:
        return text
    head, tail, total = text[: m.start()], text[m.end():], int(m.group(1))
    return head + " " * max(0, total - len(head.encode()) - len(tail.encode())) + tail
