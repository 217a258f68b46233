"""`oec show`: what a run directory holds: counts by exit status, resolve rate, switch turns, steps by actor."""

from __future__ import annotations


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
