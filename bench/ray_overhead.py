"""What the Ray backend costs per episode, against the local backend, on the same machine in the same run.

Both backends run `oec.rollout.collect.collect` in expert mode with `scripted:expert?latency=0.05` (the expert sleeps 50 ms
per call, like a remote API) on toy tasks with the real sandboxed environment (new tasks for every run); runs alternate between the
backends (local, ray, ray, local, ...) so that they share the machine's noise. One local Ray (`ray.init`, all cores)
serves every Ray run; its start is reported, not counted. Three figures:

  throughput   episodes/s at --workers concurrent episodes (Ray: one worker actor per core);
  per episode  the overhead Ray adds to one episode, at 1 worker: the time outside the rollout loop per episode,
               wall minus the episodes' own `total_s` (that leaves environment set-up/close, the collector, and
               Ray's dispatch and transfer), as a slope over episode count, (out(N) - out(n)) / (N - n), so that
               fixed costs (starting the worker actor, its cold sandbox) cancel; overhead = slope(ray) - slope(local).
               The rollouts themselves are the same work on both backends and are left out because on a shared
               machine their CPU time swings by more than the figure sought;
  round trip   the floor of that overhead: one actor call that carries a real Task and returns a real Trajectory
               (what each episode sends and receives), with no work in between; median of many calls.

Goal: Ray adds < 5 ms per episode. The first two are end-to-end and move with the load of a shared machine; the
round trip does not.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import tempfile
import time
from pathlib import Path

import ray
from common import machine, med, ms, toy_tasks, verdict_line

from oec.rollout.collect import CollectConfig, collect
from oec.rollout.backends.ray import RayBackend
from oec.core.store import read_trajectories
from oec.tasks.io import write_tasks

POLICY = "scripted:expert?latency=0.05"
GOAL_S = 0.005


def run(tasks_file: Path, out: Path, backend: str, workers: int) -> dict:
    cfg = CollectConfig(tasks=str(tasks_file), out=str(out), mode="expert", expert=POLICY, workers=workers,
                        backend=backend)
    t0 = time.perf_counter()
    collect(cfg, progress=False)
    wall = time.perf_counter() - t0
    trajs = read_trajectories(out)
    outside = wall - sum(t.timings.get("total_s", 0.0) for t in trajs)
    return {"n": len(trajs), "wall": wall, "eps": len(trajs) / wall, "outside": outside, "resolved": sum(t.resolved for t in trajs),
            "errors": [t.exit_message[:200] for t in trajs if t.exit_status == "error"]}


class Echo:
    def call(self, task, sample, traj):
        return traj


def round_trip(task, traj, calls: int) -> tuple[float, float]:
    actor = ray.remote(Echo).options(num_cpus=0).remote()
    ray.get(actor.call.remote(task, 0, traj))
    times = []
    for i in range(calls):
        t0 = time.perf_counter()
        ray.get(actor.call.remote(task, i, traj))
        times.append(time.perf_counter() - t0)
    ray.kill(actor)
    times.sort()
    return med(times), times[int(0.9 * len(times))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer episodes, one round")
    ap.add_argument("--rounds", type=int, default=2, help="(local, ray) pairs per measure (default 2)")
    ap.add_argument("--workers", type=int, default=4, help="concurrent episodes for the throughput runs (default 4)")
    args = ap.parse_args()
    rounds = 1 if args.quick else args.rounds
    n_tp, (n_small, n_large) = (16, (2, 8)) if args.quick else (48, (4, 20))
    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    print(f"ray_overhead  {machine()}; ray {ray.__version__}")
    print(f"  policy {POLICY}; expert mode; toy tasks seeds 100, 101, ...; throughput: {n_tp} episodes at {args.workers} workers; "
          f"per-episode slope: {n_small} and {n_large} episodes at 1 worker; {rounds} round(s)")
    t0 = time.perf_counter()
    ray.init(include_dashboard=False, logging_level="ERROR")
    print(f"  ray.init (local, {int(ray.cluster_resources()['CPU'])} CPUs): {time.perf_counter() - t0:.2f} s "
          "(once per collection when oec starts its own Ray; not counted below)")
    # every run gets tasks of its own: template repos are cached per process, and the local backend's process
    # lives on while each Ray collection starts fresh workers, so repeated tasks would favour the local runs
    seeds = itertools.count(100)

    def tasks_file(n: int) -> Path:
        seed = next(seeds)
        return write_tasks(toy_tasks(n, seed=seed), tmp / f"tasks-{seed}.jsonl")

    t0 = time.perf_counter()
    RayBackend(CollectConfig(tasks="unused.jsonl", out=str(tmp / "startup"), expert=POLICY,
                             workers=args.workers, backend="ray")).close(abandon=False)
    print(f"  starting and stopping the worker actors (not counted below): {time.perf_counter() - t0:.2f} s")

    tp = {"local": [], "ray": []}
    slope = {"local": [], "ray": []}
    for r in range(rounds):
        order = ("local", "ray") if r % 2 == 0 else ("ray", "local")
        for backend in order:
            res = run(tasks_file(n_tp), tmp / f"tp-{r}-{backend}", backend, args.workers)
            tp[backend].append(res)
            print(f"  [throughput] {backend:5} {res['n']} episodes in {res['wall']:.2f} s = {res['eps']:.2f} ep/s, "
                  f"resolved {res['resolved']}, errors {len(res['errors'])}", flush=True)
            for e in res["errors"][:3]:
                print(f"    error: {e!r}")
        for backend in order[::-1]:
            small = run(tasks_file(n_small), tmp / f"s-{r}-{backend}-small", backend, 1)
            large = run(tasks_file(n_large), tmp / f"s-{r}-{backend}-large", backend, 1)
            s = (large["outside"] - small["outside"]) / (n_large - n_small)
            slope[backend].append(s)
            print(f"  [1 worker]   {backend:5} {n_small} episodes {small['wall']:.2f} s ({small['outside']:.2f} s outside "
                  f"rollouts), {n_large} episodes {large['wall']:.2f} s ({large['outside']:.2f} s): {ms(s)} outside "
                  "rollouts per episode", flush=True)
    trajs = read_trajectories(tmp / "tp-0-local")
    tasks = {t.task_id: t for t in toy_tasks(n_tp, seed=100)}  # the first throughput run's tasks
    rt_med, rt_p90 = round_trip(tasks[trajs[0].task_id], trajs[0], 50 if args.quick else 300)
    ray.shutdown()

    e_local, e_ray = med([r["eps"] for r in tp["local"]]), med([r["eps"] for r in tp["ray"]])
    s_local, s_ray = med(slope["local"]), med(slope["ray"])
    over = s_ray - s_local
    print("  summary (medians over rounds):")
    print(f"  throughput at {args.workers} workers: local {e_local:.2f} ep/s | ray {e_ray:.2f} ep/s | "
          f"ray/local {e_ray / e_local:.2f}x")
    print(f"  outside rollouts per episode at 1 worker: local {ms(s_local)} | ray {ms(s_ray)} | RAY ADDS {ms(over)} "
          f"(goal < 5 ms: {verdict_line(over < GOAL_S)}; end-to-end, moves with the machine's load)")
    size = len(trajs[0].model_dump_json()) + len(tasks[trajs[0].task_id].model_dump_json())
    print(f"  round trip of one episode call (Task out, Trajectory back, {size / 1024:.0f} KiB): median {ms(rt_med)}, "
          f"p90 {ms(rt_p90)} (goal < 5 ms: {verdict_line(rt_med < GOAL_S)})")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
