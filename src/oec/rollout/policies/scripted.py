"""Scripted policies: an expert that solves a task from any reachable state, and a noisy student.

The expert is privileged (it knows the gold patch and reads the workspace) but acts only through ordinary commands a
student can imitate: run the tests, follow the call chain with grep and cat, edit, re-run the tests, submit. When it
finds edits it did not make, it inspects them with `git diff` and reverts them: that recovery is what OEC and DAgger
data teach a student, so the expert must act well in states it would never reach by itself.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from oec.core.protocols import Episode, Format, Message
from oec.core.shell_facts import is_read_only
from oec.core.types import Action, Completion, Task
from oec.env.repos import patch_paths, template
from oec.formats import TextFormat, tool_call
from oec.rollout.policies.edits import Edit, edits_from_patch, rewrite_command
from oec.rollout.policies.routes import (
    FIXED,
    LOCAL,
    Need,
    Route,
    chain_probes,
    draw_route,
    edit_command_for,
    satisfied,
    tests_command,
)


def base_texts(task: Task) -> dict[str, str | None]:
    """Base versions of the files the expert watches: every file of an inline repo; for a git repo the files the
    gold patch touches, plus its Python sources when there are few (a wrong edit elsewhere is then seen too)."""
    if task.repo.kind == "inline":
        return dict(task.repo.files)
    base = template(task)
    watched = set(patch_paths(task.gold_patch or ""))
    sources = [p for p in base.files if p.endswith(".py") and p not in base.restore]
    if len(sources) <= MAX_WATCHED:
        watched |= set(sources)
    return {p: base.read(p) for p in sorted(watched)}


MAX_WATCHED = 300  # files read per expert turn at most (a big repo's other files are not watched)


@dataclass(frozen=True)
class Plan:
    """The expert's route through one task: explore commands, then the fix."""

    explore: tuple[tuple[str, str], ...]  # (thought, command)
    needs: tuple[Need, ...]  # what each explore command is for (an equivalent one already run counts)
    edits: tuple[Edit, ...]
    stages: dict  # path -> [base content, after the 1st edit of it, ..., fixed content]
    focus: str  # the function with the bug, for thoughts


@lru_cache(maxsize=4096)
def _plan(task_json: str, route: Route) -> Plan:
    return make_plan(Task.model_validate_json(task_json), route)


def make_plan(task: Task, route: Route = FIXED) -> Plan:
    if not task.gold_patch:
        raise ValueError(f"task {task.task_id}: the scripted expert needs a gold_patch")
    base = base_texts(task)
    edits = edits_from_patch(base, task.gold_patch)
    stages = {p: [c] for p, c in base.items()}
    for e in edits:
        before = stages.setdefault(e.path, [base.get(e.path)])[-1]
        stages[e.path].append(e.new if e.kind == "create" else None if e.kind == "delete" else
                              before.replace(e.old, e.new, 1))
    chain = task.meta.get("chain") or []
    pkg = task.meta.get("package", ".")
    home = {fn: next(p for p, c in base.items() if c and re.search(rf"^def {fn}\(", c, re.M)
                     and not p.startswith("tests/")) for fn in chain}
    tests = {fn: next((p for p, c in base.items() if c and p.startswith("tests/") and f"def test_{fn}(" in c), "")
             for fn in chain[:1]}
    run = tests_command(task, route)
    probes = chain_probes(chain, pkg, home, tests, route, run) if chain else []
    if not any(need.kind == "tests" for _, _, need in probes):  # no call chain: the failing tests come first
        probes.insert(0, ("Let me run the tests to see what fails.", run, Need("tests", run)))
    seen_files = set(home.values())
    if task.meta.get("function"):  # mutated tasks: the function with the bug
        name = task.meta["function"].rsplit(".", 1)[-1]
        command = f"grep -rn 'def {name}(' ."
        probes.append((f"The failing tests exercise `{name}`; let me find it.", command, Need("exact", command)))
    explore = [(thought, command) for thought, command, _ in probes]
    needs = [need for _, _, need in probes]
    for e in edits:  # tasks without a call chain (imported ones): read the files the fix touches
        text = base.get(e.path)
        if e.path in seen_files or e.kind != "edit" or text is None:
            continue
        seen_files.add(e.path)
        lines = text.count("\n")
        if lines <= LONG_FILE:
            explore.append((f"Let me read {e.path}.", f"cat {e.path}"))
            needs.append(Need("exact", f"cat {e.path}", "fresh"))
        else:  # a long file: read the lines around the change, as `cat` output would be cut
            at = text[: text.index(e.old)].count("\n") + 1
            explore.append((f"Let me read the relevant part of {e.path}.",
                            f"sed -n '{max(1, at - 15)},{at + e.old.count(chr(10)) + 15}p' {e.path}"))
            needs.append(Need("exact", explore[-1][1]))
    focus = chain[-1] if chain else task.meta.get("function") or edits[0].path
    return Plan(tuple(explore), tuple(needs), tuple(edits), stages, focus)


LONG_FILE = 60  # lines; longer files are read in part


def read_workspace(ws: Path, rel: str, limit: int = 1 << 20) -> str | None:
    """A workspace file as the agent could read it, or None. Never follows a symlink or opens a FIFO or device:
    the workspace is agent-controlled and this runs on the host."""
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts:
        return None
    # Walk one component at a time from a directory fd, refusing symlinks at every step: resolving the path first
    # and opening it after would let a process in the sandbox swap a directory for a symlink to the host in between.
    try:
        fd = os.open(ws, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            flags = os.O_RDONLY | os.O_NOFOLLOW | (os.O_NONBLOCK if last else os.O_DIRECTORY)
            nxt = os.open(part, flags, dir_fd=fd)
            os.close(fd)
            fd = nxt
    except OSError:
        os.close(fd)
        return None
    try:
        st = os.fstat(fd)
        readable = st.st_mode & stat.S_IRUSR and st.st_mode & stat.S_IWUSR  # root reads anything; the agent not
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit or not readable:
            return None
        return os.read(fd, limit + 1).decode()
    except (OSError, UnicodeDecodeError):
        return None
    finally:
        os.close(fd)


CD = re.compile(r"(?:^|[;&|(]\s*)(?P<cd>cd)(?:[ \t]+(?P<to>[^\s;&|)]+))?(?=\s|[;&|)]|$)")
HOME = ("/workspace", "/workspace/", ".")  # where a `cd` leaves the shell in the workspace root
RESTARTED = "a fresh shell was started"


NOT_FOUND = re.compile(r"^[\w./-]+: (?:cannot access ')?([^:'\n]+)'?: No such file", re.M)


def missed(episode: Episode) -> bool:
    """Whether the last command failed to find a path that does exist in the workspace."""
    last = episode.steps[-1] if episode.steps else None
    if last is None or last.returncode in (0, None):
        return False
    paths = NOT_FOUND.findall(last.observation)
    return any(not os.path.isabs(p) and ".." not in p and os.path.lexists(episode.workspace / p) for p in paths)


def moved_to(command: str) -> str | None:
    """Where COMMAND's last `cd` leaves the shell (`~` for a bare `cd`), or None when it runs none that lasts: a `cd`
    inside `( )` changes only a subshell's directory."""
    target = None
    for m in CD.finditer(command):
        before = command[: m.start("cd")]
        if before.count("(") <= before.count(")"):
            target = m.group("to") or "~"
    return target


def elsewhere(steps) -> bool:
    """Whether the shell's working directory may not be the workspace: the last lasting `cd` after the last shell
    restart (a restarted shell starts in /workspace) went somewhere else than the workspace root."""
    for step in reversed(steps):
        command = step.action.command if step.action and step.action.kind == "bash" else ""
        target = moved_to(command)
        if target is not None:
            return target not in HOME
        if RESTARTED in step.observation:
            return False
    return False


def workspace_state(ws: Path, task: Task, plan: Plan) -> tuple[str, list[str]]:
    """('clean' | 'fixed' | 'wrong', files that are neither base, fixed, nor on the way between them)."""
    wrong, done = [], True
    for path, stages in plan.stages.items():
        now = read_workspace(ws, path)
        if now not in stages:
            wrong.append(path)
        elif now != stages[-1]:
            done = False
    return ("wrong" if wrong else "fixed" if done else "clean"), wrong


def reply(fmt: Format, thought: str, command: str, turn: int) -> Completion:
    """A scripted decision written the way FMT expects a model to write it (text, or a native tool call)."""
    action = Action(kind="submit") if command == "submit" else Action(kind="bash", command=command)
    if fmt.tools:
        return Completion(text=thought, tool_calls=[tool_call(action, f"call_{turn}")])
    return Completion(text=fmt.write(thought, action))


class ExpertConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    latency: float = Field(0.0, ge=0, description="seconds to sleep per call (benchmarks: simulate an API)")
    chars_per_token: float = Field(4.0, gt=0, description="for the token counts an API expert would be billed")
    routes: Literal["fixed", "seeded", "local"] = Field(
        "fixed", description="seeded: one of several equivalent routes per episode (oec.rollout.policies.routes), so "
        "BC data is not one script; local: functions found by a grep that shows their bodies, no module read")


def estimated_tokens(text: str, chars_per_token: float) -> int:
    return -int(-len(text) // chars_per_token)  # rounded up: a non-empty text is at least one token


class ScriptedExpert:
    def __init__(self, spec: str = "scripted:expert", config: ExpertConfig | None = None, format: Format | None = None):
        self.spec, self.config, self.format = spec, config or ExpertConfig(), format or TextFormat()

    def close(self) -> None:
        pass

    def act(self, messages: list[Message], episode: Episode) -> Completion:
        t0 = time.monotonic()
        if self.config.latency:
            time.sleep(self.config.latency)
        completion = reply(self.format, *self.decide(episode), len(episode.steps))
        # What an API expert would be billed, estimated from characters (~4 per token for GPT-style BPE on English
        # and code): without it the expert's effort, the quantity OEC saves, would read 0 in every budget and plot.
        shown = "".join(str(m.get("content") or "") + (json.dumps(m["tool_calls"]) if m.get("tool_calls") else "")
                        for m in messages)
        said = completion.text + "".join(c.arguments for c in completion.tool_calls)
        cpt = self.config.chars_per_token
        return completion.model_copy(update={"latency_s": time.monotonic() - t0,
                                             "prompt_tokens": estimated_tokens(shown, cpt),
                                             "completion_tokens": estimated_tokens(said, cpt)})

    def route(self, episode: Episode) -> Route:
        route = draw_route(episode.rng) if self.config.routes == "seeded" else LOCAL if self.config.routes == "local" \
            else FIXED
        if self.format.plain:  # no `edit` tool: sed where it can, else the whole file
            route = replace(route, plain=True, edit="sed" if route.edit == "edit" else route.edit)
        return route

    def decide(self, episode: Episode) -> tuple[str, str]:
        task = episode.task
        route = self.route(episode)
        plan = _plan(task.model_dump_json(), route)
        state, wrong = workspace_state(episode.workspace, task, plan)
        done = [s.action.command if s.action.kind == "bash" else "submit" for s in episode.steps if s.action]
        # the scaffold's way to submit the fix (`submit`; in mini-swe-agent, write patch.txt, then print the word)
        submission = self.format.submission(sorted(p for p, s in plan.stages.items() if s[-1] != s[0]))
        run = tests_command(task, route)
        # commands since the workspace last changed: a view older than that may show stale code (running the tests
        # and writing the patch file change no code)
        unchanging = {run, *submission}
        last_change = max((i for i, c in enumerate(done) if not is_read_only(c) and c not in unchanging), default=-1)
        fresh = done[last_change + 1 :]
        # every command below is relative to the workspace: go back there after a `cd` elsewhere, or when a path
        # that exists in the workspace was not found (a `cd` we did not see). A wrong path is no reason to `cd`:
        # that wasted turn once made up most of OEC's "corrections".
        if elsewhere(episode.steps) or (done[-1:] != ["cd /workspace"] and missed(episode)):
            return "Let me go back to the repository root.", "cd /workspace"
        if state == "wrong":
            if done and done[-1].startswith("git checkout -- "):  # git did not bring them back: write them out
                path = wrong[0]
                base = plan.stages[path][0]
                if base is None:  # the file is not in the base: it goes
                    return f"{path} should not exist; let me remove it.", f"rm -rf {path}"
                return f"git could not restore {path}; let me write it back as it was.", rewrite_command(path, base)
            if not fresh or fresh[-1] != "git diff":
                return "There are changes I did not expect; let me look at them.", "git diff"
            return "These changes are wrong; let me revert them.", "git checkout -- " + " ".join(sorted(wrong))
        if state == "fixed":
            if route.review and "git diff" not in fresh and run not in fresh:
                return "Let me look at the change before testing it.", "git diff"
            if run not in fresh:
                return "Let me check that the tests pass now.", run
            # say what the run showed, never more: its text becomes training data
            last = next(s for s in reversed(episode.steps) if s.action and s.action.command == run)
            step = next((i for i in range(len(submission) - 1, 0, -1) if done[-i:] == submission[:i]), 0)
            if step:  # on the way to submitting (the patch file is written)
                return "The patch holds the fix; I submit it.", submission[step]
            if last.returncode != 0:
                why = "did not finish" if last.returncode is None else "still reports failures"
                return f"The test run {why}, but the change is the fix the failing test asks for; I submit it.", \
                    submission[0]
            return "The tests pass; the fix is done." + (" Let me write the patch." if len(submission) > 1 else ""), \
                submission[0]
        acted = [s for s in episode.steps if s.action]  # indexed like `done`
        for (thought, command), need in zip(plan.explore, plan.needs):
            if not satisfied(need, acted, last_change + 1):
                return thought, command
        current = {e.path: read_workspace(episode.workspace, e.path) for e in plan.edits}
        for e in plan.edits:
            if e.applies(current[e.path]):
                return f"The bug is in `{plan.focus}`; let me fix it.", edit_command_for(e, current[e.path], route)
        return "I cannot find the code to fix; let me look at the changes.", "git diff"
