"""Run metrics beside the run store: what a run directory's trajectories add up to (resolve rate with its Wilson
interval, exit statuses, switch turns, tokens and cost by actor). `oec show` renders them; experiments and DAgger
rounds read them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from oec.core.errors import InputError
from oec.core.store import TRAJECTORIES, iter_trajectories, latest_attempts


def wilson(k: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval for a rate k/n (sensible at 0% and 100%, unlike the normal approximation), as
    statsmodels computes it."""
    from statsmodels.stats.proportion import proportion_confint

    if n == 0:
        return (0.0, 0.0)
    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    return (max(0.0, float(lo)), min(1.0, float(hi)))


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
    spend = {actor: {"prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0, "calls": 0}
             for actor in ("student", "expert")}
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
