"""What each speed trick of the in-sandbox pytest runner (src/oec/env/sandbox/tools/testserver.py) saves per run.

The runner forks a child per run from a process with pytest imported; the child's CPU time (user + sys, from
RUSAGE_CHILDREN, so other load on the machine moves it less than wall time) is measured for the runner as it is and
for variants of it, interleaved round-robin, median over --reps runs each, on a small suite of plain test functions:
- each builtin plugin additionally disabled with `-p no:NAME` (what disabling it would save);
- the cache plugin enabled (the one plugin the runner keeps off);
- the venv's entry-point plugins autoloaded in the child (a distribution scan per run) instead of registered from
  the ones the server imported once;
- the server's objects not frozen (gc.freeze) before forking;
- the old arguments (12 plugins off, the project's addopts dropped, no entry-point plugins), which broke
  unittest.TestCase tests, doctests and `tmpdir`.

    python bench/runner_plugins.py [--reps 15]
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src" / "oec" / "env" / "sandbox" / "tools"))
import testserver  # noqa: E402

PLUGINS = ("unraisableexception", "threadexception", "faulthandler", "pastebin", "doctest", "junitxml", "stepwise",
           "legacypath", "setuponly", "setupplan", "debugging")
OLD_ARGS = ["-q", "-o", "addopts=", "-o", "console_output_style=classic"] + [
    a for p in ("cacheprovider",) + PLUGINS for a in ("-p", f"no:{p}")]
SUITE = '''import pytest


@pytest.mark.parametrize("x", range(10))
def test_param(x):
    assert x >= 0


def test_tmp(tmp_path):
    (tmp_path / "f").write_text("x")
    assert (tmp_path / "f").read_text() == "x"


def test_raises():
    with pytest.raises(ZeroDivisionError):
        1 / 0
'''


def child_cpu_ms(cwd: str, args: list[str], autoload: bool = False, frozen: bool = True) -> float:
    """CPU ms of one forked run of the runner with BASE_ARGS = ARGS."""
    saved = testserver.BASE_ARGS
    testserver.BASE_ARGS = args
    if autoload:
        os.environ.pop("PYTEST_DISABLE_PLUGIN_AUTOLOAD", None)
    if not frozen:
        gc.unfreeze()
    try:
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        out, _, _ = testserver.run_forked(cwd, [], as_json=True)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        testserver.BASE_ARGS = saved
        os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        gc.freeze()
    assert '"passed"' in out, out[-500:]
    return (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args()
    testserver.warm_up()
    base = list(testserver.BASE_ARGS)
    # the ones registered by the runner must be importable and found by the child's scan too
    variants = {"runner as it is": dict(args=base)}
    variants |= {f"-p no:{p}": dict(args=base + ["-p", f"no:{p}"]) for p in PLUGINS}
    variants["cacheprovider on"] = dict(args=["-q", "-o", "console_output_style=classic"])
    variants["entry points autoloaded in the child"] = dict(args=base, autoload=True)
    variants["no gc.freeze"] = dict(args=base, frozen=False)
    variants["old arguments (12 plugins off, addopts dropped)"] = dict(args=OLD_ARGS)
    variants["the old runner (old arguments, no gc.freeze)"] = dict(args=OLD_ARGS, frozen=False)
    times: dict[str, list[float]] = {k: [] for k in variants}
    with tempfile.TemporaryDirectory() as d:
        Path(d, "test_suite.py").write_text(SUITE)
        for k, v in variants.items():  # one run each first: imports of the code under test, lazily built caches
            child_cpu_ms(d, **v)
        for _ in range(args.reps):
            for k, v in variants.items():
                times[k].append(child_cpu_ms(d, **v))
    ref = statistics.median(times["runner as it is"])
    from common import machine  # only now: it imports oec, whose objects would make every gc.collect() slower

    print(machine())
    print(f"entry-point plugins registered by the runner: {[n for n, _ in testserver.ENTRY_POINT_PLUGINS]}")
    print(f"\n| variant | CPU ms per run (median of {args.reps}) | vs the runner |\n|---|---|---|")
    for k in variants:
        m = statistics.median(times[k])
        print(f"| {k} | {m:.1f} | {m - ref:+.1f} |")


if __name__ == "__main__":
    main()
