"""Collection: run many episodes concurrently and append their trajectories to a run directory.

Re-running the same command resumes: (task, sample) pairs already in trajectories.jsonl are skipped. Only the main
thread writes, one fsynced line per finished episode, so an interrupted run loses at most the episodes in flight.
"""

from __future__ import annotations

import hashlib
import json
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

from oec.env import EnvConfig, SandboxEnv
from oec.policies import make_policy
from oec.rollout import LoopConfig, rollout
from oec.schedules import make_schedule
from oec.store import TRAJECTORIES, TrajectoryWriter, read_trajectories
from oec.tasks import InputError, load_tasks
from oec.types import Task, Trajectory, Verdict

MANIFEST = "manifest.json"


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
    workers: int = Field(4, ge=1, description="episodes run concurrently")
    seed: int = Field(0, description="fixes every random choice of the collection")
    loop: LoopConfig = Field(default_factory=LoopConfig)
    env: EnvConfig = Field(default_factory=EnvConfig)


def episode_seed(seed: int, task_id: str, sample: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{task_id}:{sample}".encode()).digest()[:8], "big")


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("oec", "pydantic", "pytest"):
        out[pkg] = version(pkg)
    return out


class Collector:
    """Builds policies and the schedule once; `run_episode` is safe to call from many threads."""

    def __init__(self, cfg: CollectConfig):
        self.cfg = cfg
        needed = {"expert": ("expert", "oec", "dagger"), "student": ("student", "oec", "dagger")}
        self.policies = {}
        for actor, modes in needed.items():
            spec = getattr(cfg, actor)
            if cfg.mode in modes:
                if not spec:
                    raise InputError(f"mode {cfg.mode!r} needs --{actor} (e.g. --{actor} scripted:{'expert' if actor == 'expert' else 'noisy'})")
                self.policies[actor] = make_policy(spec, getattr(cfg, f"{actor}_format"))
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
            message = f"{e.__class__.__name__}: {e}"
            return Trajectory(task_id=task.task_id, sample=sample, mode=self.cfg.mode,
                              policies={a: p.spec for a, p in self.policies.items()}, steps=[], exit_status="error",
                              exit_message=message, seed=seed, verdict=Verdict(resolved=False, tests={}, error=message))


def _check_manifest(run: Path, cfg: CollectConfig) -> dict:
    manifest = {"config": cfg.model_dump(exclude={"workers"}), "versions": _versions(), "argv": sys.argv,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    path = run / MANIFEST
    if path.exists():
        old = json.loads(path.read_text())
        diff = sorted(k for k in set(old["config"]) | set(manifest["config"])
                      if old["config"].get(k) != manifest["config"].get(k) and k != "out")
        if diff:
            raise InputError(
                f"{path}: this run directory was collected with another config (differs in: {', '.join(diff)}). "
                "Use a new --out, or the same options to resume."
            )
        manifest["resumed_from"] = old.get("started")
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def collect(cfg: CollectConfig, progress: bool = True) -> dict:
    """Run every missing (task, sample) episode; return counts for this call."""
    tasks = load_tasks(cfg.tasks)
    collector = Collector(cfg)
    run = Path(cfg.out)
    run.mkdir(parents=True, exist_ok=True)
    _check_manifest(run, cfg)
    done = {t.key for t in read_trajectories(run / TRAJECTORIES)}
    todo = [(t, s) for t in tasks for s in range(cfg.samples) if (t.task_id, s) not in done]
    writer = TrajectoryWriter(run / TRAJECTORIES)
    bar = tqdm(total=len(tasks) * cfg.samples, initial=len(tasks) * cfg.samples - len(todo), desc=f"collect {cfg.mode}",
               unit="ep", disable=not progress, dynamic_ncols=True)
    written, resolved, interrupted = 0, 0, False
    pool = ThreadPoolExecutor(cfg.workers, thread_name_prefix="episode")
    queue = iter(todo)
    running: dict = {}
    try:
        while True:
            while len(running) < cfg.workers * 2 and not collector.stop.is_set():
                item = next(queue, None)
                if item is None:
                    break
                running[pool.submit(collector.run_episode, *item)] = item
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED, timeout=0.5)
            for fut in finished:
                running.pop(fut)
                traj = fut.result()
                if traj.exit_status == "cancelled":
                    continue  # not finished: the next run does it again
                writer.write(traj)
                written += 1
                resolved += traj.resolved
                bar.update(1)
                bar.set_postfix(resolved=f"{resolved}/{written}")
    except KeyboardInterrupt:
        interrupted = True
        collector.stop.set()
        bar.write("interrupted: finishing the episodes in flight (Ctrl-C again to abandon them) ...")
        for fut in list(running):
            traj = fut.result()
            if traj.exit_status != "cancelled":
                writer.write(traj)
                written += 1
    finally:
        pool.shutdown(wait=not interrupted, cancel_futures=True)
        writer.close()
        bar.close()
    remaining = len(todo) - written
    return {"run": str(run), "written": written, "skipped_done": len(done), "remaining": remaining,
            "interrupted": interrupted}
