"""Facts about shell commands shared by policies and filters."""

from __future__ import annotations

import re
import shlex

READ_ONLY = {"cat", "grep", "rg", "ls", "head", "tail", "find", "wc", "pwd", "echo", "nl", "tree", "runtests", "less"}
READ_ONLY_GIT = {"diff", "status", "log", "show", "grep", "blame"}


def is_read_only(command: str) -> bool:
    """True for commands that only look at the workspace (cat, grep, sed -n, git diff, runtests...)."""
    for part in command.replace("&&", ";").replace("||", ";").replace("|", ";").split(";"):
        try:
            words = shlex.split(part.strip())
        except ValueError:
            return False
        if not words:
            continue
        head = words[0]
        if head in READ_ONLY and ">" not in part:
            continue
        if head == "sed" and "-i" not in words and any(w.startswith("-n") for w in words):
            continue
        if head == "git" and len(words) > 1 and words[1] in READ_ONLY_GIT:
            continue
        return False
    return True


EDIT = re.compile(r"\Aedit (\S+) <<'EOF'\n(.*?)\n=======\n(.*?)\nEOF\Z", re.DOTALL)


def edit_command(path: str, old: str, new: str) -> str:
    """The canonical shell form of an edit (what the `edit` tool in the sandbox runs)."""
    return f"edit {path} <<'EOF'\n{old}\n=======\n{new}\nEOF"


def parse_edit(command: str) -> tuple[str, str, str] | None:
    """(path, old, new) if COMMAND is a canonical edit, so tool-call formats can show it as an `edit` call."""
    m = EDIT.match(command)
    return (m.group(1), m.group(2), m.group(3)) if m else None
