"""`oec filter`: mark each trajectory of a run kept or rejected, with reasons. Nothing is deleted.

The verifier gate keeps only resolved trajectories (switch it off to keep everything, e.g. for on-policy statistics);
the degeneracy filters reject what imitation should not copy even when the tests pass: the same command over and
over, long runs of reading without acting, format errors, an empty patch, running out of steps. Verdicts go to
RUN/filter.jsonl (one line per trajectory) and RUN/filter.json (the config and the counts); the trajectories file
itself is never rewritten.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path
from typing import Callable

from pydantic import BaseModel, ConfigDict, Field

from oec.core.atomic import atomic_output, write_text
from oec.core.errors import InputError
from oec.core.shell_facts import commands, is_read_only, longest_run, repetition
from oec.core.store import read_jsonl, read_trajectories
from oec.core.types import Trajectory

FILTER_LINES = "filter.jsonl"
FILTER_SUMMARY = "filter.json"


class FilterConfig(BaseModel):
    """Thresholds of the filters; `null` switches one off."""

    model_config = ConfigDict(extra="forbid")
    require_resolved: bool = Field(True, description="verifier gate: keep only trajectories whose tests pass")
    max_repeat_consecutive: int | None = Field(3, ge=1, description="the same command this many times in a row")
    max_repeat_total: int | None = Field(4, ge=1, description="the same command more than this many times in all")
    max_read_only_run: int | None = Field(8, ge=1, description="longest run of read-only commands (cat, grep, ...)")
    max_format_errors: int | None = Field(2, ge=0, description="format errors in the trajectory, at most")
    reject_empty_patch: bool = Field(True, description="reject when the final workspace has no change")
    reject_step_limit: bool = Field(True, description="reject episodes that ran out of steps")
    reject_errors: bool = Field(True, description="reject episodes that ended in an error")


def checks(cfg: FilterConfig) -> dict[str, Callable[[Trajectory], str | None]]:
    """name -> check returning the reason it rejects, or None."""
    out: dict[str, Callable[[Trajectory], str | None]] = {}
    if cfg.require_resolved:
        out["unresolved"] = lambda t: None if t.resolved else "the tests do not pass"
    if cfg.max_repeat_consecutive:
        def consecutive(t, n=cfg.max_repeat_consecutive):  # bound now: a closure would see the last `n`
            longest = repetition(commands(t))[0]
            return f"the same command {longest} times in a row (limit {n - 1})" if longest >= n else None

        out["repeat_consecutive"] = consecutive
    if cfg.max_repeat_total:
        def total(t, n=cfg.max_repeat_total):
            _, cmd, count = repetition(commands(t))
            return f"`{cmd[:40]}` {count} times (limit {n})" if count > n else None

        out["repeat_total"] = total
    if cfg.max_read_only_run:
        def reads(t, n=cfg.max_read_only_run):
            longest = longest_run([is_read_only(c) for c in commands(t)])
            return f"{longest} read-only commands in a row (limit {n})" if longest > n else None

        out["read_only_run"] = reads
    if cfg.max_format_errors is not None:
        def fmt(t, n=cfg.max_format_errors):
            errs = sum(s.format_error for s in t.steps)
            return f"{errs} format errors (limit {n})" if errs > n else None

        out["format_errors"] = fmt
    if cfg.reject_empty_patch:
        out["empty_patch"] = lambda t: "the final workspace has no change" \
            if not (t.verdict and t.verdict.patch.strip()) else None
    if cfg.reject_step_limit:
        out["step_limit"] = lambda t: "ran out of steps" if t.exit_status == "step_limit" else None
    if cfg.reject_errors:
        out["error"] = lambda t: f"ended in an error: {t.exit_message[:80]}" if t.exit_status == "error" else None
    return out


def filter_run(run: str | Path, cfg: FilterConfig | None = None) -> dict:
    """Judge every trajectory of RUN; write filter.jsonl and filter.json; return the summary."""
    cfg = cfg or FilterConfig()
    run = Path(run)
    trajs = read_trajectories(run)
    if not trajs:
        raise InputError(f"{run}: no trajectories to filter (is this a run directory written by `oec collect`?)")
    tests = checks(cfg)
    rejected_by, alone, kept = Counter(), Counter(), 0
    with atomic_output(run / FILTER_LINES) as tmp, tmp.open("w") as f:
        for t in trajs:
            reasons = {name: why for name, check in tests.items() if (why := check(t)) is not None}
            kept += not reasons
            rejected_by.update(list(reasons))
            if len(reasons) == 1:
                alone.update(list(reasons))
            f.write(json.dumps({"task_id": t.task_id, "sample": t.sample, "kept": not reasons,
                                "reasons": reasons}) + "\n")
    summary = {"run": str(run), "config": cfg.model_dump(), "n": len(trajs), "kept": kept,
               "rejected": len(trajs) - kept,
               "filters": {name: {"rejected": rejected_by[name], "alone": alone[name]} for name in tests}}
    write_text(run / FILTER_SUMMARY, json.dumps(summary, indent=2) + "\n")
    return summary


def kept_keys(run: str | Path) -> set[tuple[str, int]] | None:
    """(task_id, sample) of the trajectories `oec filter` kept, or None if the run was never filtered."""
    path = Path(run) / FILTER_LINES
    if not path.exists():
        return None
    return {(r["task_id"], r["sample"]) for r in read_verdicts(path) if r["kept"]}


def read_verdicts(path: Path) -> list[dict]:
    """The lines of a filter.jsonl (`oec filter` rewrites it whole, so a bad line is a hand edit: skipped)."""
    out = []
    for lineno, r in read_jsonl(path, "filter verdict"):
        if isinstance(r, dict) and isinstance(r.get("task_id"), str) and isinstance(r.get("sample"), int) \
                and isinstance(r.get("kept"), bool):
            out.append(r)
        else:
            warnings.warn(f"{path} line {lineno}: ignored, not a filter verdict (task_id, sample, kept)", stacklevel=2)
    return out


def render(summary: dict) -> str:
    lines = [f"{summary['run']}: kept {summary['kept']} of {summary['n']}, rejected {summary['rejected']}",
             f"  {'filter':<20}{'rejected':>10}{'alone':>8}"]
    lines += [f"  {name:<20}{c['rejected']:>10}{c['alone']:>8}" for name, c in summary["filters"].items()]
    return "\n".join(lines)
