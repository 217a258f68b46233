"""Paired comparisons of two arms on the same held-out tasks, with seeds as replicates (docs/statistics.md).

An arm's evaluation at one (size, seed) is a vector of per-task outcomes (1 resolved, 0 not) on the held-out tasks,
which every arm shares. The effect of A over B is the mean over seeds and tasks of A's outcome minus B's on the same
(seed, task). Its 95% interval is a percentile bootstrap that resamples tasks and seeds at once (a crossed, "pigeonhole"
bootstrap: both are random draws the result should generalise over). Pairing removes the variance of task difficulty
that both arms share; resampling seeds adds the training variance that a single seed hides. With one seed it is the
plain paired bootstrap over tasks, and the exact McNemar test (statsmodels) is reported beside it.

A bootstrap cannot see variation that its sample lacks: where the arms disagree on no task (0/40 vs 0/40) every
replicate is 0 and the interval collapses to [0, 0], which would read as certainty. So the interval is never narrower
than Newcombe's score interval for a difference of paired proportions (his method 10, from two Wilson intervals and
the correlation of the pairs) over all pairs: that one stays honest at small counts and agrees with the bootstrap when
there is plenty of data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from oec.core.metrics import wilson

OUTCOME_COLUMNS = ["arm", "size", "seed", "task_id", "resolved"]
REPLICATES = 2000  # percentile ends of a 95% interval move by under a point between bootstrap seeds at this size
BOOTSTRAP_SEED = 0  # fixed: the same outcomes always give the same interval (a rerun of `claims` changes nothing)


@dataclass
class Paired:
    """A - B on the same tasks: effect, 95% interval, how much data it rests on, and McNemar per seed."""

    effect: float
    lo: float
    hi: float
    seeds: list[int]
    tasks: int
    rate_a: float
    rate_b: float
    mcnemar_p: list[float]  # exact two-sided p per seed (1.0 where no pair disagrees)

    @property
    def half_width(self) -> float:
        """Half the interval's width: a true effect much smaller than this cannot come out significant here."""
        return (self.hi - self.lo) / 2

    @property
    def detectable(self) -> float:
        """The effect this comparison detects with 80% power at the 5% level (two-sided), from the interval's
        standard error: (z_0.975 + z_0.8) standard errors, about 1.43 half-widths."""
        z = norm.ppf(0.975)
        return self.half_width / z * (z + norm.ppf(0.8))


def outcome_rows(evaluations: list[dict]) -> list[dict]:
    """outcomes.csv rows of EVALUATIONS (results rows whose `eval` is a run directory): one per held-out task."""
    from oec.core.store import read_trajectories

    return [{"arm": r["arm"], "size": r["size"], "seed": r["seed"], "task_id": t.task_id, "resolved": int(t.resolved)}
            for r in evaluations if r.get("eval")
            for t in sorted(read_trajectories(r["eval"]), key=lambda t: (t.task_id, t.sample))]


def outcome_table(rows: list[dict]) -> dict[tuple[str, int, int], dict[str, int]]:
    """outcomes.csv rows -> {(arm, size, seed): {task_id: resolved}}."""
    table: dict[tuple[str, int, int], dict[str, int]] = {}
    for r in rows:
        table.setdefault((r["arm"], int(r["size"]), int(r["seed"])), {})[r["task_id"]] = int(r["resolved"])
    return table


def mcnemar_p(a: np.ndarray, b: np.ndarray) -> float:
    """Exact (binomial) McNemar test of paired binary outcomes: only the tasks where the arms disagree count."""
    from statsmodels.stats.contingency_tables import mcnemar

    both, only_a, only_b = int((a & b).sum()), int((a & ~b).sum()), int((~a & b).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(mcnemar([[both, only_a], [only_b, int((~a & ~b).sum())]], exact=True).pvalue)


def newcombe_paired(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """95% interval of mean(a) - mean(b) for paired binary outcomes: Newcombe (1998), "Improved confidence intervals
    for the difference between binomial proportions based on paired data", method 10."""
    n = len(a)
    both, only_a, only_b = int((a & b).sum()), int((a & ~b).sum()), int((~a & b).sum())
    neither = n - both - only_a - only_b
    p1, p2 = (both + only_a) / n, (both + only_b) / n
    (l1, u1), (l2, u2) = wilson(both + only_a, n), wilson(both + only_b, n)
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    # Newcombe's continuity-corrected correlation: the plain one is 1 when the arms never disagree, and then an
    # interval around rates near 1/2 collapses to [0, 0] however few the tasks (12 tasks would "prove" no effect)
    agree = both * neither - only_a * only_b
    corrected = agree - n / 2 if agree > n / 2 else min(agree, 0)
    phi = corrected / math.sqrt(margins) if margins else 0.0
    down = math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    up = math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return p1 - p2 - down, p1 - p2 + up


def paired(a: dict[int, dict[str, int]], b: dict[int, dict[str, int]], replicates: int = REPLICATES) -> Paired | None:
    """A and B: {seed: {task_id: resolved}}. Seeds both arms have, tasks both have in every such seed; None if none."""
    seeds = sorted(set(a) & set(b))
    tasks = sorted(set.intersection(*(set(a[s]) & set(b[s]) for s in seeds))) if seeds else []
    if not tasks:
        return None
    ya = np.array([[a[s][t] for t in tasks] for s in seeds], dtype=bool)
    yb = np.array([[b[s][t] for t in tasks] for s in seeds], dtype=bool)
    diff = ya.astype(float) - yb.astype(float)  # seeds x tasks
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    n_s, n_t = diff.shape
    # A replicate draws seeds and tasks with replacement; drawing an index k times weights its row/column by k, so a
    # replicate's mean is (seed weights) @ diff @ (task weights) / (n_s n_t): no seeds x tasks copy per replicate.
    ws = rng.multinomial(n_s, np.full(n_s, 1 / n_s), size=replicates) if n_s > 1 else np.ones((replicates, 1))
    wt = rng.multinomial(n_t, np.full(n_t, 1 / n_t), size=replicates)
    means = ((ws @ diff) * wt).sum(axis=1) / (n_s * n_t)
    lo, hi = np.percentile(means, [2.5, 97.5])
    floor_lo, floor_hi = newcombe_paired(ya.ravel(), yb.ravel())  # the bootstrap's floor at small counts
    lo, hi = min(lo, floor_lo), max(hi, floor_hi)
    return Paired(effect=float(diff.mean()), lo=float(lo), hi=float(hi), seeds=seeds, tasks=n_t,
                  rate_a=float(ya.mean()), rate_b=float(yb.mean()),
                  mcnemar_p=[mcnemar_p(ya[i], yb[i]) for i in range(n_s)])
