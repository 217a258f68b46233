"""Canonical, format-free records: Task, Action, Step, Verdict, Trajectory.

Everything a stage writes to disk is one of these, serialised as one JSON object per line. They are pydantic models
with ``extra="forbid"`` so that a typo in a hand-written tasks file is an error that names the field, not a silently
ignored key.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

SCHEMA_VERSION = 1

Actor = Literal["student", "expert"]
ExitStatus = Literal["submitted", "step_limit", "format_errors", "error", "cancelled"]


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InlineRepo(Record):
    """A workspace whose files are in the task itself (the toy suite: small generated packages)."""

    kind: Literal["inline"] = "inline"
    files: dict[str, str] = Field(description="path -> content of every file at the base commit (bug present)")


class GitRepo(Record):
    """A workspace taken from a local git repository at a commit (imported and mutated tasks: too big to inline).

    The workspace is a fresh one-commit repo holding the tree of `base_commit` (with `bug_patch` applied), so the
    agent sees no history and no later commit that might contain the fix.
    """

    kind: Literal["git"]
    path: str = Field(description="absolute path of the local repository (a clone, or the repo "
                                  "`oec tasks mutate` wrote)")
    base_commit: str = Field(min_length=4, description="commit (or ref) whose tree the agent starts from")
    bug_patch: str = Field("", description="diff applied on top of base_commit when the workspace is built "
                                           "(SWE-smith instances whose bug is not committed in the local clone)")
    test_patch: str = Field("", description="diff applied to the test files at verification only; never shown "
                                            "to the agent (SWE-bench's test_patch)")


def _repo_kind(value: Any) -> str:
    # Task files written before there was a second kind have no `kind` (or kind "inline"): they stay inline.
    if isinstance(value, dict):
        return value.get("kind", "inline")
    return getattr(value, "kind", "inline")


Repo = Annotated[Union[Annotated[InlineRepo, Tag("inline")], Annotated[GitRepo, Tag("git")]],
                 Discriminator(_repo_kind, custom_error_type="repo_kind",
                               custom_error_message="repo.kind must be 'inline' or 'git'")]


class TestCommand(Record):
    """Tests that a repository's own command runs and a maintained harness grades, where pytest node ids do not
    apply (django's tests/runtests.py, sympy's bin/test) or the harness's own rules must decide: the official
    SWE-bench definition of the instance, or its SWE-smith repository profile."""

    __test__ = False  # keep pytest from collecting this class
    harness: Literal["swebench", "swesmith"] = Field("swebench", description="whose log parser and grading rules "
                                                                             "decide")
    command: str = Field(min_length=1, description="shell command run in the workspace root: the repo's test command "
                                                   "and its test directives")
    timeout: float | None = Field(None, gt=0, description="seconds for the run (None: env.verify_timeout)")
    instance: dict[str, Any] = Field(description="the instance fields the harness grades with: instance_id, repo, "
                                                 "version, FAIL_TO_PASS, PASS_TO_PASS")


class Task(Record):
    schema_version: int = SCHEMA_VERSION
    task_id: str
    suite: str = "toy"
    split: str
    problem_statement: str
    repo: Repo
    FAIL_TO_PASS: list[str] = Field(min_length=1, description="pytest node ids that must go from failing to passing")
    PASS_TO_PASS: list[str] = Field(default_factory=list, description="pytest node ids that must keep passing")
    test_files: list[str] = Field(
        default_factory=list, description="files restored to their base version before verification"
    )
    gold_patch: str | None = Field(None, description="unified diff (a/ b/ prefixes) that fixes the bug")
    test_command: TestCommand | None = Field(None, description="how the tests run when not as pytest node ids "
                                                               "(an imported SWE-bench instance)")
    meta: dict[str, Any] = Field(default_factory=dict, description="generator facts: mutation kind, hops, ...")

    @model_validator(mode="after")
    def _test_files_exist(self) -> Task:
        if self.repo.kind != "inline":  # a git repo's files are checked when its workspace is built
            return self
        missing = [p for p in self.test_files if p not in self.repo.files]
        if missing:
            raise ValueError(f"test_files {missing} are not in repo.files; list only files the repo has")
        return self


class Action(Record):
    """What an agent asked for: a shell command, or to submit the workspace as it is."""

    kind: Literal["bash", "submit"]
    command: str = ""


class ToolCall(Record):
    """A native function call (tool-call formats): as the API returned it, so re-rendering is prefix-consistent."""

    id: str
    name: str
    arguments: str = Field(description="JSON text of the arguments")


class Completion(Record):
    """One policy call: the raw text (and native tool calls, if any) plus what it cost."""

    text: str
    tool_calls: list[ToolCall] = Field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latency_s: float = 0.0
    retries: int = Field(0, description="transient failures retried before this answer")
    finish_reason: str | None = Field(None, description="why generation stopped (stop, length), where known")


class Label(Record):
    """DAgger: what the teacher would have done at a state where the student acted (recorded, not executed)."""

    actor: Actor = "expert"
    output: str
    action: Action | None = None
    completion: Completion | None = None


class Step(Record):
    turn: int
    actor: Actor
    output: str = Field(description="the raw text the policy produced")
    format: str = Field("text", description="the Format that parsed `output` (other formats re-render the step)")
    thought: str = Field("", description="the reasoning part of the output, without the action")
    action: Action | None = Field(description="the parsed action; None when the output could not be parsed")
    observation: str
    format_error: bool = False
    returncode: int | None = None
    completion: Completion | None = None
    env_latency_s: float = 0.0
    label: Label | None = None
    info: dict[str, Any] = Field(default_factory=dict, description="schedule facts at this turn, e.g. trigger score")


class TestResult(Record):
    __test__ = False  # keep pytest from collecting this class
    outcome: Literal["passed", "failed", "error", "missing"]
    message: str = ""


class Verdict(Record):
    resolved: bool
    tests: dict[str, TestResult]
    patch: str = Field("", description="the agent's change that was verified, as a diff against the base (a/ b/)")
    dropped: dict[str, str] = Field(default_factory=dict, description="paths the agent changed that verification "
                                    "left out of the patch (tests, pytest configuration, bytecode...) -> why")
    dropped_more: int = Field(0, description="dropped paths beyond those listed in `dropped` (counted, not named)")
    duration_s: float = 0.0
    error: str | None = None


class Trajectory(Record):
    schema_version: int = SCHEMA_VERSION
    task_id: str
    sample: int
    mode: str
    policies: dict[str, str] = Field(description="actor -> policy spec")
    switch_turn: int | None = None
    switch_info: dict[str, Any] = Field(default_factory=dict)
    steps: list[Step]
    exit_status: ExitStatus
    exit_message: str = ""
    verdict: Verdict | None = None
    filters: dict[str, Any] = Field(default_factory=dict, description="filter name -> result, filled by later stages")
    seed: int
    timings: dict[str, float] = Field(default_factory=dict)

    @property
    def key(self) -> tuple[str, int]:
        return (self.task_id, self.sample)

    @property
    def resolved(self) -> bool:
        return bool(self.verdict and self.verdict.resolved)

    def canonical(self) -> dict:
        """Everything but wall-clock measurements: equal for two runs with the same seed and deterministic policies."""
        data = self.model_dump(mode="json", exclude={"timings"})
        for step in data["steps"]:
            step.pop("env_latency_s")
            for c in (step["completion"], (step["label"] or {}).get("completion")):
                if c:
                    c.pop("latency_s")
        if data["verdict"]:
            data["verdict"].pop("duration_s")
        return data


class Problem(Record):
    """What an imported demonstration was about. It comes without a repo, so it is no Task, but it is enough to
    render the conversation (a Format needs only the problem statement)."""

    task_id: str
    problem_statement: str
