"""What finished stages contribute to an experiment's tables: an evaluation's row, the expert's spend, the pools'
kept counts and what their OEC trajectories contain; and the one way to remove an experiment (`--fresh`)."""

from __future__ import annotations

import csv
import json
import re
import shutil
from collections import Counter
from pathlib import Path

from oec.core.atomic import atomic_output
from oec.core.errors import InputError
from oec.core.metrics import summarize
from oec.data.filter import FILTER_LINES, read_verdicts
from oec.viewer.failures import classify_run

# What `oec experiment` writes at the top of its directory (and the hidden partial names of those being written).
EXPERIMENT_ENTRIES = re.compile(r"^\.?(experiment\.json|calibration\.json|run\.json|\w+\.csv|report\.html|\w+\.png|"
                                r"shift|student0|warm|tasks|expert-heldout|seed-\d+)(\.partial)?$")


def remove_experiment(root: Path, config_fields: set[str]) -> None:
    """`--fresh`: delete ROOT, but only if oec made it: its experiment.json is a saved experiment config (a JSON
    object with exactly CONFIG_FIELDS as keys) and nothing in it but what an experiment writes. A directory of the
    user's own, or an experiment one the user added files to, is refused, and nothing is deleted."""
    if not root.exists():
        return
    if not root.is_dir():
        raise InputError(f"--out {root}: is a file, not a directory; give a directory path")
    if not any(root.iterdir()):
        root.rmdir()
        return
    refuse = f"--out {root}: --fresh deletes only an experiment directory that oec made, and "
    try:
        saved = json.loads((root / "experiment.json").read_text())
    except (OSError, ValueError):
        saved = None
    if not isinstance(saved, dict) or set(saved) != config_fields:
        raise InputError(refuse + "its experiment.json is missing or is not an experiment config oec saved; give "
                         "another --out, or remove the directory yourself")
    foreign = sorted(p.name for p in root.iterdir() if not EXPERIMENT_ENTRIES.match(p.name))
    if foreign:
        raise InputError(refuse + f"it holds files an experiment does not write ({', '.join(foreign[:5])}); move "
                         "them out, give another --out, or remove the directory yourself")
    shutil.rmtree(root)


def eval_row(run: Path) -> dict:
    s = summarize(run)
    # what the failed episodes' first errors were: slips (mis-copied names) or decisions (where to look, what to edit)
    firsts = Counter((r.get("first_error") or {}).get("kind") for r in classify_run(run))
    return {"resolve_rate": s["resolve_rate"], "ci_lo": s["resolve_rate_ci95"][0], "ci_hi": s["resolve_rate_ci95"][1],
            "n": s["n"], "resolved": s["resolved"], "mean_turns": round(s["mean_steps"], 2),
            # resolved / submitted: how often a submit is right (OEC data raises it: bench/RESULTS.md §9)
            "submitted": s["by_exit_status"].get("submitted", 0), "slips": firsts["slip"],
            "decisions": firsts["decision"]}


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
