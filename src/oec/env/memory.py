"""An in-memory environment: the rollout loop's fast test seam (as mini-swe-agent pairs scripted models with a local
environment), so the loop's exits and the schedules are tested in milliseconds, without bubblewrap or pytest.

The workspace is a dict of files (an inline task's, or given). A few commands are interpreted over it: `cat`, `ls`,
`grep -rn PATTERN [PATH]`, `echo` and the agent's `edit FILE` (one unique snippet replaced, as the sandbox's tool
does). Any other command answers from CANNED, or with exit 127. Verification is a function of the final files.
The files are mirrored to a temporary directory, which is `workspace`, so privileged scripted policies can read them.

It runs nothing the agent writes and isolates nothing: it is for tests and dry runs, never a sandbox. The real
environment is `SandboxEnv` (sandbox_env.py); the loop cannot tell the two apart.
"""

from __future__ import annotations

import re
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from oec.core.protocols import CommandResult
from oec.core.types import Task, Verdict

HEREDOC = re.compile(r"^(?P<head>[^\n]*?)<<\s*'?(?P<tag>\w+)'?\n(?P<body>.*?)\n?(?P=tag)\s*$", re.S)
SEPARATOR = "======="


def unresolved(files: dict[str, str]) -> Verdict:
    return Verdict(resolved=False, tests={})


class MemoryEnv:
    """One episode's environment over a dict of files. FAIL_ON: commands whose execution raises RuntimeError (an
    environment that breaks mid-episode); VERDICT: the final files -> the verdict (it may raise, as a verifier can)."""

    def __init__(self, task: Task, files: dict[str, str] | None = None, canned: dict[str, CommandResult] | None = None,
                 verdict: Callable[[dict[str, str]], Verdict] = unresolved, fail_on: tuple[str, ...] = ()):
        self.task = task
        self.files = dict(files if files is not None else task.repo.files)
        self.canned, self.verdict, self.fail_on = canned or {}, verdict, fail_on
        self.commands: list[str] = []  # every command asked for, in order (tests assert on it)
        self.workspace = Path(tempfile.mkdtemp(prefix="oec-memory-"))
        for path in self.files:
            self._mirror(path)

    def execute(self, command: str) -> CommandResult:
        self.commands.append(command)
        if command in self.fail_on:
            raise RuntimeError(f"the environment broke on {command!r}")
        if command in self.canned:
            return self.canned[command]
        heredoc = HEREDOC.match(command)
        head, stdin = (heredoc["head"], heredoc["body"]) if heredoc else (command, "")
        try:
            argv = shlex.split(head)
        except ValueError as e:
            return CommandResult(f"bash: {e}\n", 2)
        name, args = (argv[0], argv[1:]) if argv else ("", [])
        run = {"cat": self._cat, "ls": self._ls, "grep": self._grep, "echo": lambda a, _: (" ".join(a) + "\n", 0),
               "edit": self._edit}.get(name)
        if run is None:
            return CommandResult(f"bash: {name}: command not found\n", 127)
        output, code = run(args, stdin)
        return CommandResult(output, code)

    def verify(self) -> Verdict:
        return self.verdict(dict(self.files))

    def close(self) -> None:
        shutil.rmtree(self.workspace, ignore_errors=True)

    def __enter__(self) -> MemoryEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- the interpreted commands -------------------------------------------------------------------------------
    def _cat(self, args: list[str], _: str) -> tuple[str, int]:
        missing = [a for a in args if a not in self.files]
        if missing:
            return f"cat: {missing[0]}: No such file or directory\n", 1
        return "".join(self.files[a] for a in args), 0

    def _ls(self, args: list[str], _: str) -> tuple[str, int]:
        where = (args[-1].rstrip("/") + "/") if args and args[-1] not in (".", "./") else ""
        names = sorted({p[len(where):].split("/")[0] for p in self.files if p.startswith(where)})
        if not names:
            return f"ls: cannot access '{args[-1]}': No such file or directory\n", 2
        return "\n".join(names) + "\n", 0

    def _grep(self, args: list[str], _: str) -> tuple[str, int]:
        words = [a for a in args if not a.startswith("-")]
        if not words:
            return "usage: grep -rn PATTERN [PATH]\n", 2
        # grep's default (basic) syntax takes ( ) { } | + ? literally; -E is Python's
        extended = any(a.startswith("-") and "E" in a for a in args)
        text = words[0] if extended else re.sub(r"([(){}|+?])", r"\\\1", words[0])
        pattern, where = re.compile(text), (words[1] if len(words) > 1 else ".").removeprefix("./").rstrip("/")
        hits = [f"{p}:{i}:{line}" for p in sorted(self.files) if where in (".", "") or p == where
                or p.startswith(where + "/") for i, line in enumerate(self.files[p].splitlines(), 1)
                if pattern.search(line)]
        return "".join(h + "\n" for h in hits), 0 if hits else 1

    def _edit(self, args: list[str], stdin: str) -> tuple[str, int]:
        lines = stdin.split("\n")
        if len(args) != 1 or lines.count(SEPARATOR) != 1:
            return f"edit: expected the old text, one line '{SEPARATOR}', then the new text\n", 1
        path, i = args[0], lines.index(SEPARATOR)
        old, new = "\n".join(lines[:i]), "\n".join(lines[i + 1:])
        if path not in self.files:
            return f"edit: no such file: {path}\n", 1
        count = self.files[path].count(old) if old.strip() else 0
        if count != 1:
            return f"edit: the old text occurs {count} times in {path}; give a snippet that occurs exactly once\n", 1
        self.files[path] = self.files[path].replace(old, new)
        self._mirror(path)
        return f"edited {path}\n", 0

    def _mirror(self, path: str) -> None:
        target = self.workspace / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(self.files[path])
