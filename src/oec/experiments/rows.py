"""What finished stages contribute to an experiment's tables: an evaluation's row, the expert's spend, the pools'
kept counts and what their OEC trajectories contain; and the one way to remove an experiment (`--fresh`)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from oec.core.atomic import atomic_output
from oec.core.errors import InputError
from oec.data.filter import FILTER_LINES, read_verdicts
from oec.viewer.show import summarize


def remove_experiment(root: Path) -> None:
    """`--fresh`: delete ROOT, but only if it is an experiment directory that oec made (it has experiment.json):
    never a directory of the user's own that happens to be named as the output."""
    if not root.exists():
        return
    if not root.is_dir():
        raise InputError(f"--out {root}: is a file, not a directory; give a directory path")
    if any(root.iterdir()) and not (root / "experiment.json").is_file():
        raise InputError(f"--out {root}: --fresh deletes only an experiment directory that oec made (one with "
                         "experiment.json), and this one holds other files; give another --out, or remove it yourself")
    shutil.rmtree(root)


def eval_row(run: Path) -> dict:
    s = summarize(run)
    return {"resolve_rate": s["resolve_rate"], "ci_lo": s["resolve_rate_ci95"][0], "ci_hi": s["resolve_rate_ci95"][1],
            "n": s["n"], "resolved": s["resolved"], "mean_turns": round(s["mean_steps"], 2),
            # resolved / submitted: how often a submit is right (OEC data raises it: bench/RESULTS.md §9)
            "submitted": s["by_exit_status"].get("submitted", 0)}


def expert_tokens(run: Path) -> int:
    t = summarize(run)["tokens"]["expert"]
    return t["prompt_tokens"] + t["completion_tokens"]


def kept_count(run: Path) -> int:
    verdicts = run / FILTER_LINES
    if not verdicts.exists():
        return summarize(run)["resolved"]
    return sum(r["kept"] for r in read_verdicts(verdicts))


def write_csv(path: Path, rows: list[dict], columns: list[str]) -> None:
    with atomic_output(path) as tmp, tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
