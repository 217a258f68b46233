"""Tool-call format: native function calls `bash`, `edit` and `submit` (OpenAI chat-completions style).

The canonical action stays a shell command: an `edit` call becomes the same `edit FILE <<'EOF'` command the text
format uses, so a trajectory is stored once, format-free, and each policy sees it in its own format.
"""

from __future__ import annotations

import json
from typing import Sequence

from oec.core.errors import FormatError
from oec.core.protocols import Message
from oec.core.shell_facts import edit_command, parse_edit
from oec.core.types import Action, Completion, Problem, Step, Task, ToolCall
from oec.formats.base import OecFormat, opening, windowed

SYSTEM = """You fix bugs in a Python repository at /workspace. Call exactly one tool per reply: `bash` runs a shell
command (`runtests [pytest args]` runs the tests and prints one line per failure), `edit` replaces one exact, unique
snippet of a file, `submit` ends the task. Say briefly why before each call."""


def _fn(name: str, description: str, props: dict) -> dict:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": props, "required": list(props), "additionalProperties": False}}}


TOOLS = [
    _fn("bash", "Run one shell command in /workspace and return its output.",
        {"command": {"type": "string", "description": "the command"}}),
    _fn("edit", "Replace one exact, unique snippet of a file.",
        {"path": {"type": "string"}, "old": {"type": "string", "description": "exact text to replace"},
         "new": {"type": "string", "description": "replacement text"}}),
    _fn("submit", "Finish the task with the workspace as it is.", {}),
]


def tool_call(action: Action, call_id: str) -> ToolCall:
    """The canonical action as a tool call (for steps another format produced)."""
    if action.kind == "submit":
        return ToolCall(id=call_id, name="submit", arguments="{}")
    edit = parse_edit(action.command)
    if edit:
        path, old, new = edit
        return ToolCall(id=call_id, name="edit", arguments=json.dumps({"path": path, "old": old, "new": new}))
    return ToolCall(id=call_id, name="bash", arguments=json.dumps({"command": action.command}))


class ToolCallFormat(OecFormat):
    name = "toolcalls"
    tools = TOOLS
    default_system = SYSTEM

    def render(self, task: Task | Problem, steps: Sequence[Step]) -> list[Message]:
        messages = opening(self.system, task)
        for step, observation in zip(steps, windowed(steps, self.config.window)):
            if step.action is None:  # a format error: show what was said and what was wrong with it
                messages.append({"role": "assistant", "content": step.output})
                messages.append({"role": "user", "content": observation})
                continue
            same = step.format == self.name and step.completion is not None and len(step.completion.tool_calls) == 1
            call = step.completion.tool_calls[0] if same else tool_call(step.action, f"call_{step.turn}")
            messages.append({"role": "assistant", "content": (step.output if same else step.thought) or None,
                             "tool_calls": [{"id": call.id, "type": "function",
                                             "function": {"name": call.name, "arguments": call.arguments}}]})
            messages.append({"role": "tool", "tool_call_id": call.id, "content": observation})
        return messages

    def parse(self, completion: Completion) -> tuple[str, Action]:
        calls = completion.tool_calls
        if len(calls) != 1:
            raise FormatError(f"Format error: {len(calls)} tool calls. Call exactly one tool per reply "
                              "(bash, edit or submit).")
        call = calls[0]
        try:
            args = json.loads(call.arguments or "{}")
        except json.JSONDecodeError as e:
            raise FormatError(f"Format error: the arguments of `{call.name}` are not valid JSON ({e.msg}).") from None
        thought = completion.text.strip()
        try:
            if call.name == "submit":
                return thought, Action(kind="submit")
            if call.name == "bash":
                return thought, Action(kind="bash", command=str(args["command"]).strip())
            if call.name == "edit":
                return thought, Action(kind="bash", command=edit_command(args["path"], args["old"], args["new"]))
        except (KeyError, TypeError) as e:
            raise FormatError(f"Format error: `{call.name}` is missing its argument {e}.") from None
        raise FormatError(f"Format error: unknown tool `{call.name}`; the tools are bash, edit and submit.")
