"""Facts about shell commands shared by policies, the filter and the failure categories."""

from __future__ import annotations

import re
import shlex
from collections import Counter
from typing import Sequence

from oec.core.types import Trajectory

TEST_COMMAND = re.compile(r"\b(runtests|pytest|unittest|tox|nox)\b|\bmake\s+test")
# commands that change a file: the toy tools' `edit`, and the usual shell ways
EDIT_COMMAND = re.compile(r"^\s*(edit|patch|apply_patch)\s|\bsed\s+-i|\bgit\s+apply\b|>\s*[\w./-]+\.\w+|\btee\s")

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


def commands(traj: Trajectory) -> list[str]:
    """The shell commands of TRAJ's steps, in order (`submit` actions and unparsable replies left out)."""
    return [s.action.command for s in traj.steps if s.action and s.action.kind == "bash"]


def longest_run(flags: Sequence[bool]) -> int:
    best = run = 0
    for f in flags:
        run = run + 1 if f else 0
        best = max(best, run)
    return best


def repetition(cmds: Sequence[str]) -> tuple[int, str, int]:
    """(the longest run of one command in a row, the most frequent command, its count). Test runs count in a row but
    not in all: running the tests after each edit is what an agent should do."""
    row = max((longest_run([c == x for c in cmds]) for x in set(cmds)), default=0)
    cmd, total = (Counter(c for c in cmds if not TEST_COMMAND.search(c)).most_common(1) or [("", 0)])[0]
    return row, cmd, total


def written_paths(command: str) -> list[str]:
    """Paths COMMAND writes: `edit PATH`, `sed -i ... PATH`, `> PATH` / `>> PATH`, `tee PATH` (a heredoc's body,
    the text written, is not read)."""
    head = command.split("<<", 1)[0]
    out = re.findall(r">>?\s*([^\s;&|<>]+)", head)
    try:
        words = shlex.split(head)
    except ValueError:
        return out
    if words[:1] == ["edit"] and len(words) > 1:
        out.append(words[1])
    if words[:1] == ["sed"] and any(w.startswith("-i") for w in words):
        out.append(words[-1])
    if words[:1] == ["tee"]:
        out += [w for w in words[1:] if not w.startswith("-")]
    return [p.removeprefix("./") for p in out if p not in ("/dev/null", "&1", "&2")]


EDIT = re.compile(r"\Aedit (\S+) <<'EOF'\n(.*?)\n=======\n(.*?)\nEOF\Z", re.DOTALL)


def edit_command(path: str, old: str, new: str) -> str:
    """The canonical shell form of an edit (what the `edit` tool in the sandbox runs)."""
    return f"edit {path} <<'EOF'\n{old}\n=======\n{new}\nEOF"


def parse_edit(command: str) -> tuple[str, str, str] | None:
    """(path, old, new) if COMMAND is a canonical edit, so tool-call formats can show it as an `edit` call."""
    m = EDIT.match(command)
    return (m.group(1), m.group(2), m.group(3)) if m else None
