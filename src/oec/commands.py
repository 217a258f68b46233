"""Facts about shell commands shared by policies and filters."""

from __future__ import annotations

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
