"""A decision-student stage's held-out episodes, for its learning-curve row (bench/RESULTS.md §16): every episode's
first error (oec.viewer.first_error) as CSV, the counts of its kinds and categories, and in how many episodes the
student grepped the exact name of the function the issue names and of the function that one calls.

    .venv/bin/python scripts/decision_stats.py runs/decision-student-2a results/decision-student-2/stage-a.csv
"""

from __future__ import annotations

import csv
import sys
from collections import Counter
from pathlib import Path

from oec.core.store import read_trajectories
from oec.tasks.io import load_tasks
from oec.viewer.first_error import first_error


def main(run: Path, out: Path) -> None:
    tasks = {t.task_id: t for t in load_tasks(run / "tasks/heldout.jsonl")}
    trajs = read_trajectories(run / "warm/eval")
    firsts = [first_error(t, tasks[t.task_id]).row() for t in trajs]
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task_id", "resolved", "exit_status", "kind", "category", "turn", "evidence"])
        for t, fe in zip(trajs, firsts):
            w.writerow([t.task_id, t.resolved, t.exit_status, fe.get("kind", "none"), fe.get("category", "none"),
                        fe.get("turn", ""), fe.get("evidence", "")])
    kinds, categories = Counter(f["kind"] for f in firsts), Counter(f["category"] for f in firsts)
    print(f"resolved {sum(t.resolved for t in trajs)}/{len(trajs)}; first errors {dict(kinds)} {dict(categories)}")
    greps = Counter()
    for t in trajs:
        chain = tasks[t.task_id].meta["chain"]
        commands = [s.action.command for s in t.steps if s.action and s.action.kind == "bash"]
        for role, fn in zip(("issue", "callee"), chain):
            greps[role] += any(f"def {fn}(" in c for c in commands)
    print(f"episodes that grep the issue's function / the callee: {greps['issue']} / {greps['callee']}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
