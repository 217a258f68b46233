"""`oec tasks mutate`: SWE-shaped tasks from any Python repo with a pytest suite, by procedural bug injection.

1. The repo's files are committed, as they are, to a new git repo next to the tasks file (OUT.repo/); it is what
   the tasks' workspaces are built from, so the tasks keep working if the source tree changes or goes away.
2. The test suite runs once in the sandbox, as plain `python -m pytest` runs it in the repo root (its config,
   testpaths and addopts apply); the tests that pass there are the candidates for FAIL_TO_PASS and PASS_TO_PASS
   (a test that already fails, e.g. for a missing optional dependency, is never used).
3. Mutants (bugs.py) are tried in a seeded order, in parallel over sandbox slots. One is kept only if some
   passing tests now fail (FAIL_TO_PASS) and some still pass (PASS_TO_PASS); at most `per_function` per function,
   no two with the same patch. Each kept mutant is a commit in OUT.repo (branch = task id, as SWE-smith keeps a
   branch per bug), and its gold patch is the diff back to the clean file.

The sandbox runs the tests with the host's Python and pytest: the package must import from the repo root and its
tests need nothing but pytest and the stdlib (a pure-Python package). A dependency the sandbox lacks makes the
baseline fail, and the error says so.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import random
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from oec.core.atomic import check_output
from oec.core.errors import InputError, SandboxError
from oec.core.types import GitRepo, Task
from oec.env.repos import git
from oec.env.sandbox.bwrap import WORKSPACE
from oec.env.sandbox.shell import POOL, Slot
from oec.tasks.bugs import KINDS, Mutant, mutants
from oec.tasks.io import write_tasks

SKIP_DIRS = {".git", ".hg", ".svn", ".tox", ".nox", ".venv", "venv", "__pycache__", ".eggs", "build", "dist",
             ".pytest_cache", ".mypy_cache", "node_modules"}
NOT_SOURCE_DIRS = {"docs", "doc", "examples", "example", "benchmarks", "bench", "scripts", "tools"}
CLEAN_TIMEOUT = 600.0  # seconds for the clean suite's run when no --test-timeout is given
MARKER = "oec-mutants"  # in OUT.repo/.git: lets a re-run replace a repo this command wrote, and nothing else


class MutateConfig(BaseModel):
    """Options of `oec tasks mutate`."""

    model_config = ConfigDict(extra="forbid")
    repo: str = Field(description="the Python repository (a directory; a git work tree or a plain source tree)")
    out: str = Field(description="tasks JSONL to write; the workspaces' repo goes to OUT.repo/ next to it")
    n: int = Field(50, ge=1, description="tasks to keep")
    seed: int = Field(0, description="order in which mutants are tried")
    split: str = Field("train", description="split written into the tasks")
    kinds: list[str] = Field(list(KINDS), description=f"mutation kinds, from {KINDS}")
    per_function: int = Field(2, ge=1, description="tasks kept per function at most")
    max_tries: int | None = Field(None, ge=1, description="mutants tried at most [10 * n]")
    workers: int = Field(max(1, min(4, os.cpu_count() or 1)), ge=1, description="sandbox slots used in parallel")
    test_timeout: float | None = Field(None, gt=0, description="seconds for one run of a mutant's test suite [10 + 5x "
                                       "the clean run's: a mutant that loops forever costs that much]")


def is_test_file(rel: str) -> bool:
    parts = rel.split("/")
    name = parts[-1]
    return name.endswith(".py") and (name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"
                                     or any(p in ("tests", "test", "testing") for p in parts[:-1]))


def is_source_file(rel: str) -> bool:
    parts = rel.split("/")
    return (rel.endswith(".py") and not is_test_file(rel) and parts[-1] not in ("setup.py", "noxfile.py")
            and not any(p in NOT_SOURCE_DIRS or p.startswith(".") for p in parts[:-1]))


def source_tree(repo: Path) -> dict[str, bytes]:
    """The repo's files: what git tracks in a work tree (as they are on disk), else everything but caches."""
    try:
        top = git(repo, "rev-parse", "--show-toplevel").strip()
    except subprocess.CalledProcessError:
        top = None
    if top and Path(top).resolve() == repo.resolve():
        rels = [r for r in git(repo, "ls-files", "-z").split("\0") if r]
    else:
        rels = []
        for dirpath, dirnames, filenames in os.walk(repo):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.endswith(".egg-info"))
            rels += [os.path.relpath(os.path.join(dirpath, f), repo) for f in sorted(filenames)
                     if not f.endswith((".pyc", ".pyo"))]
    return {r: (repo / r).read_bytes() for r in rels if (repo / r).is_file() and not (repo / r).is_symlink()}


def statement(failures: dict[str, str]) -> str:
    """An issue-like report from failing tests: what fails and how, never where the code is wrong or the fix."""
    first = sorted(failures)[0]
    message = failures[first].strip()
    text = f"After a recent change, `{first}` fails"
    text += f":\n\n    {message}\n" if message else ".\n"
    others = sorted(failures)[1:]
    if others:
        shown = ", ".join(f"`{t}`" for t in others[:3])
        more = f" and {len(others) - 3} more" if len(others) > 3 else ""
        text += f"\n{len(others)} other test{'s' if len(others) > 1 else ''} fail{'' if len(others) > 1 else 's'} " \
                f"too: {shown}{more}.\n"
    return text + "\nThe tests themselves are correct; please fix the code so that they pass."


class _Runner:
    """Runs the test suite in sandbox slots loaded with the clean repo, one slot per worker thread."""

    def __init__(self, clean: Path, files: list[str], tests: list[str], timeout: float):
        self.clean, self.files, self.tests, self.timeout = clean, files, tests, timeout
        self.local = threading.local()
        self.slots: list[Slot] = []
        self.lock = threading.Lock()

    def _slot(self) -> Slot:
        slot = getattr(self.local, "slot", None)  # threading.local: absent until this thread's first run
        if slot is None or not slot.alive:
            slot = POOL.acquire()
            slot.load(self.clean)
            self.local.slot = slot
            with self.lock:
                self.slots.append(slot)
        return slot

    def run(self, path: str | None = None, text: str | None = None, tests: list[str] | None = None) -> dict:
        """{node id: (outcome, message)} of the whole suite (or of TESTS, node ids run in that order), with PATH's
        content replaced by TEXT for the run."""
        slot = self._slot()
        target = slot.workspace / path if path else None
        original = target.read_bytes() if target else None
        if target:
            target.write_text(text)
        try:
            report = slot.control("verify", timeout=self.timeout + 60, cwd=WORKSPACE, restore={}, known=self.files,
                                  tests=self.tests if tests is None else tests, test_timeout=self.timeout)
        except SandboxError as e:
            self.local.slot = None
            return {"error": str(e), "results": {}, "timed_out": False}
        finally:
            if target:
                target.write_bytes(original)
        return report

    def close(self) -> None:
        for slot in self.slots:
            POOL.release(slot)


def _init_repo(out_repo: Path, files: dict[str, bytes]) -> str:
    if out_repo.exists():
        if not (out_repo / ".git" / MARKER).exists():
            raise InputError(f"{out_repo} exists and was not written by `oec tasks mutate`; move it or choose "
                             "another --out")
        shutil.rmtree(out_repo)
    for rel, data in files.items():
        (out_repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (out_repo / rel).write_bytes(data)
    git(out_repo, "init", "-q", "-b", "main", "--template=")
    (out_repo / ".git" / MARKER).write_text("")
    git(out_repo, "add", "-A")
    git(out_repo, "commit", "-q", "-m", "clean")
    return git(out_repo, "rev-parse", "HEAD").strip()


def _commit_mutant(out_repo: Path, clean: str, m: Mutant, branch: str) -> str:
    """A commit with M's file on top of the clean one, made without touching the work tree (it stays clean)."""
    blob = git(out_repo, "hash-object", "-w", "--stdin", input=m.source.encode()).strip()
    with tempfile.TemporaryDirectory() as scratch:
        env = {"GIT_INDEX_FILE": os.path.join(scratch, "index")}
        git(out_repo, "read-tree", clean, env=env)
        mode = git(out_repo, "ls-files", "-s", "--", m.path, env=env).split(" ", 1)[0] or "100644"
        git(out_repo, "update-index", "--cacheinfo", f"{mode},{blob},{m.path}", env=env)
        tree = git(out_repo, "write-tree", env=env).strip()
    commit = git(out_repo, "commit-tree", tree, "-p", clean, "-m", f"{m.kind} in {m.function}").strip()
    git(out_repo, "update-ref", f"refs/heads/{branch}", commit)
    return commit


def mutate(cfg: MutateConfig, progress: bool = True) -> dict:
    """Write cfg.out (tasks) and OUT.repo; return the counts (tried, survived, broke_all, ..., kept)."""
    t0 = time.monotonic()
    repo = Path(cfg.repo).expanduser()
    if not repo.is_dir():
        raise InputError(f"--repo {repo}: no such directory")
    check_output(cfg.out, "file")
    unknown = sorted(set(cfg.kinds) - set(KINDS))
    if unknown:
        raise InputError(f"unknown mutation kind(s) {unknown}; choose from {', '.join(KINDS)}")
    files = source_tree(repo)
    tests = sorted(r for r in files if is_test_file(r) and Path(r).name != "conftest.py")
    sources = sorted(r for r in files if is_source_file(r))
    if not tests:
        raise InputError(f"{repo}: no test files found (test_*.py, *_test.py, or files under tests/)")
    out = Path(cfg.out)
    out_repo = out.parent.resolve() / (out.name.removesuffix(".jsonl") + ".repo")
    out_repo.parent.mkdir(parents=True, exist_ok=True)
    clean = _init_repo(out_repo, files)
    name = repo.resolve().name
    # no path arguments: the suite as the project configures it (testpaths, doctests), as plain `pytest` runs it
    runner = _Runner(out_repo, sorted(files), [], cfg.test_timeout or CLEAN_TIMEOUT)
    stats = {"candidates": 0, "tried": 0, "survived": 0, "broke_all": 0, "timed_out": 0, "duplicates": 0,
             "order_dependent": 0, "kept": 0}
    tasks: list[Task] = []
    try:
        t_clean = time.monotonic()
        base = runner.run()
        runner.timeout = cfg.test_timeout or 10 + 5 * (time.monotonic() - t_clean)
        stats["test_timeout_s"] = round(runner.timeout, 1)
        passing = sorted(t for t, (o, _) in base.get("results", {}).items() if o == "passed" and "::" in t)
        stats["baseline_passing"] = len(passing)
        if not passing:
            detail = base.get("error") or (base.get("stderr") or "").strip()[-500:] or "no test passed"
            raise InputError(f"{repo}: the test suite does not pass in the sandbox, so no mutant can be validated "
                             f"(it needs the package importable from the repo root and only pytest + the stdlib): "
                             f"{detail}")
        pool_ = [m for r in sources for m in mutants(r, files[r].decode(errors="replace"), tuple(cfg.kinds))]
        stats["candidates"] = len(pool_)
        random.Random(f"mutate:{cfg.seed}").shuffle(pool_)
        pool_ = pool_[: cfg.max_tries or 10 * cfg.n]
        per_fn: dict[tuple[str, str], int] = {}
        patches: set[str] = set()
        bar = tqdm(total=len(pool_), desc="mutate", unit="mutant", disable=not progress, dynamic_ncols=True)
        with ThreadPoolExecutor(cfg.workers, thread_name_prefix="mutate") as ex:
            # batches in the seeded order, results taken in that order: the kept set does not depend on timing
            for start in range(0, len(pool_), cfg.workers * 2):
                if stats["kept"] >= cfg.n:
                    break
                batch = [m for m in pool_[start:start + cfg.workers * 2]
                         if per_fn.get((m.path, m.function), 0) < cfg.per_function]
                for m, report in zip(batch, ex.map(lambda m: runner.run(m.path, m.source), batch)):
                    bar.update(1)
                    # results past the n-th kept one, or of a function that filled up in this batch, are not used
                    if stats["kept"] >= cfg.n or per_fn.get((m.path, m.function), 0) >= cfg.per_function:
                        continue
                    stats["tried"] += 1
                    task = _judge(m, report, passing, files, stats, patches, per_fn, cfg, name, out_repo, clean,
                                  tests, runner)
                    if task:
                        tasks.append(task)
                    bar.set_postfix(kept=stats["kept"])
        bar.close()
    finally:
        runner.close()
    write_tasks(tasks, out)
    stats["seconds"] = round(time.monotonic() - t0, 1)
    stats["repo"] = str(out_repo)
    return stats


def _judge(m: Mutant, report: dict, passing: list[str], files: dict[str, bytes], stats: dict, patches: set,
           per_fn: dict, cfg: MutateConfig, name: str, out_repo: Path, clean: str, tests: list[str],
           runner: _Runner) -> Task | None:
    """The task for mutant M if its test results make one (and count why not otherwise)."""
    if report.get("timed_out"):
        stats["timed_out"] += 1
        return None
    results = report.get("results", {})
    outcome = {t: results.get(t, ("missing", "test was not run (collection error?)")) for t in passing}
    f2p = [t for t in passing if outcome[t][0] != "passed"]
    p2p = [t for t in passing if outcome[t][0] == "passed"]
    if not f2p:
        stats["survived"] += 1
        return None
    if not p2p:
        stats["broke_all"] += 1
        return None
    original = files[m.path].decode(errors="replace")
    gold = "".join(difflib.unified_diff(m.source.splitlines(keepends=True), original.splitlines(keepends=True),
                                        fromfile=f"a/{m.path}", tofile=f"b/{m.path}"))
    if gold in patches:
        stats["duplicates"] += 1
        return None
    # The verifier runs FAIL_TO_PASS + PASS_TO_PASS by node id in that order, not in the suite's: a test that depends
    # on what ran before it (six's test_lazy: no earlier test imported html.parser) must pass so on the clean code.
    confirmed = runner.run(tests=f2p + p2p).get("results", {})
    f2p, p2p = ([t for t in ids if confirmed.get(t, ("missing",))[0] == "passed"] for ids in (f2p, p2p))
    if not f2p or not p2p:
        stats["order_dependent"] += 1
        return None
    patches.add(gold)
    per_fn[(m.path, m.function)] = per_fn.get((m.path, m.function), 0) + 1
    task_id = f"{name}.{m.kind}.{hashlib.sha256(gold.encode()).hexdigest()[:8]}"
    commit = _commit_mutant(out_repo, clean, m, task_id)
    stats["kept"] += 1
    return Task(task_id=task_id, suite="mutate", split=cfg.split,
                problem_statement=statement({t: outcome[t][1] for t in f2p}),
                repo=GitRepo(kind="git", path=str(out_repo), base_commit=commit),
                FAIL_TO_PASS=f2p, PASS_TO_PASS=p2p, test_files=tests, gold_patch=gold,
                meta={"function": m.function, "mutation": m.kind, "file": m.path, "line": m.line,
                      "source": str(Path(cfg.repo).resolve())})
