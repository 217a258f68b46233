"""`oec dagger`: rounds of turn-level DAgger, each one collect -> filter -> build (aggregate) -> train -> eval.

Round r rolls out the current student on a seeded sample of the train tasks; at each turn the expert acts with
probability beta_r, and at every state where the student acted the expert's action is recorded as the label. The data
of *all* rounds so far is rebuilt into one dataset (mask `expert`: the labels and the expert-acted turns are the
targets) and the student is trained on it, by default from the warm-start weights again, which is the DAgger
formulation (one policy fitted to the aggregate) and keeps rounds comparable with the other arms, which also start from
the warm-start student. beta is annealed so that later rounds visit the states the student itself reaches.

Layout: OUT/dagger.json (the config), OUT/round-000/{tasks.jsonl, collect/, data/, ckpt/, eval/}, ..., OUT/rounds.csv
(one row per finished round). A rerun resumes: each stage is skipped when its output is complete.
"""

from __future__ import annotations

import csv
import random
import time
from pathlib import Path
from typing import Callable

from oec.core.atomic import atomic_output, check_output
from oec.core.config import given, load_config
from oec.core.metrics import summarize
from oec.core.stage import collected_all, guard_config, relative_paths
from oec.data.filter import filter_run
from oec.experiments.config import DaggerConfig  # noqa: F401 (its config, importable from here)
from oec.experiments.step import Fitting, build_train_eval
from oec.rollout.collect import CollectConfig, collect
from oec.rollout.policies import local_spec
from oec.tasks.disjoint import check_disjoint
from oec.tasks.io import load_tasks, write_tasks
from oec.train.sft import check_trl

ROUNDS_CSV = "rounds.csv"
COLUMNS = ["round", "beta", "episodes", "labels", "kept", "examples", "trainable_tokens", "train_seconds",
           "resolve_rate", "ci_lo", "ci_hi", "expert_tokens", "expert_calls"]

def _took(seconds: float, ran: bool) -> str:
    return f"in {seconds:.0f} s" if ran else "(done before)"


def _check_config(out: Path, cfg: DaggerConfig) -> None:
    """A rerun must be the same rounds; `workers` only changes speed, `eval_rounds` only which rounds are evaluated,
    and the rounds may have moved with OUT."""
    config = relative_paths(cfg.model_dump(exclude={"workers", "out", "eval_rounds"}), out,
                            paths=("tasks", "heldout", "student"))
    guard_config(out / "dagger.json", config, what="set of rounds",
                 fix="use a new out, or the same config to resume")


def run_dagger(cfg: DaggerConfig, progress: bool = True, log: Callable[[str], None] = print) -> list[dict]:
    """Run (or resume) every round; return the rows of rounds.csv."""
    out = check_output(cfg.out, "dir", "out")
    train_tasks = load_tasks(cfg.tasks)
    heldout = load_tasks(cfg.heldout) if cfg.heldout else []
    # no leakage: the rounds' tasks and the held-out ones share none, and none is one the student trained on
    check_disjoint({"train": train_tasks, **({"held-out": heldout} if heldout else {})}, cfg.student)
    check_trl(cfg.train, "train")  # after the cheap refusals: importing trl takes ~9 s
    _check_config(out, cfg)
    fitting = Fitting(trl=cfg.train, context_loss=cfg.context_loss, trained_tokens=cfg.trained_tokens,
                      collect=given(cfg.collect), student_options=cfg.student_options, workers=cfg.workers,
                      progress=progress)
    rows: list[dict] = []
    collected: list[str] = []
    expert_tokens = expert_calls = 0
    for r in range(cfg.rounds):
        rd = out / f"round-{r:03d}"
        beta = cfg.beta_at(r)
        student = cfg.student if r == 0 else str(out / f"round-{r - 1:03d}" / "ckpt")
        k = min(cfg.episodes_per_round or len(train_tasks), len(train_tasks))
        picked = random.Random(f"{cfg.seed}:{r}").sample(train_tasks, k)
        tasks_path = write_tasks(picked, rd / "tasks.jsonl")  # same seed, same tasks: rewriting it is harmless

        run = rd / "collect"
        n = k * cfg.samples
        t0, ran = time.monotonic(), not collected_all(run, n)
        if ran:
            ccfg = load_config(CollectConfig, None, {
                **given(cfg.collect), "tasks": str(tasks_path), "out": str(run), "mode": "dagger", "beta": beta,
                "expert": cfg.expert, "student": local_spec(student, cfg.student_temperature, cfg.student_options),
                "samples": cfg.samples, "workers": cfg.workers, "seed": cfg.seed + r})
            result = collect(ccfg, progress=progress)
            if result["interrupted"]:
                raise KeyboardInterrupt
        spend = summarize(run)
        log(f"round {r}: collect: {spend['n']} episodes at beta {beta:.3f} from {student}, "
            f"{spend['labelled_steps']} labels {_took(time.monotonic() - t0, ran)}")
        collected.append(str(run))

        fsum = filter_run(run, cfg.filters())  # cheap: always
        log(f"round {r}: filter: kept {fsum['kept']} of {fsum['n']}")

        init = cfg.student if cfg.init_from == "warm" or r == 0 else str(out / f"round-{r - 1:03d}" / "ckpt")
        heldout = cfg.heldout if cfg.eval_rounds == "every" or r == cfg.rounds - 1 else None
        step = build_train_eval(rd, [Path(c) for c in collected], cfg.student, init, heldout, fitting, seed=cfg.seed)
        stats, tinfo = step["built"], step["trained"]
        took = {stage: _took(step["seconds"][stage], did) for stage, did in step["ran"].items()}
        log(f"round {r}: build: {stats['examples']} examples ({stats['trainable_tokens']} trainable tokens) from "
            f"{stats['trajectories']} trajectories of rounds 0-{r} {took['build']}")
        log(f"round {r}: train: {tinfo['steps']} steps from {init} -> {rd / 'ckpt'} {took['train']}")
        ev = None
        if step["eval"]:
            ev = summarize(step["eval"])
            lo, hi = ev["resolve_rate_ci95"]
            log(f"round {r}: eval: resolved {ev['resolved']}/{ev['n']} = {ev['resolve_rate']:.1%} "
                f"(95% CI {lo:.1%}-{hi:.1%}) {took['eval']}")

        expert_tokens += spend["tokens"]["expert"]["prompt_tokens"] + spend["tokens"]["expert"]["completion_tokens"]
        expert_calls += spend["tokens"]["expert"]["calls"]  # scripted experts spend no tokens; calls still count
        rows.append({"round": r, "beta": round(beta, 6), "episodes": spend["n"], "labels": spend["labelled_steps"],
                     "kept": fsum["kept"], "examples": stats["examples"], "trainable_tokens": stats["trainable_tokens"],
                     "train_seconds": round(tinfo["seconds"] or 0.0, 2),
                     "resolve_rate": ev["resolve_rate"] if ev else "",
                     "ci_lo": ev["resolve_rate_ci95"][0] if ev else "",
                     "ci_hi": ev["resolve_rate_ci95"][1] if ev else "",
                     "expert_tokens": expert_tokens, "expert_calls": expert_calls})
        with atomic_output(out / ROUNDS_CSV) as tmp, tmp.open("w", newline="") as f:  # a rerun recomputes every row
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows(rows)
    return rows
