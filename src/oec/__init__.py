"""oec: train multi-turn LM agents with on-policy expert corrections (OEC) and DAgger; measure covariate shift.

The CLI is a thin layer over these functions, one entry point and one config per stage (the README's Python API
section runs a whole small pipeline with them):

    tasks      generate_tasks, write_tasks, load_tasks, import_instances
    collect    collect + CollectConfig (student, expert, OEC switch, DAgger mix), rollout, make_policy, make_schedule
    filter     filter_run + FilterConfig
    build      build + BuildConfig
    train      init_student + StudentConfig, train_student + TrainConfig (`oec.train` is the stage's package)
    shift      analyze + ShiftConfig
    rounds     Experiment + ExperimentConfig (every arm, size and seed), run_dagger + DaggerConfig
    results    summarize, read_trajectories, write_predictions (SWE-bench)

Each name is imported on first use (PEP 562), so `import oec` stays light: torch, TRL and the embedder load only for
the stages that need them.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "Action": "oec.core.types", "Step": "oec.core.types", "Task": "oec.core.types", "Trajectory": "oec.core.types",
    "Verdict": "oec.core.types", "read_trajectories": "oec.core.store",
    "EnvConfig": "oec.env.sandbox_env", "SandboxEnv": "oec.env.sandbox_env",
    "generate_tasks": "oec.tasks.io", "load_tasks": "oec.tasks.io", "write_tasks": "oec.tasks.io",
    "import_instances": "oec.tasks.importers",
    "CollectConfig": "oec.rollout.collect", "collect": "oec.rollout.collect", "LoopConfig": "oec.rollout.loop",
    "rollout": "oec.rollout.loop", "make_policy": "oec.rollout.policies", "make_schedule": "oec.rollout.schedules",
    "FilterConfig": "oec.data.filter", "filter_run": "oec.data.filter",
    "BuildConfig": "oec.data.build", "build": "oec.data.build", "write_predictions": "oec.data.predictions",
    "StudentConfig": "oec.train.student", "init_student": "oec.train.student",
    "TrainConfig": "oec.train.sft", "train_student": "oec.train.sft:train",
    "ShiftConfig": "oec.shift.config", "analyze": "oec.shift.analyze",
    "Experiment": "oec.experiments.experiment", "ExperimentConfig": "oec.experiments.config",
    "DaggerConfig": "oec.experiments.config", "run_dagger": "oec.experiments.dagger",
    "summarize": "oec.core.metrics",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'oec' has no attribute {name!r}")
    module, _, attr = _WHERE[name].partition(":")
    value = getattr(importlib.import_module(module), attr or name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return __all__
