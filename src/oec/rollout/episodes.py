"""One collection's episodes: its config, and the Collector that runs one episode (policies and schedule built once).

Both backends (backends/local.py, backends/ray.py) run episodes through a Collector; collect.py writes what they return.
"""

from __future__ import annotations

import hashlib
import random
import threading
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from oec.core.errors import InputError
from oec.core.types import Task, Trajectory, Verdict
from oec.env.sandbox_env import EnvConfig, SandboxEnv
from oec.formats import parse_spec_options
from oec.formats.miniswe import MIN_OUTPUT_LIMIT
from oec.rollout.loop import LoopConfig, rollout
from oec.rollout.policies import make_policy
from oec.rollout.schedules import make_schedule


class CollectConfig(BaseModel):
    """Everything that determines a collection's trajectories (plus `workers`, which does not)."""

    model_config = ConfigDict(extra="forbid")
    tasks: str = Field(description="tasks JSONL file")
    out: str = Field(description="run directory")
    mode: Literal["expert", "student", "oec", "dagger"] = "expert"
    expert: str | None = Field("scripted:expert", description="expert policy spec")
    student: str | None = Field(None, description="student policy spec")
    expert_format: str = Field("text", description="the expert's format: text | toolcalls (options: text?window=4)")
    student_format: str = Field("text", description="the student's format")
    switch: str = Field("uniform", description="oec switch: uniform | late[:A,B] | fixed:K | trigger:DIR")
    trigger_threshold: float = Field(0.99, gt=0, lt=1, description="trigger: quantile of the expert's own distances")
    beta: float = Field(0.5, ge=0, le=1, description="dagger: probability that the expert acts at a turn")
    samples: int = Field(1, ge=1, description="episodes per task")
    workers: int = Field(4, ge=1, description="episodes run concurrently (in all, over every Ray worker)")
    seed: int = Field(0, description="fixes every random choice of the collection")
    loop: LoopConfig = Field(default_factory=LoopConfig)
    env: EnvConfig = Field(default_factory=EnvConfig)
    backend: Literal["local", "ray"] = Field("local", description="local: threads here; ray: worker actors on Ray")
    ray_address: str | None = Field(None, description="ray: cluster to join ('auto', 'ray://HOST:10001'); None "
                                    "starts a local Ray (or uses the one this process already started)")
    ray_actors: int | None = Field(None, ge=1, description="ray: worker processes, each with its own policies and "
                                   "sandboxes [one per CPU of the cluster, at most `workers`]")
    ray_max_retries: int = Field(3, ge=0, description="ray: times an episode is re-run after its worker died")

    @model_validator(mode="after")
    def _one_scaffold(self) -> CollectConfig:
        # a student for mini-swe-agent learns what that scaffold shows and offers, so the expert acts in it too,
        # and the shell keeps outputs as long as its observation template shows them whole (unless told otherwise,
        # the shell's limit is raised to that; a smaller one given is refused)
        acting = [self.student_format] * (self.mode != "expert") + [self.expert_format] * (self.mode != "student")
        names = {parse_spec_options(spec)[0] for spec in acting}
        if "miniswe" not in names:
            return self
        if len(names) > 1:
            raise ValueError("the miniswe format is a scaffold: student_format and expert_format must both be "
                             "miniswe, so that every turn is written and shown as mini-swe-agent would")
        if "output_limit" not in self.env.model_fields_set:
            self.env.output_limit = max(self.env.output_limit, MIN_OUTPUT_LIMIT)
        elif self.env.output_limit < MIN_OUTPUT_LIMIT:
            raise ValueError(f"the miniswe format shows outputs up to {MIN_OUTPUT_LIMIT} characters whole: set "
                             f"env.output_limit to at least {MIN_OUTPUT_LIMIT} (it is {self.env.output_limit})")
        return self

# What selects *where* episodes run, not what they contain: a run may be resumed on another backend.
EXECUTION = {"workers", "backend", "ray_address", "ray_actors", "ray_max_retries"}


def episode_seed(seed: int, task_id: str, sample: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{task_id}:{sample}".encode()).digest()[:8], "big")


def policy_specs(cfg: CollectConfig) -> dict[str, str]:
    """actor -> policy spec, for the actors that the mode needs."""
    needed = {"expert": ("expert", "oec", "dagger"), "student": ("student", "oec", "dagger")}
    specs = {}
    for actor, modes in needed.items():
        spec = getattr(cfg, actor)
        if cfg.mode in modes:
            if not spec:
                raise InputError(f"mode {cfg.mode!r} needs --{actor} "
                                 f"(e.g. --{actor} scripted:{'expert' if actor == 'expert' else 'noisy'})")
            specs[actor] = spec
    return specs


def error_trajectory(cfg: CollectConfig, task_id: str, sample: int, message: str) -> Trajectory:
    """An episode that could not run: recorded with its reason, so the collection goes on and nothing is lost."""
    return Trajectory(task_id=task_id, sample=sample, mode=cfg.mode, policies=policy_specs(cfg), steps=[],
                      exit_status="error", exit_message=message, seed=episode_seed(cfg.seed, task_id, sample),
                      verdict=Verdict(resolved=False, tests={}, error=message))


class Collector:
    """Builds policies and the schedule once; `run_episode` is safe to call from many threads."""

    def __init__(self, cfg: CollectConfig):
        self.cfg = cfg
        self.policies = {actor: make_policy(spec, getattr(cfg, f"{actor}_format"))
                         for actor, spec in policy_specs(cfg).items()}
        self.schedule = make_schedule(cfg.mode, cfg.switch, cfg.beta, cfg.trigger_threshold)
        self.stop = threading.Event()

    def run_episode(self, task: Task, sample: int) -> Trajectory:
        seed = episode_seed(self.cfg.seed, task.task_id, sample)
        rng = random.Random(f"{seed}:schedule")

        def probe() -> Trajectory:  # the student alone, for samplers that need its episode length
            plan = make_schedule("student").plan(task, self.policies, rng, probe)
            with SandboxEnv(task, self.cfg.env) as env:
                return rollout(task, env, plan, mode="student", seed=seed ^ 1, config=self.cfg.loop,
                               should_stop=self.stop.is_set, verify=False)

        try:
            plan = self.schedule.plan(task, self.policies, rng, probe)
            with SandboxEnv(task, self.cfg.env) as env:
                return rollout(task, env, plan, mode=self.cfg.mode, seed=seed, sample=sample, config=self.cfg.loop,
                               should_stop=self.stop.is_set)
        except Exception as e:  # e.g. a workspace that cannot be built: recorded, and the collection goes on
            return error_trajectory(self.cfg, task.task_id, sample, f"{e.__class__.__name__}: {e}")

    def close(self) -> None:
        for policy in self.policies.values():
            policy.close()
