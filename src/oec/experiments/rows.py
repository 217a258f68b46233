"""What finished stages contribute to an experiment's tables: an evaluation's row, the expert's spend, the pools'
kept counts and what their OEC trajectories contain; and the one way to remove an experiment (`--fresh`)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from oec.core.atomic import atomic_output
from oec.core.errors import InputError
from oec.core.shell_facts import is_read_only
from oec.core.store import read_trajectories
from oec.data.filter import FILTER_LINES, kept_keys, read_verdicts
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


RESTORES = ("git checkout", "git restore", "git stash", "rm ")


def oec_contents(run: Path) -> dict:
    """What the kept OEC trajectories of RUN contain (OEC has something to teach only where the expert corrects
    a student mistake: docs/method.md). `student_erred`: the student's part has a format error or a failed command (the
    test runs, which fail by design until the fix, not counted); `student_changed_files`: it ran a command that
    writes; `expert_restored`: after the switch the expert put files back (git checkout/restore/stash, rm);
    `corrected`: erred or restored."""
    keep = kept_keys(run)
    trajs = [t for t in read_trajectories(run) if (t.resolved if keep is None else t.key in keep)]
    counts = dict.fromkeys(("student_erred", "student_changed_files", "expert_restored", "corrected"), 0)
    for t in trajs:
        student = [s for s in t.steps if s.actor == "student"]
        expert_cmds = [s.action.command for s in t.steps if s.actor == "expert" and s.action and s.action.command]
        cmds = [s.action.command for s in student if s.action and s.action.command]
        erred = any(s.format_error or (s.returncode not in (0, None) and s.action and s.action.command
                                       and not s.action.command.startswith("runtests")) for s in student)
        restored = any(c.startswith(RESTORES) for c in expert_cmds)
        for key, hit in (("student_erred", erred), ("student_changed_files", any(not is_read_only(c) for c in cmds)),
                         ("expert_restored", restored), ("corrected", erred or restored)):
            counts[key] += hit
    return {"kept": len(trajs), **{k: round(v / max(1, len(trajs)), 3) for k, v in counts.items()}}


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
