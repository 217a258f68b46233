"""oec: train multi-turn LM agents with on-policy expert corrections (OEC) and DAgger; measure covariate shift.

The CLI is a thin layer over these functions:

    from oec import generate_tasks, write_tasks, CollectConfig, collect, summarize
    write_tasks(generate_tasks("toy", "train", n=20, seed=0), "tasks/train.jsonl")
    collect(CollectConfig(tasks="tasks/train.jsonl", out="runs/oec", mode="oec",
                          student="scripted:noisy", expert="scripted:expert", switch="uniform"))
    print(summarize("runs/oec")["resolve_rate"])
"""

from oec.rollout.collect import CollectConfig, collect
from oec.env.sandbox_env import EnvConfig, SandboxEnv
from oec.rollout.policies import make_policy
from oec.rollout.loop import LoopConfig, rollout
from oec.rollout.schedules import make_schedule
from oec.viewer.show import summarize
from oec.core.store import read_trajectories
from oec.tasks.io import generate_tasks, load_tasks, write_tasks
from oec.core.types import Action, Step, Task, Trajectory, Verdict

__all__ = [
    "Action", "CollectConfig", "EnvConfig", "LoopConfig", "SandboxEnv", "Step", "Task", "Trajectory", "Verdict",
    "collect", "generate_tasks", "load_tasks", "make_policy", "make_schedule", "read_trajectories", "rollout",
    "summarize", "write_tasks",
]
