"""Verification cost per toy episode: this checkout's verifier against another checkout's, side by side.

Each episode: a toy task's workspace, its gold patch applied by a command in the sandbox (as an agent would), then
`env.verify()` timed (wall and CPU of this process and its descendants, the sandbox included). The two checkouts run
in alternating subprocesses (`--rounds` each, the same tasks), so machine load hits both alike; the ratio of the
medians is printed.

    python bench/verify_cost.py --baseline /path/to/old/src [--n 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"


def measure(n: int) -> dict:
    from common import toy_tasks, tree_cpu

    from oec.env.sandbox_env import SandboxEnv

    tasks = toy_tasks(n + 1, seed=3)
    walls, cpus, resolved = [], [], 0
    for i, task in enumerate(tasks):
        with SandboxEnv(task) as env:
            env.execute(f"git apply <<'OEC_EOF'\n{task.gold_patch}OEC_EOF")
            c0, t0 = tree_cpu(), time.perf_counter()
            verdict = env.verify()
            wall, cpu = time.perf_counter() - t0, tree_cpu() - c0
        if i:  # the first episode starts the pooled sandbox: not counted
            walls.append(wall)
            cpus.append(cpu)
            resolved += verdict.resolved
    return {"wall": statistics.median(walls), "cpu": statistics.median(cpus), "resolved": resolved, "n": n}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", type=Path, help="src/ directory of the checkout to compare with")
    ap.add_argument("--n", type=int, default=30, help="episodes per round (default 30)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per checkout, alternating (default 3)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.n)))
        return
    runs: dict[str, list[dict]] = {"this": [], "baseline": []}
    for _ in range(args.rounds):
        for name, src in (("this", SRC), ("baseline", args.baseline)):
            if src is None:
                continue
            env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{HERE}"}
            out = subprocess.run([sys.executable, __file__, "--child", "--n", str(args.n)], env=env,
                                 capture_output=True, text=True, check=True).stdout
            runs[name].append(json.loads(out.splitlines()[-1]))
    print(f"{'checkout':10} {'verify wall (median of rounds)':>32} {'CPU':>10} {'resolved':>10}")
    meds = {}
    for name, rs in runs.items():
        if not rs:
            continue
        meds[name] = {k: statistics.median(r[k] for r in rs) for k in ("wall", "cpu")}
        ok = f"{sum(r['resolved'] for r in rs)}/{sum(r['n'] for r in rs)}"
        print(f"{name:10} {meds[name]['wall'] * 1000:29.1f} ms {meds[name]['cpu'] * 1000:7.1f} ms {ok:>10}")
    if len(meds) == 2:
        print(f"ratio this/baseline: wall {meds['this']['wall'] / meds['baseline']['wall']:.2f}x, "
              f"CPU {meds['this']['cpu'] / meds['baseline']['cpu']:.2f}x")


if __name__ == "__main__":
    main()
