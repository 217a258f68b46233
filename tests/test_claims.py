"""The claims' statistics: every verdict derived from synthetic per-task outcomes whose truth is known (a clear win, a
clear loss, a null), `not_measured` where a run cannot speak, and the paired bootstrap's behaviour (pairing narrows,
seed-to-seed variance widens). Synthetic outcomes stand in for trained students here: the statistics are what is
under test, and real students' outcomes of such known truth cannot be made to order."""

import numpy as np
import pytest

from oec.core.metrics import wilson
from oec.experiments.claims import claims, verdict
from oec.experiments.stats import mcnemar_p, newcombe_paired, paired

TASKS, SEEDS = 400, (0, 1)
ARMS = {"bc": {"kind": "bc"}, "on_policy": {"kind": "on_policy"},
        "oec": {"kind": "oec", "switch": "uniform", "mask": "expert", "filters": True},
        "oec_bc": {"kind": "oec_bc"},
        "oec_all_turns": {"kind": "oec", "switch": "uniform", "mask": "all", "filters": True},
        "oec_no_filter": {"kind": "oec", "switch": "uniform", "mask": "expert", "filters": False},
        "oec_late": {"kind": "oec", "switch": "late", "mask": "expert", "filters": True},
        "dagger": {"kind": "dagger"}}
# The truth at size 20: a task is resolved when its difficulty is below the arm's skill (plus a little noise per
# seed), so arms of equal skill are a null and 0.3 apart a clear win. At size 10 BC and OEC swap: not pooled.
SKILL = {"warm_start": 0.4, "bc": 0.4, "on_policy": 0.4, "oec": 0.7, "oec_bc": 0.4, "oec_all_turns": 0.4,
         "oec_no_filter": 0.7, "oec_late": 0.4, "dagger": 0.9}
AT_10 = {"bc": 0.7, "oec": 0.4}


def outcomes(skill: dict, size: int, rng, seeds=SEEDS) -> list[dict]:
    difficulty = np.random.default_rng(7).random(TASKS)  # the same tasks for every arm: that is the pairing
    rows = []
    for arm, p in skill.items():
        for seed in (seeds if arm != "warm_start" else (0,)):
            solved = difficulty + rng.normal(0, 0.05, TASKS) < p
            rows += [{"arm": arm, "size": size if arm != "warm_start" else 0, "seed": seed, "task_id": f"t{i:03d}",
                      "resolved": int(x)} for i, x in enumerate(solved)]
    return rows


def results(kept: dict[str, int] | None = None, trajectories: dict[str, int] | None = None) -> list[dict]:
    return [{"arm": a, "size": size, "seed": s, "kept": (kept or {}).get(a, 40),
             "trajectories": (trajectories or {}).get(a, 20)} for a in ARMS for size in (10, 20) for s in SEEDS]


@pytest.fixture(scope="module")
def run():
    rng = np.random.default_rng(0)
    at_10 = {k: v for k, v in {**SKILL, **AT_10}.items() if k != "warm_start"}  # evaluated once, at its own size
    return outcomes(SKILL, 20, rng) + outcomes(at_10, 10, rng)


def table(rows, res, arms=ARMS, size=20) -> dict[str, dict]:
    return {c["claim"]: c for c in claims(rows, res, arms, None, None, size)}


def test_every_verdict_follows_the_known_truth(run):
    t = table(run, results(kept={"oec": 30, "oec_no_filter": 34}))
    expected = {"C2": "reproduced",  # OEC 0.7 vs BC 0.4: a clear win
                "C3": "reproduced",  # on-policy 0.4 vs warm start 0.4: a null, and a gain of 5 points is ruled out
                "C3bc": "reproduced",  # on-policy 0.4 vs BC 0.4: the same null against BC
                "C4": "not_reproduced",  # OEC+BC 0.4 vs the best other arm (dagger 0.9): a clear loss
                "C5": "reproduced",  # OEC 0.7 vs the mask ablation 0.4
                "C6": "inconclusive",  # OEC 0.7 vs no filters 0.7: a null, so no claim either way
                "C7": "not_reproduced",  # late 0.4 vs uniform 0.7: a clear loss
                "C8": "reproduced",  # DAgger 0.9 vs the best non-interactive arm (0.7)
                "C1": "not_measured"}  # no shift analysis
    assert {k: c["verdict"] for k, c in t.items()} == expected
    c2 = t["C2"]
    assert c2["size"] == 20 and 0.25 < c2["effect"] < 0.35 and c2["lo"] < c2["effect"] < c2["hi"]
    assert c2["half_width"] == pytest.approx((c2["hi"] - c2["lo"]) / 2, abs=1e-4) and c2["half_width"] < 0.06
    assert c2["detectable"] == pytest.approx(1.4286 * c2["half_width"], rel=1e-3)  # 80% power, 5% level
    assert "paired on 400 tasks x 2 seed(s)" in c2["detail"] and "McNemar" in c2["detail"]
    assert "vs dagger" in t["C4"]["detail"] and "vs oec" in t["C8"]["detail"]  # the best of the others, by rate
    # sizes are never pooled: at size 10 BC is the better arm
    assert table(run, results(), size=10)["C2"]["verdict"] == "not_reproduced"


def test_not_measured_where_the_run_cannot_speak(run):
    no_dagger = {k: v for k, v in ARMS.items() if k != "dagger"}
    t = table(run, results(kept={"oec": 30, "oec_no_filter": 34}), arms=no_dagger)
    assert t["C8"]["verdict"] == "not_measured" and "the config has no dagger arm" in t["C8"]["detail"]
    assert t["C8"]["effect"] == "" and t["C8"]["half_width"] == ""
    # an empty on-policy pool: the arm never trained, its results row copies the warm start and it has no outcomes
    empty = [r for r in run if r["arm"] != "on_policy"]
    c3 = table(empty, results(trajectories={"on_policy": 0}))["C3"]
    assert c3["verdict"] == "not_measured" and "kept no trajectories" in c3["detail"]
    # the filter ablation whose filters rejected nothing: both arms kept the same trajectories
    c6 = table(run, results(kept={"oec": 34, "oec_no_filter": 34}))["C6"]
    assert c6["verdict"] == "not_measured" and "rejected nothing" in c6["detail"]
    assert table(run, results(), size=50)["C2"]["verdict"] == "not_measured"  # no evaluation at that size


def test_verdict_rules():
    assert verdict(0.01, 0.2) == "reproduced" and verdict(-0.2, -0.01) == "not_reproduced"
    assert verdict(-0.01, 0.2) == "inconclusive"
    assert verdict(-0.04, 0.04, null_claim=True) == "reproduced"  # a gain of 5 points is ruled out
    assert verdict(-0.04, 0.08, null_claim=True) == "inconclusive" and verdict(0.01, 0.1, True) == "not_reproduced"


def per_seed(matrix: np.ndarray) -> dict[int, dict[str, int]]:
    return {s: {f"t{i}": int(x) for i, x in enumerate(row)} for s, row in enumerate(matrix)}


def test_pairing_narrows_and_seed_variance_widens_the_interval():
    rng = np.random.default_rng(1)
    n = 300
    b = rng.random(n) < 0.5
    a = b.copy()
    a[rng.choice(np.flatnonzero(~b), 20, replace=False)] = True  # A = B plus 20 more tasks: +6.7 points
    p = paired(per_seed(a[None]), per_seed(b[None]))
    assert p.effect == pytest.approx(20 / n) and p.lo > 0
    # unpaired (Newcombe from two Wilson intervals) the same rates cannot separate: pairing removes shared difficulty
    (la, _), (_, ub) = wilson(int(a.sum()), n), wilson(int(b.sum()), n)
    newcombe_lo = 20 / n - np.hypot(a.mean() - la, ub - b.mean())
    assert newcombe_lo < 0 < p.lo
    # exact McNemar (statsmodels) on the 20 discordant pairs, all one way: p = 2 / 2**20
    assert p.mcnemar_p == [pytest.approx(2 * 0.5 ** 20)] and mcnemar_p(b, b) == 1.0
    # two seeds that agree vs two that disagree (+13.3 and 0 points), same mean effect: seeds are replicates
    a2 = b.copy()
    a2[rng.choice(np.flatnonzero(~b), 40, replace=False)] = True
    agree = paired(per_seed(np.stack([a, a])), per_seed(np.stack([b, b])))
    disagree = paired(per_seed(np.stack([a2, b])), per_seed(np.stack([b, b])))
    assert agree.effect == pytest.approx(disagree.effect) == pytest.approx(20 / n)
    assert disagree.half_width > 1.5 * agree.half_width
    assert paired(per_seed(a[None]), {}) is None  # no seed in common


def test_no_disagreement_is_not_certainty():
    """0/3 vs 0/3: every bootstrap replicate is 0, yet three tasks prove nothing: Newcombe's paired score interval is
    the floor (for 0 of 3 on both sides: +-0.56, the Wilson upper end of 0/3)."""
    none = np.zeros(3, dtype=bool)
    p = paired(per_seed(none[None]), per_seed(none[None]))
    assert p.effect == 0 and p.lo == pytest.approx(-wilson(0, 3)[1]) and p.hi == pytest.approx(wilson(0, 3)[1])
    assert p.half_width > 0.5 and verdict(p.lo, p.hi) == "inconclusive"


def test_an_arm_is_never_compared_with_itself(run):
    only = {"bc": ARMS["bc"], "oec_all_turns": ARMS["oec_all_turns"]}  # the only oec arm is the ablation
    c5 = table(run, results(), arms=only)["C5"]
    assert c5["verdict"] == "not_measured" and "compared with itself" in c5["detail"]


def test_arms_that_never_disagree_on_few_tasks_prove_no_equality():
    """6/12 vs 6/12 on the same tasks: the plain correlation of the pairs is 1 and Newcombe's interval would collapse
    to [0, 0]; his continuity-corrected one (phi = (6*6 - 12/2) / 6**2) keeps +-14 points, so a claim of no gain is
    not decided by twelve tasks."""
    half = np.arange(12) < 6
    lo, hi = newcombe_paired(half, half)
    _, u1 = wilson(6, 12)
    width = (u1 - 0.5) * np.sqrt(2 - 2 * (36 - 6) / 36)
    assert (lo, hi) == (pytest.approx(-width), pytest.approx(width)) and width > 0.14
    p = paired(per_seed(half[None]), per_seed(half[None]))
    assert p.lo <= lo and p.hi >= hi
    assert verdict(p.lo, p.hi, null_claim=True) == "inconclusive"
