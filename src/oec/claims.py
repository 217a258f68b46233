"""The claims table: for each claim of the source papers, our measured effect, its 95% interval and a verdict.

Resolve-rate claims compare two arms pooled over seeds and sizes (the same held-out tasks each time): the effect is
the difference of resolve rates, its interval the normal one for a difference of two proportions. A claim that one
arm beats another is `reproduced` when the interval lies above zero, `not_reproduced` when it lies below, and
`inconclusive` otherwise; C3 (on-policy alone gives no gain) is reproduced unless the gain is significant. C1 uses the
covariate-shift analysis of the final students and the expert on held-out tasks.
"""

from __future__ import annotations

import csv
import math
import shutil
from pathlib import Path
from typing import Callable

from oec.atomic import atomic_output
from oec.show import wilson

COLUMNS = ["claim", "effect", "lo", "hi", "verdict", "description", "detail"]
CLAIMS = {
    "C1": "student-expert divergence grows with the turn; expert-expert stays flat",
    "C2": "OEC beats BC at equal data",
    "C3": "on-policy data alone gives no gain (or hurts)",
    "C4": "OEC+BC is the best arm",
    "C5": "training on the student's turns hurts (mask ablation)",
    "C6": "repetition filtering matters",
    "C7": "later switches help more",
    "C8": "DAgger beats the best non-interactive arm",
}


def pooled(rows: list[dict], arm: str) -> tuple[int, int] | None:
    got = [r for r in rows if r["arm"] == arm]
    if not got:
        return None
    return sum(int(r["resolved"]) for r in got), sum(int(r["n"]) for r in got)


def difference(a: tuple[int, int], b: tuple[int, int]) -> tuple[float, float, float]:
    """p_a - p_b with Newcombe's 95% interval (from the two Wilson intervals): unlike the normal (Wald) interval it
    does not collapse to [0, 0] when both arms resolve nothing, which would make 0/50 vs 0/50 look certain."""
    (ka, na), (kb, nb) = a, b
    pa, pb = ka / na, kb / nb
    (la, ua), (lb, ub) = wilson(ka, na), wilson(kb, nb)
    d = pa - pb
    return d, d - math.sqrt((pa - la) ** 2 + (ub - pb) ** 2), d + math.sqrt((ua - pa) ** 2 + (pb - lb) ** 2)


NO_GAIN_MARGIN = 0.05  # a "no gain" claim holds when the interval rules out a gain of this much


def verdict(lo: float, hi: float, null_claim: bool = False) -> str:
    if null_claim:  # "no gain (or hurts)": shown when a real gain is ruled out, refuted by a significant gain
        return "not_reproduced" if lo > 0 else "reproduced" if hi < NO_GAIN_MARGIN else "inconclusive"
    return "reproduced" if lo > 0 else "not_reproduced" if hi < 0 else "inconclusive"


def compare(rows: list[dict], claim: str, a: str, b: str | list[str], null_claim: bool = False) -> dict:
    """Claim: arm A beats arm B (or the best of several arms B)."""
    if isinstance(b, list):
        rates = {x: pooled(rows, x) for x in b}
        rates = {x: v for x, v in rates.items() if v}
        b = max(rates, key=lambda x: rates[x][0] / rates[x][1]) if rates else ""
    pa, pb = pooled(rows, a), pooled(rows, b) if b else None
    if not pa or not pb:
        return {"claim": claim, "effect": "", "lo": "", "hi": "", "verdict": "inconclusive",
                "description": CLAIMS[claim], "detail": f"not measured: the config has no arm {a if not pa else b!r}"}
    d, lo, hi = difference(pa, pb)
    return {"claim": claim, "effect": round(d, 4), "lo": round(lo, 4), "hi": round(hi, 4),
            "verdict": verdict(lo, hi, null_claim), "description": CLAIMS[claim],
            "detail": f"{a} {pa[0]}/{pa[1]} vs {b} {pb[0]}/{pb[1]}"}


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
        return {"claim": "C1", "effect": "", "lo": "", "hi": "", "verdict": "inconclusive",
                "description": CLAIMS["C1"], "detail": "too few trajectories per turn for the shift analysis"}
    d, lo, hi = grew
    v = verdict(lo, hi)
    if v == "reproduced" and flat is not None and flat[1] > 0:  # the baseline grew too: not a student effect
        v = "inconclusive"
    detail = f"FD growth {student}-{reference} first->last turn" + (
        f"; baseline growth {flat[0]:.3f} [{flat[1]:.3f}, {flat[2]:.3f}]" if flat else "")
    return {"claim": "C1", "effect": round(d, 4), "lo": round(lo, 4), "hi": round(hi, 4), "verdict": v,
            "description": CLAIMS["C1"], "detail": detail}


def claims(rows: list[dict], arms: dict[str, dict], per_turn: list[dict] | None, shift_student: str | None) -> list[dict]:
    """ARMS: name -> its config (kind, switch, mask, filters); the claims pick their arms by kind."""
    def find(**want) -> str | None:
        return next((n for n, a in arms.items() if all(a.get(k) == v for k, v in want.items())), None)

    oec = find(kind="oec", switch="uniform", mask="expert", filters=True) or find(kind="oec")
    late = next((n for n, a in arms.items() if a["kind"] == "oec" and a["switch"].startswith("late")), None)
    names = {"bc": find(kind="bc"), "on_policy": find(kind="on_policy"), "oec": oec, "oec_bc": find(kind="oec_bc"),
             "all": find(kind="oec", mask="all"), "nofilter": find(kind="oec", filters=False), "late": late,
             "dagger": find(kind="dagger")}
    non_interactive = [n for n, a in arms.items() if a["kind"] != "dagger"]
    others = [n for n in arms if n != names["oec_bc"]]
    out = [shift_claim(per_turn or [], shift_student) if shift_student else
           {"claim": "C1", "effect": "", "lo": "", "hi": "", "verdict": "inconclusive", "description": CLAIMS["C1"],
            "detail": "not measured: shift analysis off"}]
    out.append(compare(rows, "C2", names["oec"] or "oec", names["bc"] or "bc"))
    out.append(compare(rows, "C3", names["on_policy"] or "on_policy", "warm_start", null_claim=True))
    out.append(compare(rows, "C4", names["oec_bc"] or "oec_bc", others))
    out.append(compare(rows, "C5", names["oec"] or "oec", names["all"] or "oec_all_turns"))
    out.append(compare(rows, "C6", names["oec"] or "oec", names["nofilter"] or "oec_no_filter"))
    out.append(compare(rows, "C7", names["late"] or "oec_late", names["oec"] or "oec"))
    out.append(compare(rows, "C8", names["dagger"] or "dagger", non_interactive))
    return out


def write_claims(root: Path, cfg, rows: list[dict], log: Callable[[str], None] = print) -> list[dict]:
    per_turn, student = None, None
    if cfg.shift:
        per_turn, student = run_shift(root, cfg, rows, log)
    table = claims(rows, {a.name: a.model_dump() for a in cfg.arms}, per_turn, student)
    with atomic_output(root / "claims.csv") as tmp, tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(table)
    return table


def run_shift(root: Path, cfg, rows: list[dict], log) -> tuple[list[dict], str] | tuple[None, None]:
    """The final BC student (largest size, first seed) and the expert, on the held-out tasks."""
    from oec.collect import CollectConfig, collect
    from oec.shift.analyze import ShiftConfig, analyze

    bc = next((a.name for a in cfg.arms if a.kind == "bc"), None)
    if bc is None:
        return None, None
    size, seed = max(cfg.sizes), cfg.seeds[0]
    expert = root / "expert-heldout"
    collect(CollectConfig(tasks=str(root / "tasks/heldout.jsonl") if not cfg.suite.heldout_file
                          else cfg.suite.heldout_file, out=str(expert), expert=cfg.expert, workers=cfg.workers),
            progress=False)
    student = root / f"seed-{seed}/{bc}/size-{size}/eval"
    result = analyze({"expert": str(expert), bc: str(student)}, root / "shift", ShiftConfig(bootstrap=100),
                     progress=False)
    shutil.copyfile(root / "shift/fd.png", root / "shift.png")  # the report embeds top-level plots
    log(f"shift: {bc} student vs expert on held-out tasks -> {root / 'shift'}")
    return result["rows"], bc
