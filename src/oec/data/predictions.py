"""`oec predictions`: a run as a SWE-bench predictions file, for the official harness (or a leaderboard).

One prediction per task: `instance_id`, `model_name_or_path`, `model_patch` (the field names are read from the
installed swebench where it is, so they follow its releases). The patch is the task's latest attempt's *verified*
patch (`verdict.patch`): the change oec tested, with test files and configuration already left out, so the
harness grades what oec graded.
"""

from __future__ import annotations

import json
from pathlib import Path

from oec.core.atomic import write_text
from oec.core.errors import InputError
from oec.core.store import read_trajectories


def _keys() -> tuple[str, str, str]:
    try:
        from swebench.harness.constants import KEY_INSTANCE_ID, KEY_MODEL, KEY_PREDICTION
    except ImportError:  # the names SWE-bench has used since its first harness
        return "instance_id", "model_name_or_path", "model_patch"
    return KEY_INSTANCE_ID, KEY_MODEL, KEY_PREDICTION


def predictions(run: str | Path, model_name: str | None = None) -> list[dict]:
    """RUN's predictions; MODEL_NAME defaults to the run's student policy (its spec), else its expert's."""
    run = Path(run)
    trajs = read_trajectories(run)
    if not trajs:
        raise InputError(f"{run}: no trajectories; give a run directory written by `oec collect` or `oec eval`")
    if model_name is None:
        policies = trajs[-1].policies
        model_name = policies.get("student") or policies.get("expert") or "oec"
    iid, model, patch = _keys()
    latest = {t.task_id: t for t in trajs}  # the last attempt of each task, in file order
    return [{iid: task_id, model: model_name, patch: t.verdict.patch if t.verdict else ""}
            for task_id, t in latest.items()]


def write_predictions(run: str | Path, out: str | Path, model_name: str | None = None) -> Path:
    """Write RUN's predictions to OUT as JSONL (one object per line), atomically."""
    out = Path(out)
    if out.suffix not in (".jsonl", ".json"):
        raise InputError(f"--out {out}: SWE-bench reads predictions from a .jsonl (or .json) file; name it so")
    rows = predictions(run, model_name)
    text = json.dumps(rows, indent=1) + "\n" if out.suffix == ".json" else "".join(json.dumps(r) + "\n" for r in rows)
    return write_text(out, text)
