"""The step that ends every experiment arm and every DAgger round: build a dataset from runs, train a student on it,
evaluate the student greedily on held-out tasks. Each stage is skipped when its output is complete (oec.core.stage),
so a rerun resumes inside the step too."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oec.core.config import load_config, merge
from oec.data.build import BuildConfig, build
from oec.rollout.collect import CollectConfig, collect
from oec.rollout.policies import local_spec
from oec.train.sft import TrainConfig, matched_steps, train


@dataclass(frozen=True)
class Fitting:
    """What every build -> train -> eval of one experiment shares (its config's values)."""

    trl: dict[str, Any] = field(default_factory=dict)  # SFTConfig overrides
    context_loss: float = 0.0
    trained_tokens: int | None = None  # token-matched: train the steps that reach this many trained tokens
    collect: dict[str, Any] = field(default_factory=dict)  # CollectConfig fields of the evaluation
    student_options: str | None = None  # `local:` options of the evaluated student
    workers: int = 4
    progress: bool = False


def build_train_eval(where: Path, runs: list[Path], tokenizer: Path | str, init: Path | str, heldout: Path | str | None,
                     fitting: Fitting, *, mask: str = "expert", size: int | None = None, seed: int = 0) -> dict:
    """WHERE/data from RUNS (SIZE trajectories, MASK; TOKENIZER's), WHERE/ckpt trained from INIT, WHERE/eval on
    HELDOUT (None: no evaluation). Returns the build's stats, the training's record, the evaluation's run directory
    (or None) and each stage's seconds with whether it ran or was complete before."""
    data, ckpt, ev = where / "data", where / "ckpt", where / "eval"
    t0 = time.monotonic()
    built = build(BuildConfig(runs=[str(r) for r in runs], out=str(data), student=str(tokenizer), mask=mask,
                              max_trajectories=size, seed=seed))
    t1 = time.monotonic()
    trl = fitting.trl
    if fitting.trained_tokens:
        trl = {**trl, "max_steps": matched_steps(data, trl, fitting.trained_tokens)}
    trained = train(TrainConfig(data=str(data), model=str(init), out=str(ckpt), seed=seed, trl=trl,
                                context_loss=fitting.context_loss), progress=fitting.progress)
    t2 = time.monotonic()
    if not trained.get("reused"):
        set_aside_evaluations(where)
    evaluated, written = None, 0
    if heldout is not None:
        cfg = load_config(CollectConfig, None, merge(fitting.collect, {
            "tasks": str(heldout), "out": str(ev), "mode": "student", "workers": fitting.workers, "seed": seed,
            "student": local_spec(ckpt, 0, fitting.student_options)}))
        result = collect(cfg, progress=fitting.progress)
        if result["interrupted"]:
            raise KeyboardInterrupt
        evaluated, written = ev, result["written"]
    t3 = time.monotonic()
    return {"built": built["stats"], "trained": trained, "eval": evaluated,
            "ran": {"build": not built.get("reused"), "train": not trained.get("reused"), "eval": written > 0},
            "seconds": {"build": t1 - t0, "train": t2 - t1, "eval": t3 - t2}}


def set_aside_evaluations(where: Path) -> list[Path]:
    """Move WHERE's evaluations (eval, eval-VIEW) into WHERE/stale-N/ when its checkpoint was trained again: an
    evaluation resumes by episode, so without this the new student would inherit the old one's episodes. Moved, not
    deleted (they are the user's results of the checkpoint that was replaced). Returns where they went."""
    old = sorted(p for p in where.glob("eval*") if p.is_dir())
    if not old:
        return []
    n = 0
    while (where / f"stale-{n}").exists():
        n += 1
    (where / f"stale-{n}").mkdir()
    return [p.rename(where / f"stale-{n}" / p.name) for p in old]
