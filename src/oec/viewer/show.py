"""`oec show`: what a run directory holds: counts by exit status, resolve rate, switch turns, steps by actor."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

from oec.core.store import TRAJECTORIES, iter_trajectories, latest_attempts
from oec.tasks.io import InputError


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a rate k/n (sensible at 0% and 100%, unlike the normal approximation)."""
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarize(run: str | Path) -> dict:
    run = Path(run)
    if not (run / TRAJECTORIES).exists():
        raise InputError(f"{run}: no {TRAJECTORIES} here; is this a run directory written by `oec collect`?")
    attempts = list(iter_trajectories(run))
    trajs = latest_attempts(attempts)
    n = len(trajs)
    resolved = sum(t.resolved for t in trajs)
    steps = Counter(s.actor for t in trajs for s in t.steps)
    switch = Counter(t.switch_turn for t in trajs if t.switch_turn is not None)
    spend = {actor: {"prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0, "calls": 0} for actor in ("student", "expert")}
    for t in trajs:
        for s in t.steps:
            # a DAgger label is an expert call made at a student's step
            for actor, c in ((s.actor, s.completion), ("expert", s.label.completion if s.label else None)):
                if c is not None:
                    spend[actor]["prompt_tokens"] += c.prompt_tokens
                    spend[actor]["completion_tokens"] += c.completion_tokens
                    spend[actor]["cost"] += c.cost
                    spend[actor]["calls"] += 1
    expert_tokens = spend["expert"]["prompt_tokens"] + spend["expert"]["completion_tokens"]
    return {
        "run": str(run),
        "tokens": spend,
        "expert_tokens_per_trajectory": expert_tokens / n if n else 0.0,
        "expert_tokens_per_resolved": expert_tokens / resolved if resolved else None,
        "expert_cost_per_resolved": spend["expert"]["cost"] / resolved if resolved else None,
        "n": n,
        "resolved": resolved,
        "resolve_rate": resolved / n if n else 0.0,
        "resolve_rate_ci95": list(wilson(resolved, n)),
        "by_exit_status": dict(sorted(Counter(t.exit_status for t in trajs).items())),
        "by_mode": dict(sorted(Counter(t.mode for t in trajs).items())),
        "mean_steps": sum(len(t.steps) for t in trajs) / n if n else 0.0,
        "steps_by_actor": dict(sorted(steps.items())),
        "format_errors": sum(s.format_error for t in trajs for s in t.steps),
        "with_switch": sum(t.switch_turn is not None for t in trajs),
        "switch_turn_hist": {str(k): v for k, v in sorted(switch.items())},
        "labelled_steps": sum(s.label is not None for t in trajs for s in t.steps),
        # the expert undid a student edit: the data shows a recovery, not just a continuation
        "expert_reverts": sum(any(s.actor == "expert" and s.action and s.action.command.startswith("git checkout")
                                  for s in t.steps) for t in trajs if t.mode != "expert"),
        "tasks": len({t.task_id for t in trajs}),
        # attempts a later one replaced (`oec collect --retry-errors`): on disk, counted nowhere
        "superseded": len(attempts) - n,
    }


def render(summary: dict) -> str:
    lo, hi = summary["resolve_rate_ci95"]
    lines = [
        f"run {summary['run']}: {summary['n']} trajectories over {summary['tasks']} tasks, modes {summary['by_mode']}",
        f"resolved {summary['resolved']}/{summary['n']} = {summary['resolve_rate']:.1%} (95% CI {lo:.1%}-{hi:.1%})",
        "exit status: " + ", ".join(f"{k} {v}" for k, v in summary["by_exit_status"].items())
        + (f"; {summary['superseded']} earlier attempts superseded by retries" if summary.get("superseded") else ""),
        f"mean steps {summary['mean_steps']:.1f}; steps by actor: {summary['steps_by_actor']}; "
        f"format errors {summary['format_errors']}",
    ]
    for actor, sp in summary["tokens"].items():
        if sp["prompt_tokens"] + sp["completion_tokens"]:  # scripted policies use none
            lines.append(f"{actor}: {sp['calls']} calls, {sp['prompt_tokens']} prompt + {sp['completion_tokens']} "
                         f"completion tokens, ${sp['cost']:.4f}")
    expert = summary["tokens"]["expert"]
    if expert["prompt_tokens"] + expert["completion_tokens"]:
        per = summary["expert_tokens_per_resolved"]
        lines.append(f"expert tokens per trajectory {summary['expert_tokens_per_trajectory']:.0f}, per resolved "
                     f"{'n/a' if per is None else f'{per:.0f}'}")
    hist = summary["switch_turn_hist"]
    if hist:
        top = max(hist.values())
        lines.append(f"switch turn ({summary['with_switch']} trajectories):")
        lines += [f"  {k:>3} {'#' * max(1, round(30 * v / top))} {v}" for k, v in hist.items()]
    if summary["with_switch"] or summary["labelled_steps"]:
        lines.append(f"trajectories where the expert reverted a student edit: {summary['expert_reverts']}")
    if summary["labelled_steps"]:
        lines.append(f"expert labels on student steps: {summary['labelled_steps']}")
    return "\n".join(lines)
