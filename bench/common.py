"""Helpers shared by the benchmarks: toy tasks, plain git workspaces, a machine line, and summary statistics."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from pathlib import Path

from oec.tasks.toy import ToyConfig, generate
from oec.core.types import Task

GIT_ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@localhost", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@localhost", "GIT_CONFIG_NOSYSTEM": "1"}


def toy_tasks(n: int, seed: int = 0, **knobs) -> list[Task]:
    return generate("train", n, seed, ToyConfig(**knobs))


def write_files(root: Path, files: dict[str, str]) -> Path:
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content)
    return root


def git_repo(root: Path, files: dict[str, str]) -> Path:
    """FILES committed in a fresh git repo at ROOT (built with git itself, not with oec's template code)."""
    write_files(root, files)
    env = {**os.environ, **GIT_ENV}
    for cmd in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "base"]):
        subprocess.run(["git", "-C", str(root), *cmd], env=env, check=True, capture_output=True)
    return root


def oec_source() -> str:
    """Where `oec` was imported from, and its git commit (+dirty) when that is a work tree."""
    import oec

    src = Path(oec.__file__).resolve().parent
    git = ["git", "-C", str(src)]
    head = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    if not head:  # e.g. a `git archive` snapshot run with PYTHONPATH; a COMMIT file beside src/ names its commit
        note = src.parent.parent / "COMMIT"
        return f"{src} (snapshot of {note.read_text().strip()})" if note.exists() else str(src)
    dirty = subprocess.run(git + ["status", "--porcelain", "--", str(src)], capture_output=True, text=True).stdout
    return f"{src} @ {head}{' +uncommitted changes' if dirty.strip() else ''}"


def tree_cpu() -> float:
    """CPU seconds used so far by this process and all its descendants, live or reaped (user + system).

    Reaped processes count through their parent's cutime/cstime, so sandboxed work that outlives an episode (a pooled
    sandbox's pid 1, which reaps the test runs it forks) is included as well.
    """
    procs = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        procs[int(pid)] = (int(f[1]), sum(int(x) for x in f[11:15]))  # ppid; utime stime cutime cstime
    mine, todo = set(), [os.getpid()]
    while todo:
        p = todo.pop()
        mine.add(p)
        todo += [c for c, (pp, _) in procs.items() if pp == p and c not in mine]
    return sum(procs[p][1] for p in mine if p in procs) / os.sysconf("SC_CLK_TCK")


def machine() -> str:
    load = " ".join(open("/proc/loadavg").read().split()[:3])
    return (f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"load avg {load}; oec: {oec_source()}")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def ms(x: float) -> str:
    return f"{x * 1000:.2f} ms"


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def verdict_line(ok: bool) -> str:
    return "MET" if ok else "NOT MET"
