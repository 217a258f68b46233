"""Expert tokens OEC needs to reach BC's final held-out resolve rate, as a fraction of the tokens BC spent.

Goal (issue: the paper in one command): <= 50%. The run is an ordinary `oec experiment` (resumable, so a second call
only reads the results): BC and the OEC arms at several dataset sizes, each arm's `expert_tokens` being what the
expert pools it drew on cost per kept trajectory times the size. For every OEC arm we walk its (expert tokens,
resolve rate) curve, starting at the warm start (0 tokens), and interpolate linearly to where it first reaches BC's
rate at BC's largest size; the ratio is those tokens over BC's. Rates are averaged over seeds first.

    .venv/bin/python bench/expert_tokens.py [--config bench/expert_tokens.yaml] [--results RUN/results.csv] [KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, verdict_line  # noqa: E402

GOAL = 0.5


def curves(rows: list[dict]) -> tuple[float, dict[str, list[tuple[float, float, int]]]]:
    """The warm start's rate and, per arm, (mean expert tokens, mean resolve rate, size) by size, over seeds."""
    warm = statistics.mean(float(r["resolve_rate"]) for r in rows if r["arm"] == "warm_start")
    points: dict[tuple[str, int], list[dict]] = defaultdict(list)
    for r in rows:
        if r["arm"] != "warm_start":
            points[r["arm"], int(r["size"])].append(r)
    out: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    for (arm, size), rs in sorted(points.items(), key=lambda kv: kv[0][1]):
        out[arm].append((statistics.mean(float(r["expert_tokens"]) for r in rs),
                         statistics.mean(float(r["resolve_rate"]) for r in rs), size))
    return warm, out


def tokens_to_reach(target: float, start: float, curve: list[tuple[float, float, int]]) -> float | None:
    """Expert tokens at which the piecewise-linear curve from (0, START) first reaches TARGET (> START); None if it
    never does."""
    prev_t, prev_r = 0.0, start
    for t, r, _ in curve:
        if r >= target:  # START < TARGET (checked by the caller), so every earlier point is below it and r > prev_r
            return prev_t + (t - prev_t) * (target - prev_r) / (r - prev_r)
        prev_t, prev_r = t, r
    return None


def report(rows: list[dict], bc_arm: str = "bc") -> bool:
    warm, arms = curves(rows)
    if bc_arm not in arms:
        raise SystemExit(f"no {bc_arm!r} rows in the results: the config needs a BC arm")
    bc_tokens, bc_rate, bc_size = arms[bc_arm][-1]
    print(f"{'arm':<14}{'size':>6}{'seed':>6}{'expert tokens':>15}{'resolved':>10}  {'95% CI':<16}submits right")
    for r in rows:  # every row, with its interval: one seed of 100 tasks is +-10 points
        ci = f"[{float(r['ci_lo']):.1%}, {float(r['ci_hi']):.1%}]"
        right = f"{r['resolved']}/{r['submitted']}" if r.get("submitted") else "-"  # older results.csv: no column
        note = f"  ({r['note']})" if r.get("note") and r["arm"] != "warm_start" else ""
        print(f"{r['arm']:<14}{r['size']:>6}{r['seed']:>6}{float(r['expert_tokens']):>15,.0f}"
              f"{float(r['resolve_rate']):>10.1%}  {ci:<16}{right}{note}")
    print(f"warm start {warm:.1%}; BC at size {bc_size}: {bc_rate:.1%} for {bc_tokens:,.0f} expert tokens")
    if bc_tokens <= 0:
        print("the expert reported no tokens (e.g. a server without usage data): no ratio to compute")
        return False
    if bc_rate <= warm:
        print(f"BC did not improve on the warm start ({bc_rate:.1%} <= {warm:.1%}): there is no gain for OEC to match, "
              "so the ratio is undefined (more steps, sizes or held-out tasks are needed)")
        return False
    met = False
    for arm, curve in arms.items():
        if not arm.startswith("oec"):  # on-policy spends no expert tokens; DAgger is not the question here
            continue
        need = tokens_to_reach(bc_rate, warm, curve)
        if need is None:
            best = max(curve, key=lambda p: p[1])
            print(f"{arm}: never reached {bc_rate:.1%} (best {best[1]:.1%} at size {best[2]}, "
                  f"{best[0] / bc_tokens:.2f}x BC's tokens)")
            continue
        ratio = need / bc_tokens
        met |= ratio <= GOAL
        print(f"{arm}: reached BC's {bc_rate:.1%} at {need:,.0f} expert tokens = {ratio:.2f}x BC's (goal <= {GOAL}x)")
    return met


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(Path(__file__).with_suffix(".yaml")))
    ap.add_argument("--results", help="read this results.csv instead of running the experiment")
    ap.add_argument("overrides", nargs="*", help="KEY=VALUE overrides of the experiment config")
    args = ap.parse_args()
    print(f"# expert_tokens: {machine()}")
    path = Path(args.results) if args.results else None
    if path is None:
        from oec.experiments.experiment import run_experiment

        t0 = time.perf_counter()
        report_path = run_experiment(args.config, args.overrides)
        path = report_path.parent / "results.csv"
        print(f"experiment: {time.perf_counter() - t0:.0f} s ({path.parent})")
    with path.open() as f:
        met = report(list(csv.DictReader(f)))
    print(verdict_line(met))


if __name__ == "__main__":
    main()
