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
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from oec.core.atomic import atomic_output, check_output
from oec.core.errors import describe
from oec.core.metrics import summarize
from oec.core.stage import collected_all, guard_config, relative_paths
from oec.data.filter import FilterConfig, filter_run
from oec.experiments.step import Fitting, build_train_eval
from oec.rollout.collect import CollectConfig, collect
from oec.rollout.policies import check_local_options, local_spec
from oec.tasks.disjoint import check_disjoint
from oec.tasks.io import load_tasks, write_tasks
from oec.train.sft import check_trl

ROUNDS_CSV = "rounds.csv"
COLUMNS = ["round", "beta", "episodes", "labels", "kept", "examples", "trainable_tokens", "train_seconds",
           "resolve_rate", "ci_lo", "ci_hi", "expert_tokens", "expert_calls"]

# DAgger's targets are the expert's labels and the expert's own turns, never the student's actions. So an episode
# that failed, ran out of steps or repeated itself still carries useful labels: they are exactly the corrections at
# the states where the student goes wrong. The verifier gate and the degeneracy filters (which judge the *acting*
# policy's behaviour) are therefore off by default; only episodes that ended in an error (no usable states) go.
FILTER_DEFAULTS = {"require_resolved": False, "max_repeat_consecutive": None, "max_repeat_total": None,
                   "max_read_only_run": None, "max_format_errors": None, "reject_empty_patch": False,
                   "reject_step_limit": False}
# Collection fields that each round sets itself; giving them under `collect:` would silently fight the schedule.
OWNED = {"tasks", "out", "mode", "beta", "student", "expert", "samples", "workers", "seed"}


class DaggerConfig(BaseModel):
    """DAgger rounds on one task set, from one warm-start student."""

    model_config = ConfigDict(extra="forbid")
    tasks: str = Field(description="train tasks file; each round samples from it")
    heldout: str | None = Field(None, description="tasks file for the per-round greedy evaluation (none: no eval)")
    student: str = Field(description="model directory of the warm-start student")
    expert: str = Field("scripted:expert", description="expert policy spec")
    out: str = Field(description="directory of the rounds")
    rounds: int = Field(3, ge=1)
    beta: float = Field(1.0, ge=0, le=1, description="beta at round 0 (1: the first round is the expert alone, as in "
                        "classic DAgger, giving the aggregate a base of demonstrations)")
    schedule: Literal["linear", "exponential"] = Field(
        "linear", description="linear: beta*(1 - r/rounds); exponential: beta*decay**r")
    decay: float = Field(0.5, gt=0, le=1, description="exponential schedule: factor per round")
    episodes_per_round: int | None = Field(None, ge=1, description="train tasks sampled per round (seeded) [all]")
    samples: int = Field(1, ge=1, description="episodes per sampled task")
    workers: int = Field(4, ge=1, description="concurrent episodes")
    seed: int = 0
    student_temperature: float = Field(0.7, ge=0, description="the student's sampling temperature in rollouts")
    student_options: str | None = Field(None, description="more `local:` options for rollouts and eval alike, "
                                        "e.g. max_new_tokens=160")
    init_from: Literal["warm", "previous"] = Field(
        "warm", description="warm: every round trains the warm-start weights on the aggregate (DAgger; comparable "
        "with the other arms); previous: continue from the previous round's checkpoint")
    train: dict[str, Any] = Field(default_factory=dict, description="trl.SFTConfig overrides, e.g. max_steps")
    trained_tokens: int | None = Field(None, ge=1, description="token-matched: each round trains the steps that reach "
                                       "this many trained tokens on its aggregate, instead of train.max_steps")
    context_loss: float = Field(0.0, ge=0, description="`oec train` context_loss (auxiliary loss on the context)")
    filter: dict[str, Any] = Field(default_factory=dict, description="FilterConfig fields over the DAgger defaults")
    collect: dict[str, Any] = Field(default_factory=dict,
                                    description="other CollectConfig fields, e.g. loop.step_limit")

    # validated now, so that a typo fails before hours of rounds rather than at the first use
    @field_validator("collect")
    @classmethod
    def _check_collect(cls, v: dict) -> dict:
        owned = sorted(OWNED & set(v))
        if owned:
            raise ValueError(f"{owned} are set by each round; use the top-level keys (beta, samples, ...) instead")
        _sub(CollectConfig, {"tasks": "-", "out": "-", **v})
        return v

    @field_validator("student_options")
    @classmethod
    def _check_options(cls, v: str | None) -> str | None:
        return check_local_options(v)

    @field_validator("filter")
    @classmethod
    def _check_filter(cls, v: dict) -> dict:
        _sub(FilterConfig, {**FILTER_DEFAULTS, **v})
        return v

    def beta_at(self, r: int) -> float:
        """beta of round R: the probability that the expert acts at a turn."""
        if self.schedule == "linear":
            return self.beta * (1 - r / self.rounds)
        return self.beta * self.decay ** r


def _sub(model: type[BaseModel], data: dict) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ValueError(describe(e)) from None


def _took(seconds: float, ran: bool) -> str:
    return f"in {seconds:.0f} s" if ran else "(done before)"


def _check_config(out: Path, cfg: DaggerConfig) -> None:
    """A rerun must be the same rounds; `workers` only changes speed, and the rounds may have moved with OUT."""
    config = relative_paths(cfg.model_dump(exclude={"workers", "out"}), out, paths=("tasks", "heldout", "student"))
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
                      collect=cfg.collect, student_options=cfg.student_options, workers=cfg.workers, progress=progress)
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
            ccfg = _sub(CollectConfig, {
                **cfg.collect, "tasks": str(tasks_path), "out": str(run), "mode": "dagger", "beta": beta,
                "expert": cfg.expert, "student": local_spec(student, cfg.student_temperature, cfg.student_options),
                "samples": cfg.samples, "workers": cfg.workers, "seed": cfg.seed + r})
            result = collect(ccfg, progress=progress)
            if result["interrupted"]:
                raise KeyboardInterrupt
        spend = summarize(run)
        log(f"round {r}: collect: {spend['n']} episodes at beta {beta:.3f} from {student}, "
            f"{spend['labelled_steps']} labels {_took(time.monotonic() - t0, ran)}")
        collected.append(str(run))

        fsum = filter_run(run, _sub(FilterConfig, {**FILTER_DEFAULTS, **cfg.filter}))  # cheap: always
        log(f"round {r}: filter: kept {fsum['kept']} of {fsum['n']}")

        init = cfg.student if cfg.init_from == "warm" or r == 0 else str(out / f"round-{r - 1:03d}" / "ckpt")
        step = build_train_eval(rd, [Path(c) for c in collected], cfg.student, init, cfg.heldout, fitting,
                                seed=cfg.seed)
        stats, tinfo, took = step["built"], step["trained"], {k: _took(step["seconds"][k], ran)
                                                              for k, ran in step["ran"].items()}
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
