"""Per-command latency: oec's sandboxed persistent shell vs mini-swe-agent's LocalEnvironment.

Measures the median wall time of one agent command (`ls`, `cat`, `grep -rn`, `git status/diff`, `sed -n`, `wc`,
`python -c`, a few `python -m pytest`, ...) run through `oec.env.sandbox.shell.PersistentShell.run` (bubblewrap sandbox,
one long-lived bash) and through mini-swe-agent's `LocalEnvironment.execute` (no sandbox, one `subprocess.Popen`
with shell=True per command), on the same 200 commands over two identical copies of a toy task's git repo.

mini-swe-agent (the `miniswe` extra, in `make install`'s dev set) runs as a worker subprocess that times each
command itself and answers in JSON; ours runs in this process. The two alternate command by command (each command
runs on both back to back, the order flipping every time), so both see the same machine noise; the median of the
per-command ratios is printed too.

Goal: median(ours) <= 0.5 x median(theirs), although ours is sandboxed and theirs is not.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import git_repo, machine, med, ms, pct, toy_tasks, verdict_line

from oec.env.sandbox.shell import PersistentShell

BENCH = Path(__file__).resolve().parent
GOAL = 0.5

WORKER = r'''
import contextlib, json, os, sys, time
with contextlib.redirect_stdout(sys.stderr):  # mini-swe-agent prints a banner on import
    from minisweagent.environments.local import LocalEnvironment
    from importlib.metadata import version
env = LocalEnvironment(cwd=sys.argv[1], env=json.loads(sys.argv[2]))
print(json.dumps({"version": version("mini-swe-agent")}), flush=True)
for line in sys.stdin:
    out = []
    for cmd in json.loads(line):
        t0 = time.perf_counter()
        r = env.execute({"command": cmd})
        out.append([time.perf_counter() - t0, r["returncode"]])
    print(json.dumps(out), flush=True)
'''


def ensure_venv() -> Path:
    """The interpreter the mini-swe-agent worker runs on: this one (mini-swe-agent is in the dev extra)."""
    if importlib.util.find_spec("minisweagent") is None:
        sys.exit("mini-swe-agent is not installed: pip install 'oec[miniswe]' (make install does)")
    return Path(sys.executable)


def commands(files: dict[str, str], pkg: str, n: int, seed: int = 0) -> list[str]:
    """N commands of the kinds an agent runs, over the repo's real file and function names."""
    rng = random.Random(seed)
    srcs = [p for p in files if p.startswith(pkg + "/") and not p.endswith("__init__.py")]
    tests = [p for p in files if p.startswith("tests/")]
    fns = sorted({ln[4:].split("(")[0] for p in srcs for ln in files[p].splitlines() if ln.startswith("def ")})
    kinds = [
        lambda: "ls", lambda: "ls -la", lambda: f"ls {pkg} tests",
        lambda: f"cat {rng.choice(srcs)}", lambda: f"cat {rng.choice(tests)}",
        lambda: f"grep -rn 'def {rng.choice(fns)}(' {pkg}", lambda: f"grep -rn '{rng.choice(fns)}' .",
        lambda: "git status", lambda: "git diff", lambda: "git log --oneline -3",
        lambda: "echo hello", lambda: "echo done && pwd",
        lambda: f"sed -n '{rng.randint(1, 10)},{rng.randint(11, 30)}p' {rng.choice(srcs)}",
        lambda: f"wc -l {rng.choice(srcs)}", lambda: f"wc -l {pkg}/*.py",
        lambda: "python -c 'print(1)'", lambda: f"head -n 12 {rng.choice(tests)}",
        lambda: "find . -name '*.py' -not -path './.git/*'", lambda: f"tail -n 5 {rng.choice(srcs)}",
    ]
    cmds = [rng.choice(kinds)() for _ in range(n)]
    for i in rng.sample(range(n), max(1, n // 50)):  # ~2%: a cold pytest run, as an agent does now and then
        cmds[i] = f"python -m pytest -q -p no:cacheprovider {rng.choice(tests)}"
    return cmds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="commands (default 200)")
    ap.add_argument("--quick", action="store_true", help="50 commands")
    ap.add_argument("--block", type=int, default=1, help="commands per alternation block (default 1)")
    args = ap.parse_args()
    n = 50 if args.quick else args.n
    py = ensure_venv()
    task = toy_tasks(1, seed=0, modules=5, functions_per_module=4)[0]
    pkg = task.meta["package"]
    tmp = Path(tempfile.mkdtemp(prefix="bench-shell-"))
    ours_ws = git_repo(tmp / "ours", task.repo.files)
    theirs_ws = git_repo(tmp / "theirs", task.repo.files)
    cmds = commands(task.repo.files, pkg, n)

    # Same interpreter on PATH for both, and the pager settings mini-swe-agent's default config uses.
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "PAGER": "cat", "GIT_PAGER": "cat",
           "MANPAGER": "cat", "LESS": "-R", "PIP_PROGRESS_BAR": "off", "TQDM_DISABLE": "1"}
    worker = subprocess.Popen([str(py), "-c", WORKER, str(theirs_ws), json.dumps(env)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    msa_version = json.loads(worker.stdout.readline())["version"]

    def theirs(block: list[str]) -> list[list]:
        worker.stdin.write(json.dumps(block) + "\n")
        worker.stdin.flush()
        return json.loads(worker.stdout.readline())

    t0 = time.perf_counter()
    shell = PersistentShell(ours_ws)
    start_s = time.perf_counter() - t0
    # if a test server warms up in the background, let its pytest import finish before timing anything
    shell.run("for i in $(seq 40); do [ -f /tmp/.oec/pid ] && break; sleep 0.05; done")

    def ours(block: list[str]) -> list[list]:
        out = []
        for cmd in block:
            t = time.perf_counter()
            r = shell.run(cmd)
            out.append([time.perf_counter() - t, r.returncode])
        return out

    warm = cmds[: args.block]
    ours(warm), theirs(warm)  # page cache, first forks: not timed
    t_ours, t_theirs, rc_diff = [], [], []
    for b, i in enumerate(range(0, n, args.block)):
        block = cmds[i : i + args.block]
        first, second = (ours, theirs) if b % 2 == 0 else (theirs, ours)
        r1, r2 = first(block), second(block)
        ro, rt = (r1, r2) if first is ours else (r2, r1)
        t_ours += [t for t, _ in ro]
        t_theirs += [t for t, _ in rt]
        rc_diff += [c for c, (a, z) in zip(block, zip(ro, rt)) if a[1] != z[1]]
    shell.close()
    worker.stdin.close()
    worker.wait()
    shutil.rmtree(tmp, ignore_errors=True)

    ratio = med(t_ours) / med(t_theirs)
    paired = med([a / z for a, z in zip(t_ours, t_theirs)])
    print(f"shell_latency  {machine()}")
    print(f"  {n} commands, alternating in blocks of {args.block}; mini-swe-agent {msa_version} (LocalEnvironment)")
    print(f"  {'':28}{'median':>10}{'p90':>11}{'mean':>11}")
    for name, ts in (("oec PersistentShell (bwrap)", t_ours), ("mini-swe-agent Local", t_theirs)):
        print(f"  {name:28}{ms(med(ts)):>10}{ms(pct(ts, 0.9)):>11}{ms(sum(ts) / len(ts)):>11}")
    print(f"  oec shell start (sandbox + bash): {ms(start_s)} (once per sandbox, not in the figures above)")
    by_kind: dict[str, tuple[list, list]] = {}
    for c, a, z in zip(cmds, t_ours, t_theirs):
        k = " ".join(c.split()[:2]) if c.startswith(("git", "python")) else c.split()[0]
        by_kind.setdefault(k, ([], []))[0].append(a), by_kind[k][1].append(z)
    print("  per kind (median ours / theirs):")
    for k, (a, z) in sorted(by_kind.items()):
        print(f"    {k:18} n={len(a):3}  {ms(med(a)):>10} / {ms(med(z)):>10}  = {med(a) / med(z):.2f}x")
    if rc_diff:
        print(f"  note: {len(rc_diff)} commands gave different exit codes, e.g. {rc_diff[0]!r}")
    print(f"  median of per-command ratios ours/theirs = {paired:.3f}x")
    print(f"  RATIO ours/theirs (medians) = {ratio:.3f}x   goal <= {GOAL}x: {verdict_line(ratio <= GOAL)}")


if __name__ == "__main__":
    main()
