"""`oec experiment CONFIG`: the paper's comparison in one resumable command.

One YAML file names the tasks, the student, the expert, the budget and the arms. Every stage is an earlier command's
function (tasks generate, student init, collect, filter, build, train, eval, dagger, shift), writing under
`runs/<name>/`; a stage whose output is complete is skipped, so a rerun resumes.

    tasks/{train,heldout,warm}.jsonl           the suite (the toy generator, or files): disjoint seeds, checked
                                               disjoint by content before any work (oec.experiments.task_sets)
    student0/                                  the untrained student (`oec student init`)
    warm/{bc,data,ckpt,eval}                   the warm-start: BC on a small seed set; every arm starts from it
    seed-S/pools/{bc,student,oec-uniform,...}  data pools, one collection per kind, filtered
    seed-S/ARM/size-N/{data,ckpt,eval}         per arm and size: the dataset, the trained student, its held-out run
    seed-S/dagger/size-N/round-R/...           DAgger rounds (see `oec dagger`)
    results.csv, outcomes.csv                  one row per evaluation (its columns are a contract); per held-out task
    claims.csv, report.html                    the paired claims (experiments/claims.py, docs/statistics.md), report

Rigour: every arm trains from the same warm-start weights with the same `train` settings (the same number of steps,
or with `trained_tokens` the steps that reach the same number of trained tokens), on datasets of the same number of
trajectories, and is evaluated greedily on the same held-out tasks.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Callable

from oec.core.atomic import check_output, write_text
from oec.core.config import given, load_config, merge
from oec.core.errors import InputError
from oec.core.stage import TRAIN_INFO, completed, guard_config, load_info
from oec.data.filter import FilterConfig, filter_run
from oec.experiments.config import ArmConfig, ExperimentConfig, SuiteConfig, WarmConfig, view_names  # noqa: F401
from oec.experiments.mechanism import describe as describe_check
from oec.experiments.mechanism import pool_check
from oec.experiments.rows import eval_row, expert_tokens, kept_count, write_csv
from oec.experiments.stats import OUTCOME_COLUMNS, outcome_rows
from oec.experiments.step import Fitting, build_train_eval
from oec.experiments.task_sets import TaskSets, warm_seed
from oec.rollout.collect import CollectConfig, collect
from oec.rollout.policies import local_spec
from oec.tasks.disjoint import TRAINED_TASKS, write_trained_on
from oec.tasks.io import load_tasks, write_tasks
from oec.tasks.toy import toy_config
from oec.train.sft import check_trl
from oec.train.student import STUDENT_INFO, StudentConfig, init_student

NO_REPETITION_FILTERS = {"max_repeat_consecutive": None, "max_repeat_total": None, "max_read_only_run": None}
RESULT_COLUMNS = ["arm", "size", "seed", "resolve_rate", "ci_lo", "ci_hi", "expert_tokens", "n", "resolved",
                  "submitted", "mean_turns", "trajectories", "kept", "examples", "trained_tokens", "train_seconds",
                  "note", "slips", "decisions"]


# arms: new ones only (checked by name); the rechecks only add evaluations of the students there are; `name` only
# picks the default directory (runs/NAME), so a run directory renamed, or resumed through `out`, is the same experiment
MAY_CHANGE = {"name", "seeds", "sizes", "arms", "workers", "shift", "claims_size", "recheck_step_limit",
              "unseen_heldout", "recheck_arms"}


class Experiment:
    def __init__(self, cfg: ExperimentConfig, log: Callable[[str], None] = print):
        self.cfg, self.log = cfg, log
        self.root = check_output(cfg.out or f"runs/{cfg.name}", "dir", "out")
        names = [a.name for a in cfg.arms]
        if len(set(names)) != len(names):
            raise InputError(f"arms: names repeat ({names}); give each arm its own name")
        for key, path in (("student_model", cfg.student_model), ("suite.train_file", cfg.suite.train_file),
                          ("suite.heldout_file", cfg.suite.heldout_file)):
            if path and not Path(path).exists():
                raise InputError(f"{key}: {path} does not exist (paths are relative to the working directory)")
        self.sets = TaskSets(cfg, self.root)
        self.sets.check()  # the cheap refusals first: importing trl below takes ~9 s
        check_trl(cfg.train, "train")  # before hours of collection, not at the first training
        check_trl({**cfg.train, **cfg.warm_start.train}, "warm_start.train")

    def spec(self, model: Path, temperature: float) -> str:
        return local_spec(model, temperature, self.cfg.student_options)

    def check_config(self) -> None:
        """A rerun resumes by skipping every stage whose output exists, so it must be the same experiment: a changed
        `train` or suite would silently mix old and new students in one table. It may grow (more seeds, sizes or arms)
        and change what only affects speed or extras; then the config is (re)written."""

        def differs(old: dict, mine: dict) -> list[str]:
            old = old.get("config", {})
            if isinstance(old.get("suite"), dict):  # written before suite.preset existed: it had none
                old["suite"].setdefault("preset", None)
            # a key missing from an older experiment.json is a field added since, at its default; `out` is where the
            # experiment is now, which may be another place than where it ran (moved or copied: it resumes)
            diff = sorted(k for k in old if k not in MAY_CHANGE | {"out"} and old[k] != mine.get(k))
            arms = {a["name"]: a for a in old.get("arms", [])}
            return diff + [f"arms[{a['name']}]" for a in mine["arms"] if arms.get(a["name"], a) != a]

        guard_config(self.root / "experiment.json", self.cfg.model_dump(), what="experiment", differs=differs,
                     fix=f"use another name or out (`oec demo --fresh` starts the demo over), or the same values to "
                         f"resume ({', '.join(sorted(MAY_CHANGE))} may change; arms may be added)")

    # ---- shared stages ------------------------------------------------------------------------------------------
    def student0(self, train_tasks: Path) -> Path:
        if self.cfg.student_model:
            return Path(self.cfg.student_model)
        out = self.root / "student0"
        if completed(out, STUDENT_INFO) is None:
            init_student(load_tasks(train_tasks), out, StudentConfig(**self.cfg.student))
            self.log(f"student: initialised {out}")
        return out

    def collect(self, out: Path, tasks: Path, **fields) -> Path:
        cfg = load_config(CollectConfig, None, merge(given(self.cfg.collect), {
            "tasks": str(tasks), "out": str(out), "workers": self.cfg.workers, **fields}))
        t0 = time.perf_counter()
        result = collect(cfg, progress=False)
        if result["written"]:
            self.log(f"collect {out.relative_to(self.root)}: {result['written']} episodes in "
                     f"{time.perf_counter() - t0:.0f} s")
        return out

    def train_eval(self, where: Path, runs: list[Path], model: Path, heldout: Path, size: int | None, seed: int,
                   mask: str = "expert", filters: dict | None = None, trl: dict | None = None) -> dict:
        """Build SIZE trajectories from RUNS, train from MODEL, evaluate on HELDOUT; each step skipped when done.
        The row's `eval` is the evaluation's run directory (absent when nothing was trained: no outcomes of its own)."""
        for run in runs:  # the pool's verdicts under this arm's filter settings, written beside it
            filter_run(run, FilterConfig(**(filters or {})))
        kept = sum(kept_count(r) for r in runs)
        if kept == 0 and where == self.root / "warm":
            raise InputError(f"{runs[0]}: the expert resolved none of the warm-start tasks, so there is no student "
                             "to start from; check the expert and collect.loop.step_limit")
        if kept == 0:  # e.g. an on-policy pool with no resolved episode: there is nothing to train on
            return {"trajectories": 0, "kept": 0, "examples": 0, "trained_tokens": 0, "train_seconds": 0,
                    **eval_row(self.root / "warm/eval"),
                    "note": "no kept trajectories: this arm's student is the warm-start student (claims: not measured)"}
        note = f"only {kept} kept trajectories (asked for {size})" if size and kept < size else ""
        fitting = Fitting(trl=self.cfg.train if trl is None else trl, context_loss=self.cfg.context_loss,
                          trained_tokens=None if where == self.root / "warm" else self.cfg.trained_tokens,
                          collect=given(self.cfg.collect), student_options=self.cfg.student_options,
                          workers=self.cfg.workers)
        step = build_train_eval(where, runs, model, model, heldout, fitting, mask=mask,
                                size=min(size, kept) if size else None, seed=seed)
        if step["ran"]["eval"]:
            self.log(f"eval {step['eval'].relative_to(self.root)}: {step['seconds']['eval']:.0f} s")
        built, trained = step["built"], step["trained"]
        return {"trajectories": built["trajectories"], "kept": kept, "examples": built["examples"],
                "trained_tokens": trained.get("trained_tokens", ""), "train_seconds": trained["seconds"],
                **eval_row(step["eval"]), "eval": step["eval"], "model": where / "ckpt", "note": note}

    def warm(self, warm_tasks: Path | None, heldout: Path, student0: Path) -> Path:
        w = self.root / "warm"
        if self.cfg.warm_start.trajectories == 0:  # given: only its held-out row is needed
            if not self.cfg.student_model:
                raise InputError("warm_start.trajectories=0 means `student_model` is the warm start; set student_model")
            self.collect(w / "eval", heldout, mode="student", student=self.spec(student0, 0), seed=0)
            return student0
        tasks = load_tasks(warm_tasks)[: self.cfg.warm_start.trajectories]
        seed_tasks = w / "tasks.jsonl"
        if not seed_tasks.exists():  # written whole or not at all, as every tasks file
            write_tasks(tasks, seed_tasks)
        bc = self.collect(w / "bc", seed_tasks, mode="expert", expert=self.cfg.expert)
        row = self.train_eval(w, [bc], student0, heldout, None, 0, trl={**self.cfg.train, **self.cfg.warm_start.train})
        if not (w / "ckpt" / TRAINED_TASKS).exists():  # so that a later experiment from it can check its tasks
            s, trained = self.cfg.suite, load_tasks(seed_tasks)
            source = {"file": str(warm_tasks), "split": "train", "n": len(trained)} if s.warm_file else \
                {"suite": "toy", "split": "train", "seed": warm_seed(s), "n": len(trained),
                 "preset": s.preset, "knobs": toy_config(s.preset, **s.knobs).model_dump()}
            write_trained_on(w / "ckpt", trained, source, self.cfg.student_model)
        self.log(f"warm-start: {row['resolve_rate']:.1%} held-out")
        return w / "ckpt"

    # ---- arms ---------------------------------------------------------------------------------------------------
    def pool(self, seed: int, kind: str, warm: Path, train_tasks: Path, switch: str = "uniform") -> Path:
        student = self.spec(warm, self.cfg.student_temperature)
        base = self.root / f"seed-{seed}/pools"
        common = {"samples": self.cfg.pool_samples, "seed": seed}
        if kind == "bc":  # one demonstration per task: a second sample of a deterministic expert is a duplicate
            return self.collect(base / "bc", train_tasks, mode="expert", expert=self.cfg.expert, seed=seed)
        if kind == "student":
            return self.collect(base / "student", train_tasks, mode="student", student=student, **common)
        name = "oec-" + switch.replace(":", "-").replace(",", "-")
        if switch == "trigger":
            switch = f"trigger:{self.trigger(seed, warm, train_tasks)}"
        return self.collect(base / name, train_tasks, mode="oec", student=student, expert=self.cfg.expert,
                            switch=switch, **common)

    def trigger(self, seed: int, warm: Path, train_tasks: Path) -> Path:
        """The divergence trigger's reference: Gaussians of the expert pool's states per turn (`oec shift`)."""
        from oec.shift.analyze import analyze
        from oec.shift.config import ShiftConfig

        out = self.root / f"seed-{seed}/trigger"
        if not (out / "trigger.json").exists():
            pops = {"expert": str(self.pool(seed, "bc", warm, train_tasks)),
                    "student": str(self.pool(seed, "student", warm, train_tasks))}
            analyze(pops, out, ShiftConfig(bootstrap=0), progress=False)
            self.log(f"trigger: fitted on the expert pool -> {out}")
        return out

    def arm(self, arm: ArmConfig, seed: int, size: int, warm: Path, train_tasks: Path, heldout: Path) -> dict:
        where = self.root / f"seed-{seed}/{arm.name}/size-{size}"
        filters = None if arm.filters else NO_REPETITION_FILTERS
        if arm.kind == "bc":
            runs, mask = [self.pool(seed, "bc", warm, train_tasks)], "expert"
        elif arm.kind == "on_policy":  # the student's own successful episodes: all its turns are the targets
            runs, mask = [self.pool(seed, "student", warm, train_tasks)], "all"
        elif arm.kind == "oec":
            runs, mask = [self.pool(seed, "oec", warm, train_tasks, arm.switch)], arm.mask
        elif arm.kind == "oec_bc":
            runs = [self.pool(seed, "oec", warm, train_tasks, arm.switch), self.pool(seed, "bc", warm, train_tasks)]
            mask = arm.mask
        else:
            return self.dagger_arm(arm, seed, size, warm, train_tasks, heldout)
        row = self.train_eval(where, runs, warm, heldout, size, seed, mask, filters)
        spent = sum(expert_tokens(r) for r in runs)  # expert tokens of the pools this arm drew on, per trajectory
        kept = sum(kept_count(r) for r in runs)
        return {**row, "expert_tokens": round(spent / max(kept, 1) * size)}

    def dagger_arm(self, arm: ArmConfig, seed: int, size: int, warm: Path, train_tasks: Path, heldout: Path) -> dict:
        from oec.experiments.dagger import DaggerConfig, run_dagger

        where = self.root / f"seed-{seed}/{arm.name}/size-{size}"
        # only the last round's student is the arm's: the rounds before it need no held-out evaluation of their own
        fields = {"rounds": 3, "eval_rounds": "last", **given(self.cfg.dagger)}
        cfg = DaggerConfig(tasks=str(train_tasks), heldout=str(heldout), student=str(warm), expert=self.cfg.expert,
                           out=str(where), seed=seed, workers=self.cfg.workers, trained_tokens=self.cfg.trained_tokens,
                           episodes_per_round=max(1, size // fields["rounds"]),
                           student_temperature=self.cfg.student_temperature, train=self.cfg.train,
                           student_options=self.cfg.student_options or None,
                           context_loss=self.cfg.context_loss,
                           collect=given(self.cfg.collect), **fields)
        rows = run_dagger(cfg, progress=False, log=lambda m: self.log(f"dagger {arm.name} seed {seed}: {m}"))
        last = rows[-1]
        evals = sorted(where.glob("round-*/eval"))  # the last round's student is this arm's student
        trained = load_info(evals[-1].parent / "ckpt", TRAIN_INFO)
        return {"trajectories": sum(r["episodes"] for r in rows), "kept": sum(r["kept"] for r in rows),
                "examples": last["examples"], "trained_tokens": trained.get("trained_tokens", ""),
                "train_seconds": sum(r["train_seconds"] or 0 for r in rows), **eval_row(evals[-1]),
                "eval": evals[-1], "model": evals[-1].parent / "ckpt", "expert_tokens": last["expert_tokens"],
                "note": f"{len(rows)} rounds"}

    # ---- the whole experiment -----------------------------------------------------------------------------------
    def run(self) -> Path:
        from datasets.utils.logging import disable_progress_bar

        disable_progress_bar()  # the log has a line per stage; datasets' bars (per save, per map) would bury it
        self.check_config()  # the task sets were checked in __init__: a refused config leaves no experiment.json
        train_tasks, heldout, warm_tasks = self.sets.write(self.log)
        warm = self.warm(warm_tasks, heldout, self.student0(train_tasks))
        given = self.cfg.warm_start.trajectories == 0
        trained = {} if given else load_info(self.root / "warm/ckpt", TRAIN_INFO)
        rows = [{"arm": "warm_start", "size": self.cfg.warm_start.trajectories, "seed": 0, "expert_tokens":
                 0 if given else expert_tokens(self.root / "warm/bc"), **eval_row(self.root / "warm/eval"),
                 "trained_tokens": trained.get("trained_tokens", 0), "eval": self.root / "warm/eval", "model": warm,
                 "note": f"given: {self.cfg.student_model}" if given else ""}]
        self.write_tables(rows)
        early = self.mechanism(self.cfg.seeds[:1], warm, train_tasks)  # before any arm trains
        write_text(self.root / "calibration.json", json.dumps({"warm_start_resolve_rate": rows[0]["resolve_rate"],
                                                               "mechanism": early}, indent=2) + "\n")
        for seed in self.cfg.seeds:
            for size in self.cfg.sizes:
                for arm in self.cfg.arms:
                    row = self.arm(arm, seed, size, warm, train_tasks, heldout)
                    rows.append({"arm": arm.name, "size": size, "seed": seed, **row})
                    self.log(f"seed {seed} size {size} {arm.name}: {row['resolve_rate']:.1%} "
                             f"(95% CI {row['ci_lo']:.1%}-{row['ci_hi']:.1%}; {row['trained_tokens']} trained tokens)")
                    self.write_tables(rows)
        # every seed's pools: the first seed's were checked and logged before any arm trained
        calibration = {"warm_start_resolve_rate": rows[0]["resolve_rate"],
                       "mechanism": self.mechanism(self.cfg.seeds, warm, train_tasks, known=early)}
        write_text(self.root / "calibration.json", json.dumps(calibration, indent=2) + "\n")
        from oec.experiments.claims import write_claims

        arms = {a.name: a.model_dump() for a in self.cfg.arms}
        write_claims(self.root, arms, self.claims_size, *self.shift())
        # C4 and C8 compare one arm with every other: a view that evaluated only some arms again cannot make them
        partial = self.cfg.recheck_arms is not None and set(self.cfg.recheck_arms) != set(arms)
        for view, tasks, fields in self.views(heldout):
            self.recheck(rows, view, tasks, fields)
            write_claims(self.root, arms, self.claims_size, view=view, partial=partial)
        from oec.experiments.report import plots, write_report

        plots(self.root)
        return write_report(self.root)

    def views(self, heldout: Path) -> list[tuple[str, Path, dict]]:
        """The held-out evaluations besides the main one: (name, tasks, the CollectConfig fields they change)."""
        steps, unseen = self.cfg.recheck_step_limit, self.cfg.unseen_heldout
        settings = ([(heldout, {"loop": {"step_limit": steps}})] if steps else []) + (
            [(self.sets.unseen(), {})] if unseen else [])
        return [(name, *setting) for name, setting in zip(view_names(steps, unseen), settings)]

    def recheck(self, rows: list[dict], view: str, tasks: Path, fields: dict) -> None:
        """Evaluate the student of each of ROWS again, beside its evaluation (eval-VIEW), on TASKS with FIELDS;
        results_VIEW.csv and outcomes_VIEW.csv, as the main tables. An arm that kept nothing has the warm start's
        numbers (ROWS[0]) and no evaluation of its own, as in the main tables."""
        again, arms = [], self.cfg.recheck_arms
        for r in rows:
            if arms is not None and r["arm"] not in ("warm_start", *arms):
                continue
            if "eval" not in r:
                again.append({**r, **eval_row(again[0]["eval"])})
                continue
            ev = r["eval"].parent / f"eval-{view}"
            self.collect(ev, tasks, mode="student", student=self.spec(r["model"], 0), seed=r["seed"], **fields)
            again.append({**r, **eval_row(ev), "eval": ev})
            self.log(f"{view}: seed {r['seed']} size {r['size']} {r['arm']}: {again[-1]['resolve_rate']:.1%}")
        self.write_tables(again, view)

    @property
    def claims_size(self) -> int:
        return self.cfg.claims_size or max(self.cfg.sizes)

    def mechanism(self, seeds: list[int], warm: Path, train_tasks: Path, known: dict | None = None) -> dict:
        """The mechanism check of each OEC pool of SEEDS, each logged in one line; the pools in KNOWN (an earlier
        answer) are not checked again. The pools are collected here if they are not yet (this runs before any arm
        trains; the arms then reuse them), the student pool too when an on_policy arm uses one."""
        out = dict(known or {})
        own = any(a.kind == "on_policy" for a in self.cfg.arms)
        for seed, arm in ((s, a) for s in seeds for a in self.cfg.arms if a.kind in ("oec", "oec_bc")):
            oec = self.pool(seed, "oec", warm, train_tasks, arm.switch)
            name = str(oec.relative_to(self.root))
            if name not in out:
                out[name] = pool_check(oec, self.pool(seed, "student", warm, train_tasks) if own else None)
                self.log(describe_check(name, out[name]))
        return out

    def shift(self) -> tuple[list[dict] | None, str | None]:
        """C1's evidence: the shift of the BC student (at the claims' size, first seed) from the expert, per turn,
        on the held-out tasks; (None, None) without a shift analysis or a BC arm."""
        bc = next((a.name for a in self.cfg.arms if a.kind == "bc"), None)
        if not self.cfg.shift or bc is None:
            return None, None
        from oec.shift.analyze import analyze
        from oec.shift.config import ShiftConfig

        expert = self.root / "expert-heldout"
        collect(CollectConfig(tasks=str(self.sets.sets["heldout"][0]), out=str(expert), expert=self.cfg.expert,
                              workers=self.cfg.workers), progress=False)
        student = self.root / f"seed-{self.cfg.seeds[0]}/{bc}/size-{self.claims_size}/eval"
        result = analyze({"expert": str(expert), bc: str(student)}, self.root / "shift", ShiftConfig(bootstrap=100),
                         progress=False)
        shutil.copyfile(self.root / "shift/fd.png", self.root / "shift.png")  # the report embeds top-level plots
        self.log(f"shift: {bc} student vs expert on held-out tasks -> {self.root / 'shift'}")
        return result["rows"], bc

    def write_tables(self, rows: list[dict], view: str = "") -> None:
        """results.csv, and outcomes.csv: per held-out task, every evaluation a row of results.csv points at (VIEW:
        results_VIEW.csv and outcomes_VIEW.csv, another held-out evaluation of the same students)."""
        suffix = f"_{view}" if view else ""
        write_csv(self.root / f"results{suffix}.csv", rows, RESULT_COLUMNS)
        write_csv(self.root / f"outcomes{suffix}.csv", outcome_rows(rows), OUTCOME_COLUMNS)


def run_experiment(path: str | Path | None, overrides: list[str] | None = None,
                   log: Callable[[str], None] = print) -> Path:
    cfg = load_config(ExperimentConfig, path, {}, overrides)
    return Experiment(cfg, log).run()
