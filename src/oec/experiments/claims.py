"""The claims table: for each claim of the source papers, our measured effect, its 95% interval, the effect the run
could have detected, and a verdict (docs/statistics.md says how, in full).

Resolve-rate claims are paired comparisons of two arms on the same held-out tasks at one named dataset size (the
largest, unless `claims_size` names another): sizes are never pooled. The effect is the difference of resolve rates,
its interval a bootstrap over tasks and seeds at once (`oec.experiments.stats.paired`), with the exact McNemar test per
seed in the detail. A claim that one arm beats another is `reproduced` when the interval lies above zero,
`not_reproduced` when it lies below, and `inconclusive` otherwise; C3 (on-policy alone gives no gain) is reproduced when
the interval rules out a gain of NO_GAIN_MARGIN, refuted by a significant gain. `not_measured`: the config lacks an arm,
an arm kept no trajectories (so it never trained: its row is the warm start's), or the filter ablation's filters
rejected nothing. `half_width` is half the interval: effects much smaller than it cannot come out significant in this
run. C1 uses the covariate-shift analysis of the final students and the expert on held-out tasks.
"""

from __future__ import annotations

import csv
from pathlib import Path

from oec.core.atomic import atomic_output
from oec.experiments.stats import Paired, outcome_table, paired

COLUMNS = ["claim", "size", "effect", "lo", "hi", "half_width", "verdict", "description", "detail", "detectable"]
VERDICTS = ("reproduced", "not_reproduced", "inconclusive", "not_measured")
CLAIMS = {
    "C1": "student-expert divergence grows with the turn; expert-expert stays flat",
    "C2": "OEC beats BC at equal data",
    "C3": "on-policy data alone gives no gain (or hurts)",
    "C3bc": "C3 against BC: on-policy data gives no gain over BC at equal data",
    "C4": "OEC+BC is the best arm",
    "C5": "training on the student's turns hurts (mask ablation)",
    "C6": "repetition filtering matters",
    "C7": "later switches help more",
    "C8": "DAgger beats the best non-interactive arm",
}
WARM = "warm_start"  # evaluated once; every seed's arm is paired with that one evaluation
NO_GAIN_MARGIN = 0.05  # a "no gain" claim holds when the interval rules out a gain of this much


def verdict(lo: float, hi: float, null_claim: bool = False) -> str:
    if null_claim:  # "no gain (or hurts)": shown when a real gain is ruled out, refuted by a significant gain
        return "not_reproduced" if lo > 0 else "reproduced" if hi < NO_GAIN_MARGIN else "inconclusive"
    return "reproduced" if lo > 0 else "not_reproduced" if hi < 0 else "inconclusive"


def unmeasured(claim: str, why: str, size: int | str = "") -> dict:
    return {"claim": claim, "size": size, "effect": "", "lo": "", "hi": "", "half_width": "", "detectable": "",
            "verdict": "not_measured", "description": CLAIMS[claim], "detail": f"not measured: {why}"}


class Evidence:
    """What a run measured: per-task outcomes by (arm, size, seed), and results.csv's rows (why an arm has none)."""

    def __init__(self, outcomes: list[dict], results: list[dict]):
        self.table, self.results = outcome_table(outcomes), results

    def evals(self, arm: str, size: int) -> dict[int, dict[str, int]]:
        if arm == WARM:  # the warm start's one evaluation, whatever its size and seed
            return next(({0: v} for (a, _, _), v in self.table.items() if a == WARM), {})
        return {seed: v for (a, n, seed), v in self.table.items() if a == arm and n == size}

    def rate(self, arm: str, size: int) -> float | None:
        ev = self.evals(arm, size)
        vals = [x for per_task in ev.values() for x in per_task.values()]
        return sum(vals) / len(vals) if vals else None

    def missing(self, arm: str, size: int) -> str:
        """Why ARM has no outcomes at SIZE."""
        rows = [r for r in self.results if r["arm"] == arm and str(r["size"]) == str(size)]
        if rows and all(str(r.get("trajectories")) == "0" for r in rows):
            return f"arm {arm!r} kept no trajectories at size {size} (its pool resolved nothing), so it never trained"
        return f"arm {arm!r} has no evaluation at size {size}"

    def kept(self, arm: str, size: int) -> dict[int, int]:
        return {int(r["seed"]): int(r["kept"]) for r in self.results
                if r["arm"] == arm and str(r["size"]) == str(size) and str(r.get("kept", "")).strip() != ""}


def row(claim: str, size: int, a: str, b: str, p: Paired, null_claim: bool = False) -> dict:
    mc = ", ".join(f"{x:.3g}" for x in p.mcnemar_p)
    detail = (f"{a} {p.rate_a:.1%} vs {b} {p.rate_b:.1%}, paired on {p.tasks} tasks x {len(p.seeds)} seed(s) "
              f"{p.seeds}; exact McNemar p per seed: {mc}")
    return {"claim": claim, "size": size, "effect": round(p.effect, 4), "lo": round(p.lo, 4), "hi": round(p.hi, 4),
            "half_width": round(p.half_width, 4), "detectable": round(p.detectable, 4),
            "verdict": verdict(p.lo, p.hi, null_claim),
            "description": CLAIMS[claim], "detail": detail}


def compare(ev: Evidence, claim: str, size: int, a: str | None, b: str | list[str] | None,
            kinds: tuple[str, str] = ("", ""), null_claim: bool = False) -> dict:
    """Claim: arm A beats arm B (or the best of several arms B, by resolve rate at SIZE). None: the config has no arm
    of that kind (KINDS names A's and B's for the message)."""
    if a is None or not b:
        return unmeasured(claim, f"the config has no {kinds[0] if a is None else kinds[1]} arm", size)
    if a == b:  # e.g. the only oec arm is the mask ablation itself: nothing to compare it with
        return unmeasured(claim, f"{a} would be compared with itself (the config has no {kinds[0]} arm besides the "
                                 f"{kinds[1]} one)", size)
    if isinstance(b, list):
        rates = {x: r for x in b if (r := ev.rate(x, size)) is not None}
        if not rates:
            return unmeasured(claim, f"none of {b} has an evaluation at size {size}", size)
        b = max(rates, key=lambda x: rates[x])
    ea, eb = ev.evals(a, size), ev.evals(b, size)
    for arm, got in ((a, ea), (b, eb)):
        if not got:
            return unmeasured(claim, ev.missing(arm, size), size)
    if b == WARM:  # one warm-start evaluation, the reference of every seed
        eb = {seed: eb[0] for seed in ea}
    p = paired(ea, eb)
    if p is None:
        return unmeasured(claim, f"{a} and {b} share no seed and task at size {size}", size)
    return row(claim, size, a, b, p, null_claim)


def shift_claim(per_turn: list[dict], student: str, reference: str = "expert") -> dict:
    """C1: the student-expert FD grows from the first to the last measured turn, and the baseline does not."""
    def growth(pair: str) -> tuple[float, float, float] | None:
        rs = sorted((r for r in per_turn if r["pair"] == pair and r.get("valid")), key=lambda r: r["turn"])
        if len(rs) < 2:
            return None
        first, last = rs[0], rs[-1]
        return last["fd"] - first["fd"], last["fd_lo"] - first["fd_hi"], last["fd_hi"] - first["fd_lo"]

    grew, flat = growth(f"{student}-{reference}"), growth(f"{reference}-{reference}")
    if grew is None:
        return {**unmeasured("C1", ""), "verdict": "inconclusive",
                "detail": "too few trajectories per turn for the shift analysis"}
    d, lo, hi = grew
    v = verdict(lo, hi)
    if v == "reproduced" and flat is not None and flat[1] > 0:  # the baseline grew too: not a student effect
        v = "inconclusive"
    detail = f"FD growth {student}-{reference} first->last turn" + (
        f"; baseline growth {flat[0]:.3f} [{flat[1]:.3f}, {flat[2]:.3f}]" if flat else "")
    return {"claim": "C1", "size": "", "effect": round(d, 4), "lo": round(lo, 4), "hi": round(hi, 4),
            "half_width": round((hi - lo) / 2, 4), "verdict": v, "description": CLAIMS["C1"], "detail": detail}


def claims(outcomes: list[dict], results: list[dict], arms: dict[str, dict], per_turn: list[dict] | None,
           shift_student: str | None, size: int) -> list[dict]:
    """OUTCOMES: outcomes.csv rows; RESULTS: results.csv rows; ARMS: name -> its config (kind, switch, mask,
    filters), the claims pick their arms by kind; SIZE: the dataset size every resolve-rate claim is made at."""
    def find(**want) -> str | None:
        return next((n for n, a in arms.items() if all(a.get(k) == v for k, v in want.items())), None)

    ev = Evidence(outcomes, results)
    oec = find(kind="oec", switch="uniform", mask="expert", filters=True) or find(kind="oec")
    late = next((n for n, a in arms.items() if a["kind"] == "oec" and a["switch"].startswith("late")), None)
    bc, on_policy, oec_bc, dagger = find(kind="bc"), find(kind="on_policy"), find(kind="oec_bc"), find(kind="dagger")
    all_turns, nofilter = find(kind="oec", mask="all"), find(kind="oec", filters=False)
    out = [shift_claim(per_turn or [], shift_student) if shift_student else
           unmeasured("C1", "no shift analysis (shift: false, or no bc arm to analyse)")]
    out.append(compare(ev, "C2", size, oec, bc, ("oec", "bc")))
    out.append(compare(ev, "C3", size, on_policy, WARM, ("on_policy", ""), null_claim=True))
    # against the warm start alone, "no gain from on-policy data" cannot be told from "no gain from any such fine-tune"
    out.append(compare(ev, "C3bc", size, on_policy, bc, ("on_policy", "bc"), null_claim=True))
    out.append(compare(ev, "C4", size, oec_bc, [n for n in arms if n != oec_bc], ("oec_bc", "other")))
    out.append(compare(ev, "C5", size, oec, all_turns, ("oec", "mask=all oec")))
    c6 = compare(ev, "C6", size, oec, nofilter, ("oec", "filters=false oec"))
    if oec and nofilter and c6["verdict"] != "not_measured":
        on, off = ev.kept(oec, size), ev.kept(nofilter, size)
        if on and on == off:  # the same pool, the same kept trajectories: the ablation changed nothing
            c6 = unmeasured("C6", f"the repetition filters rejected nothing ({oec} and {nofilter} kept "
                                  f"{sorted(on.values())} trajectories per seed)", size)
    out.append(c6)
    out.append(compare(ev, "C7", size, late, oec, ("late-switch oec", "uniform oec")))
    out.append(compare(ev, "C8", size, dagger, [n for n, a in arms.items() if a["kind"] != "dagger"],
                       ("dagger", "non-interactive")))
    return out


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_claims(root: Path, arms: dict[str, dict], size: int, per_turn: list[dict] | None = None,
                 student: str | None = None, view: str = "", partial: bool = False) -> list[dict]:
    """ROOT/claims.csv: the claims from ROOT's outcomes.csv and results.csv at SIZE (ARMS: name -> ArmConfig fields;
    PER_TURN: the shift analysis of STUDENT's arm against the expert, for C1). VIEW: claims_VIEW.csv from
    outcomes_VIEW.csv and results_VIEW.csv, another held-out evaluation of the same students; PARTIAL: of only some
    arms, so the claims against every other arm (C4, C8) are not made."""
    suffix = f"_{view}" if view else ""
    table = claims(read_csv(root / f"outcomes{suffix}.csv"), read_csv(root / f"results{suffix}.csv"), arms, per_turn,
                   student, size)
    if view:  # the shift analysis is of the main evaluation's students and episodes
        table[0] = unmeasured("C1", "C1 is measured on the main held-out evaluation only (claims.csv)")
    if partial:
        table = [unmeasured(r["claim"], "it compares an arm with every other, and recheck_arms evaluated only some "
                                        "arms again", size) if r["claim"] in ("C4", "C8") else r for r in table]
    with atomic_output(root / f"claims{suffix}.csv") as tmp, tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(table)
    return table
