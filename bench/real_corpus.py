"""Real PyPI packages: the sandbox's pytest agrees with plain pytest, and `oec tasks mutate` + the expert work on them.

For each package of CORPUS (pinned sdists that ship their tests, pure Python, test dependencies = pytest and what
the venv has): download it once into --cache (`pip download --no-deps --no-binary :all:`), unpack it, then
1. plain: `python -m pytest` in a copy of the tree (PYTHONPATH=src for a src/ layout, as an installed package would
   be found), a watching plugin (pytest_recorder.py) records every report;
2. sandbox: the same tree loaded into a sandbox slot and run by the in-sandbox runner, as `oec tasks mutate` runs
   it (no path arguments: the suite as the project configures it, doctests included where its addopts say so);
3. the per-test outcomes are compared (passed / failed / error / skipped, an xfail counting as skipped and an xpass
   as passed, a failed subtest failing its test): goal 100% identical;
4. `oec tasks mutate --n N` makes tasks and the scripted expert (`oec collect`) runs each once: goal >= 95% resolved.

    python bench/real_corpus.py [--only inflection,idna] [--n 10] [--cache ~/.cache/oec/real-corpus]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from oec.core.metrics import summarize
from oec.rollout.collect import CollectConfig, collect
from oec.tasks.mutate import MutateConfig, _Runner, mutate, source_tree

BENCH = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    styles: str  # what its suite exercises


CORPUS = [
    Package("inflection", "0.5.1", "one module, test file at the root, parametrize"),
    Package("more-itertools", "10.5.0", "unittest.TestCase, subTest (2300 subtests), doctest-free"),
    Package("cachetools", "5.5.0", "src/ layout, unittest.TestCase"),
    Package("idna", "3.10", "unittest.TestCase"),
    Package("xmltodict", "0.13.0", "unittest.TestCase"),
    Package("colorama", "0.4.6", "unittest.TestCase + unittest.mock, tests inside the package, skips"),
    Package("sqlparse", "0.5.1", "conftest fixtures, parametrize, xfail/xpass"),
    Package("tinydb", "4.8.2", "conftest fixtures, tests/ is a package"),
    Package("toolz", "0.12.1", "tests inside the package, plain functions"),
    Package("six", "1.16.0", "one module, a test that fails here (dbm.ndbm missing)"),
    Package("parse", "1.20.2", "one module, pytest functions, a skip"),
    Package("semver", "3.0.2", "src/ layout, doctests via addopts (--doctest-modules, *.rst), conftest, "
                               "--import-mode=importlib, pytest-cov in addopts"),
]


def fetch(pkg: Package, cache: Path) -> Path:
    """The sdist of PKG in CACHE, downloaded on first use."""
    cache.mkdir(parents=True, exist_ok=True)
    found = [p for p in cache.glob("*.tar.gz") if _sdist_of(p, pkg)]
    if not found:
        dl = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                             f"{pkg.name}=={pkg.version}", "-d", str(cache)], capture_output=True, text=True,
                            timeout=300)
        found = [p for p in cache.glob("*.tar.gz") if _sdist_of(p, pkg)]
        if dl.returncode != 0 or not found:
            raise RuntimeError(f"cannot download {pkg.name}=={pkg.version}: {dl.stderr.strip()[-300:]}")
    return found[0]


def _sdist_of(path: Path, pkg: Package) -> bool:
    stem = path.name.removesuffix(".tar.gz").lower().replace("_", "-")
    return stem == f"{pkg.name.lower()}-{pkg.version}"


def unpack(sdist: Path, dest: Path) -> Path:
    with tarfile.open(sdist) as tar:
        top = tar.getnames()[0].split("/")[0]
        tar.extractall(dest, filter="data")
    return dest / top


def outcomes_from_records(lines: list[str]) -> dict[str, str]:
    """Per-test outcome from pytest's reports: a failure in setup/teardown is an error, in the call (or a subtest)
    a failure; else the test's own report says passed or skipped (xfail: skipped, xpass: passed)."""
    out: dict[str, str] = {}
    for rec in map(json.loads, lines):
        nid, when, outcome = rec["nodeid"] or "<collection>", rec["when"], rec["outcome"]
        if outcome == "failed":
            if out.get(nid) != "error":
                out[nid] = "failed" if when == "call" else "error"
        elif rec["kind"] == "TestReport" and (when == "call" or outcome == "skipped") and nid not in out:
            out[nid] = outcome
    return out


def plain_outcomes(tree: Path, timeout: float = 600) -> tuple[dict[str, str], float, str]:
    """({node id: outcome}, seconds, output tail) of plain `python -m pytest` in a copy of TREE."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / tree.name
        shutil.copytree(tree, work, symlinks=True)
        record = Path(tmp) / "record.jsonl"
        paths = ([str(work / "src")] if (work / "src").is_dir() else []) + [str(BENCH)]
        env = {**os.environ, "OEC_RECORD": str(record),
               "PYTHONPATH": os.pathsep.join(paths + [p for p in [os.environ.get("PYTHONPATH")] if p])}
        t0 = time.monotonic()
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "pytest_recorder"], cwd=work, env=env,
                              capture_output=True, text=True, timeout=timeout)
        seconds = time.monotonic() - t0
        lines = record.read_text().splitlines() if record.exists() else []
    return outcomes_from_records(lines), seconds, (proc.stdout + proc.stderr)[-1500:]


def sandbox_outcomes(tree: Path, timeout: float = 600) -> tuple[dict[str, str], float]:
    """({node id: outcome}, seconds) of the in-sandbox runner on TREE, run as `oec tasks mutate` runs a suite."""
    runner = _Runner(tree, sorted(source_tree(tree)), [], timeout)
    try:
        report = runner.run()
    finally:
        runner.close()
    if report.get("error"):
        raise RuntimeError(f"{tree.name}: the sandbox failed: {report['error']}")
    return {nid: outcome for nid, (outcome, _) in report.get("results", {}).items()}, report.get("duration_s", 0.0)


def compare(plain: dict[str, str], sandbox: dict[str, str]) -> list[str]:
    """One line per test whose outcome differs (or that only one side ran)."""
    return [f"{nid}: plain {plain.get(nid, 'absent')}, sandbox {sandbox.get(nid, 'absent')}"
            for nid in sorted(plain.keys() | sandbox.keys()) if plain.get(nid) != sandbox.get(nid)]


def run_package(pkg: Package, cache: Path, work: Path, n: int, workers: int, compare_only: bool = False) -> dict:
    tree = unpack(fetch(pkg, cache), work / "src")
    plain, plain_s, tail = plain_outcomes(tree)
    sandbox, sandbox_s = sandbox_outcomes(tree)
    diffs = compare(plain, sandbox)
    row = {"package": f"{pkg.name}=={pkg.version}", "styles": pkg.styles, "tests": len(plain),
           "plain_passed": sum(o == "passed" for o in plain.values()), "compared": len(plain.keys() | sandbox.keys()),
           "identical": len(plain.keys() | sandbox.keys()) - len(diffs), "diffs": diffs[:20],
           "plain_s": round(plain_s, 2), "sandbox_s": round(sandbox_s, 2)}
    if not plain or compare_only:
        row["plain_tail"] = tail[-300:]
        return row
    out = work / "tasks" / f"{pkg.name}.jsonl"
    t0 = time.monotonic()
    stats = mutate(MutateConfig(repo=str(tree), out=str(out), n=n, seed=0, workers=workers), progress=False)
    row["mutate_s"] = round(time.monotonic() - t0, 1)
    row.update(tried=stats["tried"], kept=stats["kept"], timed_out=stats["timed_out"],
               test_timeout_s=stats["test_timeout_s"])
    if stats["kept"]:
        t0 = time.monotonic()
        run = work / "runs" / pkg.name
        collect(CollectConfig(tasks=str(out), out=str(run), workers=workers), progress=False)
        row["collect_s"] = round(time.monotonic() - t0, 1)
        row["resolved"] = summarize(run)["resolved"]
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated package names (default: all of CORPUS)")
    ap.add_argument("--n", type=int, default=10, help="tasks `oec tasks mutate` keeps per package")
    ap.add_argument("--workers", type=int, default=2, help="sandbox slots in parallel")
    ap.add_argument("--cache", default="~/.cache/oec/real-corpus", help="where the sdists are kept")
    ap.add_argument("--json", default=None, help="also write the rows here")
    ap.add_argument("--compare-only", action="store_true", help="outcomes only, no mutate / expert (e.g. to measure "
                    "an older oec: PYTHONPATH=<its src>)")
    args = ap.parse_args()
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - {p.name for p in CORPUS}
    if unknown:
        sys.exit(f"--only: unknown package(s) {sorted(unknown)}; choose from {', '.join(p.name for p in CORPUS)}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="oec-corpus-") as tmp:
        for pkg in CORPUS:
            if only and pkg.name not in only:
                continue
            row = run_package(pkg, Path(args.cache).expanduser(), Path(tmp) / pkg.name, args.n, args.workers,
                              args.compare_only)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print()
    print("| package | tests | identical | plain s | sandbox s | kept / tried | resolved |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['package']} | {r['tests']} | {r['identical']}/{r['compared']} | {r['plain_s']} | "
              f"{r['sandbox_s']} | {r.get('kept', 0)} / {r.get('tried', 0)} | {r.get('resolved', 0)} |")
    same, total = sum(r["identical"] for r in rows), sum(r["compared"] for r in rows)
    kept, resolved = sum(r.get("kept", 0) for r in rows), sum(r.get("resolved", 0) for r in rows)
    print(f"\nidentical outcomes: {same}/{total} = {same / max(total, 1):.1%} (goal 100%); expert resolved "
          f"{resolved}/{kept} = {resolved / max(kept, 1):.1%} of the mutants (goal >= 95%); "
          f"{len(rows)} packages")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
