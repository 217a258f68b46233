"""Real PyPI packages (a subset of bench/real_corpus.py's corpus): the in-sandbox pytest gives every test the outcome
plain `python -m pytest` gives it, `oec tasks mutate` makes tasks, and the scripted expert resolves them.

The sdists are downloaded from the package index, as tests/test_mutate.py does: it is reachable wherever `make test`
can install, so a failed download fails the test rather than skipping it.
"""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from real_corpus import CORPUS, compare, fetch, plain_outcomes, sandbox_outcomes, unpack  # noqa: E402

from oec.collect import CollectConfig, collect  # noqa: E402
from oec.mutate import MutateConfig, mutate  # noqa: E402
from oec.show import summarize  # noqa: E402
from oec.tasks import load_tasks  # noqa: E402

# unittest.TestCase suites (every test "failed" in the sandbox while its `debugging` plugin was disabled; colorama
# also has a CRLF file the expert once took for a wrong edit), and semver: src/ layout, conftest, and doctests that run
# only because its addopts say --doctest-modules (they were dropped with `-o addopts=`), next to --cov
SUBSET = {"idna": 25, "colorama": 30, "semver": 300}  # name: passing tests at least


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SUBSET))
def test_sandbox_agrees_with_pytest_and_the_expert_resolves_mutants(name, tmp_path):
    pkg = next(p for p in CORPUS if p.name == name)
    tree = unpack(fetch(pkg, tmp_path / "cache"), tmp_path / "src")
    plain, _, tail = plain_outcomes(tree)
    sandbox, _ = sandbox_outcomes(tree)
    assert sum(o == "passed" for o in plain.values()) >= SUBSET[name], tail
    assert compare(plain, sandbox) == []
    if name == "semver":  # the doctests of its docs are among them
        assert any(".rst::" in t and o == "passed" for t, o in sandbox.items())
    out = tmp_path / "tasks.jsonl"
    stats = mutate(MutateConfig(repo=str(tree), out=str(out), n=2, seed=0, workers=2), progress=False)
    tasks = load_tasks(out)
    assert stats["kept"] == len(tasks) == 2, stats
    assert all(t.FAIL_TO_PASS and t.PASS_TO_PASS for t in tasks)
    collect(CollectConfig(tasks=str(out), out=str(tmp_path / "run"), workers=2), progress=False)
    assert summarize(tmp_path / "run")["resolved"] == len(tasks)
