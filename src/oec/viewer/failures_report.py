"""The experiment report's failure section: one stacked bar per arm and size, the held-out episodes of that arm's
student split by failure category (failures.py), summed over seeds. Plain HTML and CSS (no script), like the report.

An experiment directory keeps each student's held-out run at warm/eval (the warm start), seed-S/ARM/size-N/eval,
and for DAgger seed-S/dagger/size-N/round-R/eval, of which the last round's is the arm's student (experiment.py).
"""

from __future__ import annotations

import re
import warnings
from collections import Counter, defaultdict
from html import escape
from pathlib import Path

from oec.viewer.failures import CATEGORIES, RESOLVED, classify_run
from oec.core.store import TRAJECTORIES
from oec.tasks.io import InputError

COLOURS = {RESOLVED: "#4caf50", "error": "#555555", "cancelled": "#bbbbbb", "format_errors": "#9c27b0",
           "repeated": "#e91e63", "edit_failed": "#ffc107", "never_edited": "#ff9800", "wrong_file": "#795548",
           "never_ran_tests": "#03a9f4", "submitted_failing": "#f44336", "step_limit_failing": "#3f51b5"}
CSS = """
.bars{margin:.5em 0 1.5em}.bar-row{display:grid;grid-template-columns:170px 1fr 60px;gap:.5em;align-items:center;
margin:2px 0}.bar{display:flex;height:18px;border:1px solid #ccc}.bar span{display:block;height:100%}
.swatch{display:inline-block;width:12px;height:12px;margin:0 4px 0 10px;vertical-align:middle}
"""


def eval_runs(root: Path) -> dict[tuple[str, str], list[Path]]:
    """(arm, size) -> the held-out runs of that arm's students (one per seed)."""
    out: dict[tuple[str, str], list[Path]] = defaultdict(list)
    if (root / "warm/eval" / TRAJECTORIES).exists():
        out[("warm_start", "0")].append(root / "warm/eval")
    for ev in sorted(root.glob(f"seed-*/*/size-*/eval/{TRAJECTORIES}")):
        arm, size = ev.parts[-4], ev.parts[-3].removeprefix("size-")
        out[(arm, size)].append(ev.parent)
    for size_dir in sorted(root.glob("seed-*/*/size-*")):
        rounds = [p for p in size_dir.glob(f"round-*/eval/{TRAJECTORIES}")]
        if rounds:  # numerically: round-10 comes after round-9
            last = max(rounds, key=lambda p: int(re.sub(r"\D", "", p.parts[-3]) or 0))
            out[(size_dir.parent.name, size_dir.name.removeprefix("size-"))].append(last.parent)
    return dict(out)


def category_counts(root: Path) -> dict[tuple[str, str], Counter]:
    counts = {}
    for key, runs in eval_runs(Path(root)).items():
        c = Counter()
        for run in runs:
            try:
                c.update(r["category"] for r in classify_run(run))
            except InputError as e:  # an empty run (an interrupted experiment): shown as missing, not fatal
                warnings.warn(f"report: {e}", stacklevel=2)
        if c:
            counts[key] = c
    return counts


def section(root: str | Path) -> str:
    """The HTML of the failure section (a note when the directory holds no held-out run)."""
    counts = category_counts(Path(root))
    if not counts:
        return '<p class="missing">No held-out runs (seed-*/ARM/size-N/eval) below this directory.</p>'
    order = [RESOLVED, *CATEGORIES]
    rows = []
    for (arm, size), c in counts.items():
        n = sum(c.values())
        spans = "".join(f'<span class="cat-{cat}" style="width:{100 * c[cat] / n:.2f}%;background:{COLOURS[cat]}" '
                        f'title="{cat}: {c[cat]} of {n}"></span>' for cat in order if c[cat])
        rows.append(f'<div class="bar-row"><div class="text">{escape(arm)} · size {escape(size)}</div>'
                    f'<div class="bar" data-arm="{escape(arm)}">{spans}</div><div>{n} ep.</div></div>')
    used = [cat for cat in order if any(c[cat] for c in counts.values())]
    legend = "".join(f'<span class="swatch" style="background:{COLOURS[cat]}"></span>{cat}' for cat in used)
    return (f"<p>Held-out episodes of each arm's student by failure category (rules in "
            f"<code>oec.viewer.failures</code>; summed over seeds; hover a segment for its count).</p>"
            f'<div class="bars">{"".join(rows)}</div><p>{legend}</p>')
