"""Collection: run many episodes concurrently and append their trajectories to a run directory.

Re-running the same command resumes: (task, sample) pairs already in trajectories.jsonl are skipped. Only the main
thread writes, one fsynced line per finished episode, so an interrupted run loses at most the episodes in flight.
Episodes run on a backend: threads in this process (`local`), or worker actors on a Ray cluster (`ray`, see
ray_backend.py); both hand finished trajectories back to this one writer.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from importlib.metadata import version
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from oec.core.atomic import check_output, write_text
from oec.env.sandbox_env import EnvConfig, SandboxEnv
from oec.rollout.policies import make_policy
from oec.rollout.loop import LoopConfig, rollout
from oec.rollout.schedules import make_schedule
from oec.env.sandbox.shell import sweep_stale_dirs
from oec.core.store import MANIFEST, TRAJECTORIES, TrajectoryWriter, read_manifest, read_trajectories
from oec.tasks.io import InputError, load_tasks
from oec.core.types import Task, Trajectory, Verdict


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

# What selects *where* episodes run, not what they contain: a run may be resumed on another backend.
EXECUTION = {"workers", "backend", "ray_address", "ray_actors", "ray_max_retries"}


def episode_seed(seed: int, task_id: str, sample: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{task_id}:{sample}".encode()).digest()[:8], "big")


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("oec", "pydantic", "pytest"):
        out[pkg] = version(pkg)
    return out


def policy_specs(cfg: CollectConfig) -> dict[str, str]:
    """actor -> policy spec, for the actors that the mode needs."""
    needed = {"expert": ("expert", "oec", "dagger"), "student": ("student", "oec", "dagger")}
    specs = {}
    for actor, modes in needed.items():
        spec = getattr(cfg, actor)
        if cfg.mode in modes:
            if not spec:
                raise InputError(f"mode {cfg.mode!r} needs --{actor} (e.g. --{actor} scripted:{'expert' if actor == 'expert' else 'noisy'})")
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


class LocalBackend:
    """Episodes on a thread pool in this process."""

    def __init__(self, cfg: CollectConfig):
        self.collector = Collector(cfg)
        self.capacity = cfg.workers * 2  # queued ahead, so that no thread waits for the main thread between episodes
        self.pool = ThreadPoolExecutor(cfg.workers, thread_name_prefix="episode")
        self.running: dict = {}
        self.retried = 0

    def submit(self, task: Task, sample: int) -> None:
        self.running[self.pool.submit(self.collector.run_episode, task, sample)] = (task.task_id, sample)

    def finished(self, timeout: float) -> list[Trajectory]:
        done, _ = wait(self.running, return_when=FIRST_COMPLETED, timeout=timeout)
        for fut in done:
            self.running.pop(fut)
        return [fut.result() for fut in done]

    def cancel(self) -> None:
        self.collector.stop.set()  # episodes in flight end at their next turn as "cancelled"

    def drain(self) -> list[Trajectory]:
        out = [fut.result() for fut in self.running]
        self.running.clear()
        return out

    def close(self, abandon: bool) -> None:
        self.pool.shutdown(wait=not abandon, cancel_futures=True)
        if not abandon:  # abandoned episodes may still be asking their policies
            self.collector.close()


# Spec prefixes followed by a path: `local:MODEL_DIR?options`, `trigger:DIR`.
PATH_SPECS = ("local:", "trigger:")


def relative_config(config: dict, run: Path, stored_relative: bool = True) -> dict:
    """CONFIG with its paths (tasks, local: models, trigger: dirs) relative to RUN, as the manifest stores them, so
    that a run directory moved or copied together with what it refers to (an experiment directory) still resumes.
    STORED_RELATIVE=False: CONFIG comes from a manifest that stored paths as given (relative to the working
    directory); they are converted the same way."""
    if stored_relative:
        return config

    def rel(path: str) -> str:
        return os.path.relpath(os.path.abspath(path), os.path.abspath(run))

    out = dict(config)
    if isinstance(out.get("tasks"), str):
        out["tasks"] = rel(out["tasks"])
    for key in ("expert", "student", "switch"):
        value = out.get(key)
        for prefix in PATH_SPECS:
            if isinstance(value, str) and value.startswith(prefix):
                target, q, options = value[len(prefix):].partition("?")
                out[key] = prefix + rel(target) + q + options
    return out


def _check_manifest(run: Path, cfg: CollectConfig) -> dict:
    config = relative_config(cfg.model_dump(exclude=EXECUTION | {"out"}), run, stored_relative=False)
    # the tasks file also by its absolute path: a run copied without its tasks still finds them
    manifest = {"config": config, "relative_paths": True, "tasks_path": os.path.abspath(cfg.tasks),
                "versions": _versions(), "argv": sys.argv,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    path = run / MANIFEST
    old = read_manifest(run)
    if old is not None:
        theirs = relative_config(old["config"], run, stored_relative=bool(old.get("relative_paths")))
        diff = sorted(k for k in set(theirs) | set(config) if theirs.get(k) != config.get(k) and k != "out")
        if diff:
            raise InputError(
                f"{path}: this run directory was collected with another config (differs in: {', '.join(diff)}). "
                "Use a new --out, or the same options to resume."
            )
        manifest["resumed_from"] = old.get("started")
    write_text(path, json.dumps(manifest, indent=2) + "\n")
    return manifest


def make_backend(cfg: CollectConfig):
    if cfg.backend == "ray":
        from oec.rollout.backends.ray import RayBackend  # ray is an optional extra, imported only when asked for

        return RayBackend(cfg)
    return LocalBackend(cfg)


def collect(cfg: CollectConfig, progress: bool = True, retry_errors: bool = False) -> dict:
    """Run every missing (task, sample) episode; return counts for this call. RETRY_ERRORS also reruns the pairs whose
    latest attempt ended with status `error`: the new attempt is appended, and readers take the latest one."""
    run = check_output(cfg.out, "dir")
    tasks = load_tasks(cfg.tasks)
    policy_specs(cfg)  # a missing --expert/--student is reported before anything starts
    sweep_stale_dirs()  # sandboxes left by collections that were killed
    done = {t.key for t in read_trajectories(run / TRAJECTORIES) if not (retry_errors and t.exit_status == "error")}
    todo = [(t, s) for t in tasks for s in range(cfg.samples) if (t.task_id, s) not in done]
    backend = make_backend(cfg)
    try:
        run.mkdir(parents=True, exist_ok=True)
        _check_manifest(run, cfg)
        writer = TrajectoryWriter(run / TRAJECTORIES)
    except BaseException:
        backend.close(abandon=True)
        raise
    bar = tqdm(total=len(tasks) * cfg.samples, initial=len(tasks) * cfg.samples - len(todo), desc=f"collect {cfg.mode}",
               unit="ep", disable=not progress, dynamic_ncols=True)
    written, resolved, interrupted = 0, 0, False
    queue = iter(todo)
    pending = len(todo)

    def record(traj: Trajectory) -> None:
        nonlocal written, resolved, pending
        pending -= 1
        if traj.exit_status == "cancelled":
            return  # not finished: the next run does it again
        writer.write(traj)
        written += 1
        resolved += traj.resolved
        bar.update(1)
        bar.set_postfix(resolved=f"{resolved}/{written}")

    try:
        submitted = 0
        while submitted < len(todo) or pending:
            while submitted < len(todo) and len(backend.running) < backend.capacity:
                backend.submit(*next(queue))
                submitted += 1
            for traj in backend.finished(timeout=0.5):
                record(traj)
    except KeyboardInterrupt:
        interrupted = True
        backend.cancel()
        bar.write("interrupted: finishing the episodes in flight (Ctrl-C again to abandon them) ...")
        for traj in backend.drain():
            record(traj)
    finally:
        backend.close(abandon=interrupted)
        writer.close()
        bar.close()
    remaining = len(todo) - written
    return {"run": str(run), "written": written, "skipped_done": len(done), "remaining": remaining,
            "interrupted": interrupted, "retried": backend.retried}
