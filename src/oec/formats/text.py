"""Text format: a short thought, then exactly one fenced bash block (mini-swe-agent's convention)."""

from __future__ import annotations

import re
from typing import Sequence

from oec.protocols import FormatError, Message
from oec.types import Action, Step, Task

SYSTEM = """You fix bugs in a Python repository at /workspace. Reply with a short thought and exactly one bash block:
```bash
command
```
Tools besides the shell: `runtests [pytest args]` runs the tests and prints one line per failure; `submit` ends the task.
To change a file, replace one exact snippet with `edit FILE` and a quoted heredoc: the old lines, a line =======, the new lines:
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


class TextFormat:
    name = "text"

    def __init__(self, system: str = SYSTEM):
        self.system = system

    def render(self, task: Task, steps: Sequence[Step]) -> list[Message]:
        messages = [{"role": "system", "content": self.system}, {"role": "user", "content": task.problem_statement}]
        for step in steps:
            messages.append({"role": "assistant", "content": step.output})
            messages.append({"role": "user", "content": self.observation(step)})
        return messages

    @staticmethod
    def observation(step: Step) -> str:
        if step.format_error:
            return step.observation
        text = step.observation if step.observation.strip() else "(no output)"
        return text if step.returncode in (0, None) else f"(exit {step.returncode})\n{text}"

    def parse(self, text: str) -> Action:
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
        if command == "submit":
            return Action(kind="submit")
        return Action(kind="bash", command=command)
