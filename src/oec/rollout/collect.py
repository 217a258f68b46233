"""Collection: run many episodes concurrently and append their trajectories to a run directory.

Re-running the same command resumes: (task, sample) pairs already in trajectories.jsonl are skipped. Only the main
thread writes, one fsynced line per finished episode, so an interrupted run loses at most the episodes in flight.
Episodes run on a backend: threads in this process (`local`), or worker actors on a Ray cluster (`ray`, see
backends/ray.py); both hand finished trajectories back to this one writer.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from importlib.metadata import version
from pathlib import Path

from tqdm import tqdm

from oec.core.atomic import check_output
from oec.core.protocols import Backend
from oec.core.stage import guard_config, relative_paths
from oec.core.store import MANIFEST, TRAJECTORIES, TrajectoryWriter, read_manifest, read_trajectories
from oec.core.types import Trajectory
from oec.env.sandbox.cgroup import sweep_stale_groups
from oec.env.sandbox.tempdirs import sweep_stale_dirs
from oec.rollout.backends.local import LocalBackend
from oec.rollout.episodes import EXECUTION, CollectConfig, policy_specs
from oec.tasks.io import load_tasks

__all__ = ["CollectConfig", "collect"]


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("oec", "pydantic", "pytest"):
        out[pkg] = version(pkg)
    return out


def relative_config(config: dict, run: Path, stored_relative: bool = True) -> dict:
    """CONFIG with its paths (tasks, local: models, trigger: dirs) relative to RUN, as the manifest stores them.
    STORED_RELATIVE=False: CONFIG comes from a manifest that stored paths as given (relative to the working
    directory); they are converted the same way."""
    if stored_relative:
        return config
    return relative_paths(config, run, paths=("tasks",), specs=("expert", "student", "switch"))


def _check_manifest(run: Path, cfg: CollectConfig) -> None:
    """A rerun resumes the same collection; another config into the same run directory is refused."""
    config = relative_config(cfg.model_dump(exclude=EXECUTION | {"out"}), run, stored_relative=False)
    old = read_manifest(run)

    def differs(old: dict, config: dict) -> list[str]:
        theirs = relative_config(old["config"], run, stored_relative=bool(old.get("relative_paths")))
        return sorted(k for k in set(theirs) | set(config) if theirs.get(k) != config.get(k) and k != "out")

    # the tasks file also by its absolute path: a run copied without its tasks still finds them
    extra = {"relative_paths": True, "tasks_path": os.path.abspath(cfg.tasks), "versions": _versions(),
             "argv": sys.argv, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if old is not None:
        extra["resumed_from"] = old.get("started")
    guard_config(run / MANIFEST, config, what="collection", differs=differs, extra=extra,
                 fix="use a new --out, or the same options to resume")


def make_backend(cfg: CollectConfig) -> Backend:
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
    sweep_stale_groups()
    done = {t.key for t in read_trajectories(run / TRAJECTORIES) if not (retry_errors and t.exit_status == "error")}
    todo = [(t, s) for t in tasks for s in range(cfg.samples) if (t.task_id, s) not in done]
    if not todo:  # a finished run: still the same collection, but no policy is built (a local model loads in seconds)
        _check_manifest(run, cfg)
        return {"run": str(run), "written": 0, "skipped_done": len(done), "remaining": 0, "interrupted": False,
                "retried": 0}
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
