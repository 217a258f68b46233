"""Pair one arm with others taken from different runs' outcomes.csv files, on the same held-out tasks and seeds, with
oec's own claim comparison (oec.experiments.claims.compare: paired effect, interval, detectable effect, McNemar).
For an arm run in its own directory after the others (results/claims-easy/c8-steps/):

    .venv/bin/python scripts/pair_outcomes.py results/claims-easy/c8-steps/paired.csv --seeds 0 \
        dagger_150=results/claims-easy/c8-steps/outcomes.csv:dagger \
        on_policy=results/claims-easy/outcomes.csv:on_policy ...   (the whole command: results/claims-easy/run.json)

The first NAME=OUTCOMES:ARM is compared with each of the others, its verdict that of the claim "the first arm beats
this one"; give arms evaluated on the same held-out tasks.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from oec.core.atomic import atomic_output
from oec.experiments.claims import Evidence, compare

COLUMNS = ["arm", "other", "effect", "lo", "hi", "detectable", "verdict", "detail"]


def rows_of(spec: str, seeds: set[str]) -> tuple[str, list[dict]]:
    name, _, where = spec.partition("=")
    path, _, arm = where.rpartition(":")
    if not (name and path and arm):
        raise SystemExit(f"{spec}: expected NAME=OUTCOMES.csv:ARM")
    with open(path, newline="") as f:
        rows = [{**r, "arm": name} for r in csv.DictReader(f) if r["arm"] == arm and r["seed"] in seeds]
    if not rows:
        raise SystemExit(f"{spec}: no outcomes of arm {arm!r} at seeds {sorted(seeds)} in {path}")
    return name, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--seeds", default="0", help="comma-separated seeds [0]")
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("arms", nargs="+", metavar="NAME=OUTCOMES:ARM")
    args = ap.parse_args()
    seeds = set(args.seeds.split(","))
    named = [rows_of(s, seeds) for s in args.arms]
    ev = Evidence([r for _, rows in named for r in rows], [])
    first = named[0][0]
    out = []
    for other, _ in named[1:]:  # read as C8: "the first arm beats this one"
        r = compare(ev, "C8", args.size, first, other, (first, other))
        out.append({"arm": first, "other": other, **{k: r.get(k, "") for k in COLUMNS[2:]}})
        print(f"{first} vs {other}: {r['verdict']}; {r['detail']}")
    with atomic_output(args.out) as tmp, tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(out)


if __name__ == "__main__":
    main()
