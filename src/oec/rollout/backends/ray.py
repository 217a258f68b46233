"""The Ray backend: episodes run in worker actors on a Ray cluster; the driver alone writes the run directory.

Each worker actor builds one Collector, so its policies (a `local:` model, HTTP clients) load once per actor, and
owns its sandboxes (the slot pool is per process). The driver keeps up to two episodes per worker slot in flight,
as the local backend does, and streams results back to collect()'s one append-only writer.

Faults: an episode whose worker died (killed, OOM, node lost) is run again, up to `ray_max_retries` times, on
whichever live worker has room (Ray restarts dead actors; a restarting one gets no work until it answers a ping);
each loss is appended to RUN/retries.jsonl. An episode whose worker died too often is written as an `error`
trajectory that says so. Keys are written once: a lost attempt never reaches the writer, so nothing is duplicated.

Rate limits: an `openai:` policy with `max_concurrency=N` caps calls in flight per process; on Ray the cap must hold
over every worker, so its per-process semaphore is replaced by slots leased from one `PolicyLimiter` actor.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
from collections import Counter
from pathlib import Path

from oec.core.errors import InputError, PolicySpecError
from oec.core.types import Task, Trajectory
from oec.formats import parse_spec_options
from oec.rollout.episodes import CollectConfig, Collector, error_trajectory, policy_specs

RETRIES = "retries.jsonl"


def _ray():
    try:
        import ray
    except ImportError:
        raise InputError("--backend ray needs Ray: pip install 'oec[ray]' (or pip install ray)") from None
    return ray


def rate_limits(cfg: CollectConfig) -> dict[str, int]:
    """policy spec -> max calls in flight over the whole cluster, for the policies that set `max_concurrency`."""
    limits = {}
    for spec in policy_specs(cfg).values():
        kind, _, rest = spec.partition(":")
        limit = parse_spec_options(rest)[1].get("max_concurrency")
        if kind == "openai" and limit:
            if not limit.isdigit() or int(limit) < 1:
                raise PolicySpecError(f"policy {spec!r}: max_concurrency={limit!r}, expected a whole number >= 1")
            limits[spec] = int(limit)
    return limits


class PolicyLimiter:
    """A counting semaphore per policy spec, shared by every worker (an async actor: waiting costs no thread).

    Slots are held by (worker actor id, incarnation). A worker that died holding slots cannot release them, so a
    restarted worker registers anew: its predecessor's slots are freed and its predecessor's waiting calls denied.
    """

    def __init__(self, limits: dict[str, int]):
        self.limits = limits
        self.held: dict[str, Counter] = {key: Counter() for key in limits}
        self.incarnation: dict[str, int] = {}
        self.changed = asyncio.Condition()

    async def register(self, worker: str) -> int:
        async with self.changed:
            self.incarnation[worker] = self.incarnation.get(worker, -1) + 1
            for held in self.held.values():
                held.pop(worker, None)
            self.changed.notify_all()
            return self.incarnation[worker]

    async def acquire(self, key: str, worker: str, incarnation: int) -> bool:
        async with self.changed:
            await self.changed.wait_for(lambda: self.incarnation[worker] != incarnation
                                        or sum(self.held[key].values()) < self.limits[key])
            if self.incarnation[worker] != incarnation:
                return False  # the caller died while waiting
            self.held[key][worker] += 1
            return True

    async def release(self, key: str, worker: str, incarnation: int) -> None:
        async with self.changed:
            if self.incarnation[worker] == incarnation and self.held[key][worker] > 0:
                self.held[key][worker] -= 1
                self.changed.notify_all()


class ClusterSlots:
    """Stands in for an OpenAIPolicy's per-process semaphore: held around each HTTP call (`limit_calls_with`)."""

    def __init__(self, limiter, key: str, worker: str, incarnation: int):
        self.limiter, self.key, self.worker, self.incarnation = limiter, key, worker, incarnation

    def __enter__(self):
        _ray().get(self.limiter.acquire.remote(self.key, self.worker, self.incarnation))

    def __exit__(self, *exc):
        self.limiter.release.remote(self.key, self.worker, self.incarnation)


class EpisodeWorker:
    """One Ray actor: a Collector (policies loaded once) whose episodes run on the actor's threads."""

    def __init__(self, cfg: CollectConfig, limiter=None, cwd: str | None = None):
        from oec.rollout.policies.openai_api import OpenAIPolicy

        ray = _ray()
        if cwd and os.path.isdir(cwd):  # relative paths in specs (local:models/tiny) mean what they mean to the driver
            os.chdir(cwd)
        self.error: Exception | None = None
        try:
            self.collector = Collector(cfg)
        except Exception as e:  # handed to the driver by ready(), which raises it there with its own message
            self.error = e
            return
        if limiter is not None:
            worker = ray.get_runtime_context().get_actor_id()
            incarnation = ray.get(limiter.register.remote(worker))
            for policy in self.collector.policies.values():
                # exactly the policies that rate_limits() put in the limiter
                if isinstance(policy, OpenAIPolicy) and policy.config.max_concurrency:
                    policy.limit_calls_with(ClusterSlots(limiter, policy.spec, worker, incarnation))

    def ready(self) -> Exception | None:
        return self.error

    def run(self, task: Task, sample: int) -> Trajectory:
        return self.collector.run_episode(task, sample)

    def stop(self) -> None:
        self.collector.stop.set()


def _cluster_cpus(ray) -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


class RayBackend:
    """Episodes on Ray worker actors; same interface as backends/local.py's LocalBackend."""

    def __init__(self, cfg: CollectConfig):
        ray = self.ray = _ray()
        self.cfg = cfg
        limits = rate_limits(cfg)
        self.owns_ray = not ray.is_initialized()
        if self.owns_ray:
            # a local Ray for this collection only (it goes with close()); Ray's own INFO lines would bury the bar
            try:
                ray.init(address=cfg.ray_address, logging_level="ERROR", include_dashboard=False)
            except ConnectionError as e:
                raise InputError(f"--ray-address {cfg.ray_address}: {e} Start a cluster with `ray start --head`, or "
                                 "leave --ray-address out to start a local Ray for this command.") from None
        self.limiter = ray.remote(PolicyLimiter).options(num_cpus=0).remote(limits) if limits else None
        n = min(cfg.workers, cfg.ray_actors or _cluster_cpus(ray))
        per_actor = math.ceil(cfg.workers / n)
        # one CPU per worker: its sandboxes run the agent's commands and the tests; SPREAD uses every node.
        # max_restarts=-1: a dead worker comes back (the episode retry limit bounds the work lost), while
        # max_task_retries=0 leaves retrying to us, so that each retry is counted and recorded.
        worker_cls = ray.remote(concurrency_groups={"control": 1})(EpisodeWorker)
        self.actors = [worker_cls.options(num_cpus=1, max_concurrency=per_actor, max_restarts=-1, max_task_retries=0,
                                          scheduling_strategy="SPREAD").remote(cfg, self.limiter, os.getcwd())
                       for _ in range(n)]
        self.capacity = 2 * per_actor * n  # queued ahead at the actors, as the local backend queues ahead in its pool
        self.running: dict = {}  # ObjectRef -> (task, sample, actor index)
        self.load = [0] * n
        self.attempts: Counter = Counter()
        self.retried = 0
        # actor index -> a ping that answers once a dead worker is back: while Ray restarts an actor, calls to it fail
        # at once ("actor is restarting"), so sending the retry there would burn its retries in milliseconds
        self.down: dict[int, object] = {}
        try:
            errors = ray.get([a.ready.options(concurrency_group="control").remote() for a in self.actors])
        except BaseException:  # e.g. Ctrl-C while the workers start
            self.close(abandon=True)
            raise
        if any(errors):
            self.close(abandon=True)
            raise next(e for e in errors if e)

    def submit(self, task: Task, sample: int) -> None:
        while len(self.down) == len(self.actors):  # every worker is restarting: wait for one
            time.sleep(0.2)
            self._revive()
        i = min((i for i in range(len(self.actors)) if i not in self.down), key=self.load.__getitem__)
        self.load[i] += 1
        self.running[self.actors[i].run.remote(task, sample)] = (task, sample, i)

    def _result(self, ref) -> Trajectory | None:
        """The trajectory, or None when the worker died and the episode was resubmitted."""
        task, sample, i = self.running.pop(ref)
        self.load[i] -= 1
        try:
            return self.ray.get(ref)
        except (self.ray.exceptions.RayActorError, self.ray.exceptions.ObjectLostError) as e:
            # the worker process died, or the node holding the result: not the episode's fault, so run it again
            key = (task.task_id, sample)
            if i not in self.down:
                self.down[i] = self._ping(i)
            self.attempts[key] += 1
            self._log_retry(task.task_id, sample, self.attempts[key], e)
            if self.attempts[key] > self.cfg.ray_max_retries:
                return error_trajectory(self.cfg, task.task_id, sample,
                                        f"Ray worker died {self.attempts[key]} times while running this episode "
                                        f"(ray_max_retries={self.cfg.ray_max_retries}); last: {str(e)[:300]}")
            self.retried += 1
            self.submit(task, sample)
            return None
        except self.ray.exceptions.RayTaskError as e:  # run_episode records its own errors; this is anything else
            return error_trajectory(self.cfg, task.task_id, sample, f"worker error: {str(e)[-500:]}")

    def _ping(self, i: int):
        return self.actors[i].ready.options(concurrency_group="control").remote()

    def _revive(self) -> None:
        """Take back the workers whose ping answered; ping again those still restarting."""
        if not self.down:
            return
        ready = set(self.ray.wait(list(self.down.values()), num_returns=len(self.down), timeout=0)[0])
        for i, ping in list(self.down.items()):
            if ping in ready:
                try:
                    self.ray.get(ping)
                    del self.down[i]
                except self.ray.exceptions.RayActorError:
                    self.down[i] = self._ping(i)

    def _log_retry(self, task_id: str, sample: int, attempt: int, e: Exception) -> None:
        line = {"task_id": task_id, "sample": sample, "attempt": attempt, "error": f"{e.__class__.__name__}: "
                f"{str(e).splitlines()[0][:300]}", "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        with (Path(self.cfg.out) / RETRIES).open("a") as f:
            f.write(json.dumps(line) + "\n")

    def finished(self, timeout: float) -> list[Trajectory]:
        self._revive()
        if not self.running:
            return []
        refs = list(self.running)
        ready, rest = self.ray.wait(refs, num_returns=1, timeout=timeout)
        if ready and rest:  # take whatever else is already done, without waiting
            ready += self.ray.wait(rest, num_returns=len(rest), timeout=0)[0]
        return [t for t in (self._result(ref) for ref in ready) if t is not None]

    def cancel(self) -> None:
        for actor in self.actors:  # the control group runs beside the episodes, so this is not queued behind them
            actor.stop.options(concurrency_group="control").remote()

    def drain(self) -> list[Trajectory]:
        out = []
        while self.running:
            ref = next(iter(self.running))
            task, sample, i = self.running.pop(ref)
            try:
                out.append(self.ray.get(ref))
            except self.ray.exceptions.RayError:
                pass  # lost while stopping: not written, so the next run does it again
        return out

    def close(self, abandon: bool) -> None:
        ray = self.ray
        if abandon:
            for actor in self.actors:
                ray.kill(actor)
        else:
            # a graceful exit runs the workers' atexit handlers, which remove their sandboxes' temp dirs
            ray.wait([a.__ray_terminate__.remote() for a in self.actors], num_returns=len(self.actors), timeout=30)
        if self.limiter is not None:
            ray.kill(self.limiter)
        if self.owns_ray:
            ray.shutdown()
