"""Text format: a short thought, then exactly one fenced bash block (mini-swe-agent's convention)."""

from __future__ import annotations

import re
from typing import Sequence

from oec.core.errors import FormatError
from oec.core.protocols import Message
from oec.core.types import Action, Completion, Problem, Step, Task
from oec.formats.base import OecFormat, opening, text_reply, windowed

SYSTEM = """You fix bugs in a Python repository at /workspace. Reply with a short thought and exactly one bash block:
```bash
command
```
Tools besides the shell: `runtests [pytest args]` runs the tests and prints one line per failure; \
`submit` ends the task.
To change a file, replace one exact snippet with `edit FILE` and a quoted heredoc: the old lines, a line =======, \
the new lines:
```bash
edit pkg/mod.py <<'EOF'
    return a - b
=======
    return a + b
EOF
```"""

# A block ends at a line that is exactly ``` so that heredocs and code inside the block stay intact.
FENCE = re.compile(r"^```(?:bash|sh)?[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
FENCE_LINE = re.compile(r"^```", re.MULTILINE)
# Where a local model may stop before its end-of-turn token: a block as FENCE reads it, whose closing line has ended
# (until the newline, a later token could still turn ``` into ```bash). The text up to there parses as that block.
ACTION_END = re.compile(r"^```(?:bash|sh)?[ \t]*\n.*?^```[ \t]*\n", re.DOTALL | re.MULTILINE)


class TextFormat(OecFormat):
    name = "text"
    tools = None
    default_system = SYSTEM

    def render(self, task: Task | Problem, steps: Sequence[Step]) -> list[Message]:
        messages = opening(self.system, task)
        for step, observation in zip(steps, windowed(steps, self.config.window)):
            messages.append({"role": "assistant", "content": self.output(step)})
            messages.append({"role": "user", "content": observation})
        return messages

    def output(self, step: Step) -> str:
        """The step as this format would have written it: verbatim if it did, else rebuilt from thought + action."""
        if step.format == self.name or step.action is None:
            return step.output
        return text_reply(step.thought, step.action)

    def parse(self, completion: Completion) -> tuple[str, Action]:
        text = completion.text
        blocks = FENCE.findall(text)
        if len(blocks) != 1:
            unterminated = len(FENCE_LINE.findall(text)) % 2 == 1
            found = f"{len(blocks)} bash blocks" + (" and an unterminated ``` fence" if unterminated else "")
            raise FormatError(
                f"Format error: found {found}. Reply with a short thought and exactly one ```bash block "
                "(one command, or several joined with &&); use `submit` when done."
            )
        command = blocks[0].strip()
        if not command:
            raise FormatError("Format error: the bash block is empty. Put one command in it, or `submit`.")
        thought = text[: FENCE.search(text).start()].strip().removeprefix("THOUGHT:").strip()
        if command == "submit":
            return thought, Action(kind="submit")
        return thought, Action(kind="bash", command=command)
