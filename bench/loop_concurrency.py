"""Collection throughput with 32 workers vs 1, and the rollout loop's own overhead per step.

Runs `oec.rollout.collect.collect` in expert mode with `scripted:expert?latency=0.05` (the expert sleeps 50 ms per
call, like a remote API) on the same toy tasks with 1 worker and with 32 workers, alternating the two runs
(1, 32, 32, 1, ...) so they share the machine's noise, and reports episodes/s and their ratio. Two variants:

  sandbox  the real `SandboxEnv` (bubblewrap shell, warm test server, verifier sandbox): on 2 cores, 32 concurrent
           episodes may be bound by the environment's CPU cost rather than by the loop;
  canned   `oec.rollout.collect.SandboxEnv` replaced, in this process only, by `CannedEnv` below: a plain directory as
           the workspace, the expert's `edit`s applied in Python, every other command answered "ok" at once, and a
           canned passing verdict. No subprocess at all: this isolates the loop + collector from the environment's
           cost.

The sandbox variant first runs 32 uncounted episodes on 32 workers, so that the pool holds 32 started slots (each
slot is a long-lived sandbox with pytest imported) as it does in a long collection.

CPU per episode is that of this process and all its descendants (the sandboxes and the test runs they fork), which
bounds what 2 cores can do. Loop overhead per step = (total_s - policy_s - env_s - verify_s) / steps, from each
trajectory's timings: the time rollout() spends outside the policy (render + act), the environment and the verifier.

Goals: 32-worker throughput >= 25x the 1-worker throughput; loop overhead < 1 ms per step.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

from common import machine, med, ms, toy_tasks, tree_cpu, verdict_line, write_files

from oec.core.protocols import CommandResult
from oec.core.store import read_trajectories
from oec.core.types import TestResult, Verdict
from oec.rollout.collect import CollectConfig, collect
from oec.tasks.io import write_tasks

POLICY = "scripted:expert?latency=0.05"
GOAL_RATIO, GOAL_OVERHEAD_S = 25.0, 0.001


class CannedEnv:
    """Stands in for SandboxEnv (same constructor): no sandbox, no subprocess; see the module docstring."""

    def __init__(self, task, config=None):
        self.task = task
        self._dir = Path(tempfile.mkdtemp(prefix="bench-canned-"))
        self.workspace = write_files(self._dir, task.repo.files)

    def execute(self, command: str) -> CommandResult:
        if command.startswith("edit "):  # edit PATH <<'EOF'\nOLD\n=======\nNEW\nEOF
            path = command.split("\n", 1)[0].split()[1]
            body = command.split("\n", 1)[1].rsplit("\nEOF", 1)[0]
            old, new = body.split("\n=======\n", 1)
            f = self.workspace / path
            f.write_text(f.read_text().replace(old, new, 1))
            return CommandResult(f"edited {path}", 0)
        return CommandResult("ok", 0)

    def verify(self) -> Verdict:
        ids = self.task.FAIL_TO_PASS + self.task.PASS_TO_PASS
        return Verdict(resolved=True, tests={t: TestResult(outcome="passed") for t in ids})

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run(tasks_file: Path, workers: int, out: Path) -> dict:
    cfg = CollectConfig(tasks=str(tasks_file), out=str(out), mode="expert", expert=POLICY, workers=workers)
    # task template repos are cached per process (oec.env.repos.template): forget them, and start a new template root
    # (their names count from t0), so every run builds its own as a fresh process would
    repos_module = sys.modules["oec.env.repos"]
    repos_module._templates.clear()
    repos_module._root = None
    c0, t0 = tree_cpu(), time.perf_counter()
    collect(cfg, progress=False)
    wall, cpu = time.perf_counter() - t0, tree_cpu() - c0
    trajs = read_trajectories(out)
    n, ran = len(trajs), [t for t in trajs if t.steps]  # an episode that failed to start has no steps nor timings
    # policy time beyond the simulated 50 ms sleep (render + the expert's own decide), per step
    pol = [(t.timings["policy_s"] - 0.05 * len(t.steps)) / len(t.steps) for t in ran]
    over = [(t.timings["total_s"] - t.timings["policy_s"] - t.timings["env_s"] - t.timings["verify_s"]) / len(t.steps)
            for t in ran]
    # with 1 worker: wall time not inside any rollout (env set-up/close, scheduling, writing), per episode
    outside = (wall - sum(t.timings["total_s"] for t in ran)) / n if workers == 1 else None
    return {"n": n, "wall": wall, "eps": n / wall, "cpu_ep": cpu / max(1, n), "over_step": med(over),
            "policy_extra": med(pol), "outside": outside, "resolved": sum(t.resolved for t in trajs),
            "errors": [t.exit_message[:300] for t in trajs if t.exit_status == "error"]}


def variant(name: str, tmp: Path, n1: int, n32: int, rounds: int) -> dict:
    tasks_file = write_tasks(toy_tasks(max(n1, n32), seed=2), tmp / f"{name}-tasks.jsonl")
    small = write_tasks(toy_tasks(n1, seed=2), tmp / f"{name}-tasks-{n1}.jsonl")
    res = {1: [], 32: []}
    if name == "sandbox":  # sandboxes are pooled slots that outlive episodes: start 32 first, as a long run would
        warm = write_tasks(toy_tasks(32, seed=3), tmp / "warm-tasks.jsonl")
        t0 = time.perf_counter()
        run(warm, 32, tmp / "warm-up")
        print(f"  [{name}] warm-up (not counted): 32 episodes on 32 workers, {time.perf_counter() - t0:.2f} s",
              flush=True)
    order = [1, 32, 32, 1] * rounds
    for i, w in enumerate(order[: 2 * rounds]):
        r = run(small if w == 1 else tasks_file, w, tmp / f"{name}-{i}-w{w}")
        res[w].append(r)
        for e in r["errors"][:3]:
            print(f"    error: {e!r}")
        print(f"  [{name}] workers={w:2}: {r['n']} episodes in {r['wall']:.2f} s = {r['eps']:.2f} ep/s, "
              f"resolved {r['resolved']}, errors {len(r['errors'])}, loop overhead {ms(r['over_step'])}/step, "
              f"CPU {ms(r['cpu_ep'])}/episode", flush=True)
    return res


def report(name: str, res: dict) -> tuple[float, float]:
    e1, e32 = med([r["eps"] for r in res[1]]), med([r["eps"] for r in res[32]])
    over = med([r["over_step"] for r in res[1] + res[32]])
    ratio = e32 / e1
    print(f"  {name:8} 1 worker {e1:6.2f} ep/s | 32 workers {e32:6.2f} ep/s | RATIO {ratio:5.1f}x "
          f"(goal >= {GOAL_RATIO:g}x: {verdict_line(ratio >= GOAL_RATIO)}) | loop overhead {ms(over)}/step "
          f"(goal < 1 ms: {verdict_line(over < GOAL_OVERHEAD_S)})")
    cpu = med([r["cpu_ep"] for r in res[1] + res[32]])
    print(f"  {'':8} CPU (this process + every sandbox) {ms(cpu)}/episode: {os.cpu_count()} cores can run at most "
          f"{os.cpu_count() / cpu:.1f} ep/s = {os.cpu_count() / cpu / e1:.1f}x the 1-worker rate")
    outside, pol = med([r["outside"] for r in res[1]]), med([r["policy_extra"] for r in res[1]])
    print(f"  {'':8} 1 worker: {ms(outside)} per episode outside rollout() (env set-up/close, collector); "
          f"policy time beyond the 50 ms sleep {ms(pol)}/step (render + expert's decide + oversleep)")
    return ratio, over


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer episodes, one round")
    ap.add_argument("--rounds", type=int, default=2, help="(1-worker, 32-worker) pairs per variant (default 2)")
    ap.add_argument("--only", choices=("sandbox", "canned"), help="run one variant")
    args = ap.parse_args()
    rounds = 1 if args.quick else args.rounds
    sizes = {"sandbox": (6, 64) if args.quick else (12, 128), "canned": (12, 192) if args.quick else (24, 384)}
    tmp = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    print(f"loop_concurrency  {machine()}")
    print(f"  policy {POLICY}; expert mode; toy tasks seed 2; episodes per run (1 worker, 32 workers): {sizes}")
    results = {}
    for name in ("sandbox", "canned"):
        if args.only and args.only != name:
            continue
        if name == "canned":
            with mock.patch.object(sys.modules["oec.rollout.episodes"], "SandboxEnv", CannedEnv):
                results[name] = variant(name, tmp, *sizes[name], rounds)
        else:
            results[name] = variant(name, tmp, *sizes[name], rounds)
    print("  summary (medians over runs):")
    for name, res in results.items():
        report(name, res)
    print("  note: `canned` is NOT the real environment; it measures the loop and collector alone.")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
