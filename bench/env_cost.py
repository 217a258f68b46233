"""Environment cost of one toy episode, and a check that the verifier agrees with plain pytest.

Env cost = everything but the policy: building the task's template repo (first use of a task in a process), copying
the workspace and starting the sandboxes (`SandboxEnv(...)`), the agent's commands (`env_s` of the rollout, split into
`runtests` and the rest), the final verification (`verify_s`) and `env.close()`. Episodes are the scripted expert's
(`scripted:expert`, no latency unless --latency) on distinct toy tasks, one at a time; the median is over episodes.
CPU (this process and every descendant, sandboxes included) is printed too: it bounds throughput on few cores.

Check: for a sample of tasks, the base workspace and the gold-patched one are verified by `SandboxEnv.verify()` and by
`python -m pytest -q -rA <ids>` run directly in a plain copy; the outcome of every test id must be the same.

Goal: median env cost <= 100 ms per episode, with identical results.
"""

from __future__ import annotations

import argparse
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine, med, ms, pct, toy_tasks, tree_cpu, verdict_line, write_files

import oec.env.repos
from oec.env.sandbox_env import SandboxEnv
from oec.rollout.policies import make_policy
from oec.rollout.loop import rollout
from oec.rollout.schedules import make_schedule
from oec.core.types import Task

GOAL_S = 0.100
PARTS = ("template", "setup", "runtests_first", "runtests_rest", "commands", "verify", "close")


def episode(task: Task, policy) -> dict:
    c0 = tree_cpu()
    t0 = time.perf_counter()
    oec.env.repos.template(task)  # cached per process; SandboxEnv would build it on first use
    t1 = time.perf_counter()
    env = SandboxEnv(task)
    t2 = time.perf_counter()
    plan = make_schedule("expert").plan(task, {"expert": policy}, random.Random(0), lambda: None)
    traj = rollout(task, env, plan, mode="expert", seed=0)
    t3 = time.perf_counter()
    env.close()
    t4 = time.perf_counter()
    rt = [s.env_latency_s for s in traj.steps if s.action and s.action.kind == "bash"
          and s.action.command.startswith("runtests")]
    tm = traj.timings
    parts = {"template": t1 - t0, "setup": t2 - t1, "runtests_first": rt[0] if rt else 0.0,
             "runtests_rest": sum(rt[1:]), "commands": tm["env_s"] - sum(rt), "verify": tm["verify_s"],
             "close": t4 - t3}
    parts["total"] = sum(parts.values())
    parts["cpu"] = tree_cpu() - c0
    parts["resolved"] = traj.resolved
    return parts


def gold_apply(ws: Path, patch: str) -> None:
    subprocess.run(["git", "apply", "-"], cwd=ws, input=patch, text=True, check=True, capture_output=True)


def plain_pytest(task: Task, gold: bool) -> dict[str, str]:
    """Per test id: passed / failed / error / missing, from `python -m pytest -q -rA` in a plain directory."""
    with tempfile.TemporaryDirectory(prefix="bench-plain-") as d:
        ws = write_files(Path(d), task.repo.files)
        if gold:
            gold_apply(ws, task.gold_patch)
        ids = task.FAIL_TO_PASS + task.PASS_TO_PASS
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", *ids], cwd=ws,
                             capture_output=True, text=True, timeout=120).stdout
    seen = {}
    for m in re.finditer(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (\S+)", out, re.M):
        seen[m.group(2)] = {"PASSED": "passed", "FAILED": "failed", "ERROR": "error"}.get(m.group(1), "failed")
    return {tid: seen.get(tid, "missing") for tid in ids}


def ours(task: Task, gold: bool) -> dict[str, str]:
    with SandboxEnv(task) as env:
        if gold:
            gold_apply(env.workspace, task.gold_patch)
        verdict = env.verify()
    return {tid: r.outcome for tid, r in verdict.tests.items()}


def check(tasks: list[Task]) -> tuple[int, list[str]]:
    compared, diffs = 0, []
    for task in tasks:
        for gold in (False, True):
            a, b = ours(task, gold), plain_pytest(task, gold)
            for tid in a.keys() | b.keys():
                compared += 1
                if a.get(tid) != b.get(tid):
                    diffs.append(f"{task.task_id} {'gold' if gold else 'base'} {tid}: oec={a.get(tid)} pytest={b.get(tid)}")
    return compared, diffs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="episodes (default 200)")
    ap.add_argument("--quick", action="store_true", help="20 episodes, 5 tasks checked")
    ap.add_argument("--check", type=int, default=20, help="tasks whose verdicts are compared with plain pytest")
    ap.add_argument("--latency", type=float, default=0.0, help="expert's simulated seconds per call (default 0)")
    args = ap.parse_args()
    n, n_check = (20, 5) if args.quick else (args.n, args.check)
    tasks = toy_tasks(n, seed=1)
    policy = make_policy(f"scripted:expert?latency={args.latency}")
    episode(toy_tasks(1, seed=99)[0], policy)  # imports, first fork of each kind: not counted
    eps = [episode(t, policy) for t in tasks]
    compared, diffs = check(tasks[:n_check])

    print(f"env_cost  {machine()}")
    print(f"  {n} expert episodes (toy, seed 1, expert latency {args.latency:g}s), one at a time; "
          f"resolved {sum(e['resolved'] for e in eps)}/{n}")
    print(f"  {'part':16}{'median':>11}{'p90':>11}{'mean':>11}")
    for k in PARTS + ("total", "cpu"):
        xs = [e[k] for e in eps]
        print(f"  {k:16}{ms(med(xs)):>11}{ms(pct(xs, 0.9)):>11}{ms(sum(xs) / len(xs)):>11}")
    print("  (template: git init+commit of the task's repo (first use in a process); setup: SandboxEnv() (sandbox, copy")
    print("   of the workspace, shell); runtests_first: the expert's first `runtests`; cpu: CPU time of this process and")
    print("   all its descendants, sandboxes included, during the episode)")
    total = med([e["total"] for e in eps])
    print(f"  verifier vs plain pytest: {len(tasks[:n_check])} tasks x (base, gold), {compared} test outcomes compared, "
          f"{len(diffs)} differ")
    for d in diffs[:10]:
        print(f"    DIFF {d}")
    ok = total <= GOAL_S and not diffs
    print(f"  MEDIAN ENV COST = {ms(total)} per episode, results {'identical' if not diffs else 'DIFFER'}; "
          f"goal <= {ms(GOAL_S)} with identical results: {verdict_line(ok)}")


if __name__ == "__main__":
    main()
