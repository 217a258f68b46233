"""The scripted expert's equivalent routes through a task, one drawn per episode.

With one fixed script, every BC demonstration of a task is the same command sequence, and a student learns that
script rather than the task. A route fixes the choices a human would make differently from one day to the next, each
as good as the other: run the tests first or look for the function first, which grep finds it, how a file is read,
whether the failing test is read too, how the fix is written (the `edit` tool, `sed -i`, or the whole file), and
whether the diff is looked at before the last test run. The recovery logic does not vary: from any state the expert
still reverts what it did not expect and goes on along its route.

A route is drawn from the episode's expert stream without consuming it (a copy of its state), so every turn of an
episode, and every DAgger label in it, follows the same route, and an episode with the same task and seed takes the
same one. The expert never draws from that stream otherwise; if it ever does, draw the route before it.
"""

from __future__ import annotations

import random
import re
import shlex
from dataclasses import dataclass
from typing import Sequence

from oec.core.shell_facts import is_read_only
from oec.core.types import Task
from oec.rollout.policies.edits import rewrite_command

LOCATES = ("grep -rn 'def {fn}(' {pkg}", "grep -rn 'def {fn}(' .", "grep -n 'def {fn}(' {pkg}/*.py")
READS = ("cat {path}", "head -n 100 {path}", "cat -n {path}")  # whole files: toy modules are a few dozen lines
READ_WORDS = {"cat", "head", "nl", "less", "tail"}  # commands that show a file (sed -n too, checked apart)
EDIT_STYLES = ("edit", "sed", "rewrite")


@dataclass(frozen=True)
class Route:
    tests_first: bool = True  # run the tests before looking for the function (else right after the first read)
    locate: str = LOCATES[0]  # how a function's definition is found
    read: str = READS[0]  # how a module is read ("": not at all, the locating grep shows the function's body)
    read_test: bool = False  # also read the failing test of the function the issue names, before its source
    edit: str = "edit"  # edit | sed (single-line fixes; else edit) | rewrite (the whole fixed file)
    review: bool = False  # look at `git diff` once the fix is in, before the last test run
    plain: bool = False  # a plain shell only (the miniswe format): pytest for `runtests`, sed or a rewrite for `edit`


FIXED = Route()  # the expert's one script before routes existed (and with `routes=fixed`, still)
# `routes=local`: each function found by a grep that shows its body, no module read, so every name the student must
# copy (the callee of the function the issue names) is a line below where it was found, not somewhere in a whole
# module: students trained on FIXED on one-hop tasks never copied a callee out of a `cat` (bench/RESULTS.md §16)
LOCAL = Route(locate="grep -rn -A6 'def {fn}(' {pkg}", read="")


def draw_route(stream: random.Random) -> Route:
    """The route of an episode whose expert stream is STREAM (not consumed: a copy of its state is drawn from)."""
    rng = random.Random()
    rng.setstate(stream.getstate())
    rng = random.Random(rng.getrandbits(64))  # decorrelated from any later use of the stream itself
    return Route(tests_first=rng.random() < 0.5, locate=rng.choice(LOCATES),
                 read=rng.choices(READS, (0.45, 0.35, 0.2))[0], read_test=rng.random() < 0.4,
                 edit=rng.choices(EDIT_STYLES, (0.5, 0.3, 0.2))[0], review=rng.random() < 0.3)


@dataclass(frozen=True)
class Need:
    """What an explore command is for, so that an equivalent command already run (by the student, or on another
    route) counts: ("tests", the task's test command or "" for runtests), ("locate", function, its path),
    ("read", path); ("exact", command, "fresh" or "")
    for the other tasks' steps (the same command, run since the workspace last changed when `where` says so)."""

    kind: str
    target: str = ""
    where: str = ""


def chain_probes(chain: list[str], pkg: str, home: dict[str, str], tests: dict[str, str], route: Route, run: str
                 ) -> list[tuple[str, str, Need]]:
    """(thought, command, need) that follow the issue's call chain to the bug along ROUTE. HOME: function -> the
    module defining it; TESTS: function -> the test file that calls it; RUN: the command that runs the tests."""
    out = [("Let me run the tests to see what fails.", run, Need("tests", run))] if route.tests_first else []
    seen = set()
    for i, fn in enumerate(chain):
        why = "The issue is about" if i == 0 else "It calls"
        out.append((f"{why} `{fn}`; let me find where it is defined.", route.locate.format(fn=fn, pkg=pkg),
                    Need("locate", fn, home[fn])))
        if i == 0 and route.read_test and tests.get(fn):
            out.append((f"Let me read the test of `{fn}` first.", route.read.format(path=tests[fn]),
                        Need("read", tests[fn])))
        if route.read and home[fn] not in seen:
            seen.add(home[fn])
            out.append((f"Let me read {home[fn]}.", route.read.format(path=home[fn]), Need("read", home[fn])))
        if i == 0 and not route.tests_first:
            out.append(("Let me run the tests to see what else fails.", run, Need("tests", run)))
    return out


PLAIN_TESTS = "python -m pytest -q"  # `runtests` where the scaffold offers a plain shell only


def tests_command(task: Task, route: Route) -> str:
    """How the expert runs the tests: the task's own command (an imported SWE-bench instance), else `runtests` (plain
    pytest in a plain shell)."""
    return task.test_command.command if task.test_command else PLAIN_TESTS if route.plain else "runtests"


def satisfied(need: Need, steps: Sequence, fresh_from: int) -> bool:
    """Whether a command already run meets NEED: the tests ran; a grep found the function's definition in its file;
    its file was shown whole since the workspace last changed (step index FRESH_FROM on)."""
    for i, step in enumerate(steps):
        command = step.action.command if step.action and step.action.kind == "bash" else ""
        if need.kind == "tests" and command == need.target:  # it fails, by design, until the fix
            return True
        if need.kind == "exact" and command == need.target and (i >= fresh_from or not need.where):
            return True
        if not command or step.returncode not in (0, None):
            continue
        if need.kind == "locate" and command.startswith("grep") and f"def {need.target}(" in command \
                and need.where in step.observation:
            return True
        if need.kind == "read" and i >= fresh_from and shows_file(command, need.target):
            return True
    return False


def shows_file(command: str, path: str) -> bool:
    """A plain read of all of PATH (cat, head, nl...), not one piped through something that cuts it."""
    if any(c in command for c in "|;&>") or not is_read_only(command):
        return False
    try:
        words = shlex.split(command)
    except ValueError:
        return False
    return words[0] in READ_WORDS and words[-1] in (path, f"./{path}")


SED_SPECIAL = re.compile(r"([\\/.*\[\]^$])")


def edit_command_for(edit, now: str, route: Route) -> str:
    """EDIT (oec.rollout.policies.scripted.Edit) in ROUTE's style, NOW being the file's current text. What a style
    cannot write falls back to the `edit` tool, or in a plain shell to writing the whole file."""
    if edit.kind != "edit" or route.edit == "edit":
        return edit.command()
    fixed = now.replace(edit.old, edit.new, 1)
    fallback = rewrite_command(edit.path, fixed) if route.plain else edit.command()
    if route.edit == "sed":
        if "\n" in edit.old or "\n" in edit.new or "'" in edit.old + edit.new or not edit.old.strip():
            return fallback  # a multi-line or quoted fix: sed's escaping would be the hard part
        old, new = SED_SPECIAL.sub(r"\\\1", edit.old), re.sub(r"([\\/&])", r"\\\1", edit.new)
        return f"sed -i 's/{old}/{new}/' {edit.path}"
    if "\nEOF\n" in fixed or not fixed.endswith("\n"):
        return fallback
    return f"cat > {edit.path} <<'EOF'\n{fixed}EOF"
