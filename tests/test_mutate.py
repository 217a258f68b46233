"""`oec tasks mutate`: AST mutations, validation by the repo's own tests in the sandbox, and the expert on the
result."""

import ast
import json
import subprocess
import sys
import tarfile
import time

import pytest

from oec.core.metrics import summarize
from oec.core.store import read_trajectories
from oec.rollout.collect import CollectConfig, collect
from oec.tasks.bugs import KINDS, mutants
from oec.tasks.io import load_tasks
from oec.tasks.mutate import MutateConfig, mutate

# needs the system tools `make test` installs (bubblewrap, podman or chromium): not in `make test-fast`
pytestmark = pytest.mark.tools

SAMPLE = '''def f(a, b, items):
    """Docstring stays."""
    total = a + b  # a comment stays too
    if a < b and b > 0:
        return total
    for i in range(len(items) - 1):
        if items[i] == b:
            total = max(total, items[i])
    while False:
        pass
    return pow(total, 2)
'''


def test_every_kind_makes_a_small_valid_change():
    found = {m.kind: m for m in mutants("pkg/m.py", SAMPLE)}
    assert set(found) == set(KINDS)
    for kind, m in found.items():
        ast.parse(m.source)
        old, new = SAMPLE.splitlines(), m.source.splitlines()
        changed = [i for i, (x, y) in enumerate(zip(old, new)) if x != y]
        assert len(changed) <= 3 or len(old) != len(new), kind  # a local change, formatting and comments kept
        assert "# a comment stays too" in m.source and '"""Docstring stays."""' in m.source
    assert "if not (a < b and b > 0):" in found["negated_condition"].source
    assert any("pow(2, total)" in m.source for m in mutants("pkg/m.py", SAMPLE, ("swapped_args",)))


CALC = '''def add(a, b):
    return a + b


def between(x, lo, hi):
    return lo <= x <= hi


def first_big(xs, limit):
    for x in xs:
        if x > limit:
            return x
    return None
'''
CALC_TESTS = '''from calc import add, between, first_big


def test_add():
    assert add(2, 3) == 5


def test_between():
    assert between(2, 1, 3)
    assert not between(5, 1, 3)


def test_first_big():
    assert first_big([1, 5, 9], 4) == 5


def test_first_big_none():
    assert first_big([1, 2], 4) is None
'''


def test_mutate_a_small_repo_and_the_expert_solves_every_task(tmp_path):
    src = tmp_path / "calcrepo"
    (src / "tests").mkdir(parents=True)
    (src / "calc.py").write_text(CALC)
    (src / "tests" / "test_calc.py").write_text(CALC_TESTS)
    # a CRLF file the expert watches (as colorama's demos/demo09.py): once read as LF it looked edited, and the
    # expert "reverted" it instead of fixing the bug
    (src / "demo.py").write_bytes(b"print('demo')\r\n")
    out = tmp_path / "tasks" / "m.jsonl"
    stats = mutate(MutateConfig(repo=str(src), out=str(out), n=3, workers=2), progress=False)
    tasks = load_tasks(out)
    assert stats["kept"] == len(tasks) == 3 and stats["baseline_passing"] == 4
    assert stats["tried"] == stats["survived"] + stats["broke_all"] + stats["timed_out"] + stats["duplicates"] + \
        stats["order_dependent"] + 3
    for t in tasks:
        assert t.FAIL_TO_PASS and t.PASS_TO_PASS and not set(t.FAIL_TO_PASS) & set(t.PASS_TO_PASS)
        fix = [ln[1:].strip() for ln in t.gold_patch.splitlines() if ln[:1] == "+" and not ln.startswith("+++")]
        assert fix and not any(f in t.problem_statement for f in fix if f)  # the statement does not show the fix
        assert t.meta["function"] in ("add", "between", "first_big")
    assert len({t.gold_patch for t in tasks}) == 3
    collect(CollectConfig(tasks=str(out), out=str(tmp_path / "run"), workers=2), progress=False)
    assert summarize(tmp_path / "run")["resolved"] == 3
    assert all("demo.py" not in t.verdict.patch for t in read_trajectories(tmp_path / "run"))
    # the source tree is untouched and OUT.repo's work tree stays clean
    assert (src / "calc.py").read_text() == CALC
    assert (tmp_path / "tasks" / "m.repo" / "calc.py").read_text() == CALC


# A real package, not ours: small, pure Python, its sdist ships its pytest suite (455 tests in ~0.4 s).
REAL = ("inflection", "0.5.1")


@pytest.mark.slow
def test_mutate_a_real_package_from_pypi(tmp_path):
    name, ver = REAL
    dl = subprocess.run([sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps",
                         f"{name}=={ver}", "-d", str(tmp_path)], capture_output=True, text=True, timeout=120)
    # The package registry is reachable wherever `make test` can install (CI included): a failed download is a
    # failure to look at, not a reason to skip the one test on a real package.
    assert dl.returncode == 0, f"cannot download {name}=={ver} from the package index: {dl.stderr.strip()[-300:]}"
    with tarfile.open(next(tmp_path.glob(f"{name}-{ver}.tar.gz"))) as tar:
        tar.extractall(tmp_path, filter="data")
    out = tmp_path / "m.jsonl"
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "oec", "tasks", "mutate", "--repo", str(tmp_path / f"{name}-{ver}"),
                           "--n", "4", "--seed", "0", "--workers", "2", "--out", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    mutate_s = time.monotonic() - t0
    tasks = load_tasks(out)
    assert len(tasks) >= 3, proc.stdout
    assert all(t.FAIL_TO_PASS and t.PASS_TO_PASS for t in tasks)
    t0 = time.monotonic()
    collect(CollectConfig(tasks=str(out), out=str(tmp_path / "gold"), workers=2), progress=False)
    summary = summarize(tmp_path / "gold")
    print(json.dumps({"mutate": proc.stdout.strip(), "mutate_s": round(mutate_s, 1),
                      "collect_s": round(time.monotonic() - t0, 1), "resolved": summary["resolved"],
                      "tasks": len(tasks)}))
    assert summary["resolved"] >= 0.95 * len(tasks)
