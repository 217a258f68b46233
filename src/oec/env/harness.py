"""Verification by SWE-bench's own definitions, for instances whose tests are not pytest node ids.

SWE-bench grades django with `./tests/runtests.py ... <module labels>` and ids like `test_x (module.Class.test_x)`,
sympy with `bin/test -C --verbose` and bare function names, and so on per repository: 61% of SWE-bench Verified
cannot be run as `pytest <ids>`. So for an imported instance the test command, its directives (what goes on the
command line), the log parser and the grading rules all come from the installed `swebench` package
(`pip install 'oec[swe]'`), not from code of ours: `MAP_REPO_VERSION_TO_SPECS`, `get_test_directives`, and
`get_eval_report` over a log shaped as its harness writes it. A new swebench release is a version bump.

swebench 4.1 is pinned: it holds the per-repository specifications; 5.x expects every instance to carry its own
evaluation script and image instead.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from oec.core.errors import InstanceError
from oec.core.types import Task, TestCommand, TestResult

GRADE_FIELDS = ("instance_id", "repo", "version", "FAIL_TO_PASS", "PASS_TO_PASS")
INSTALL = "install the swe extra: pip install 'oec[swe]' (swebench==4.1.0)"
# Seconds a repository's whole test command may take when the specification names none: django's runtests.py over a
# few modules takes tens of seconds on two cores.
DEFAULT_TIMEOUT = 600.0


def available() -> bool:
    try:
        import swebench.harness.constants  # noqa: F401
    except ImportError:
        return False
    return True


def swebench_command(inst: dict[str, Any]) -> TestCommand | None:
    """The official test command of INST (its repo's command and the test directives of its test_patch), or None
    when swebench has no specification for its repo and version. InstanceError without the swe extra."""
    try:
        from swebench.harness.constants import MAP_REPO_VERSION_TO_SPECS
        from swebench.harness.test_spec.python import get_test_directives
    except ImportError:
        raise InstanceError(f"grading {inst.get('repo')} needs SWE-bench's definitions: {INSTALL}") from None
    specs = MAP_REPO_VERSION_TO_SPECS.get(inst.get("repo", ""), {}).get(str(inst.get("version")))
    if specs is None:
        return None
    command = specs["test_cmd"]
    command = command[-1] if isinstance(command, list) else command  # as swebench's own log reader takes it
    directives = get_test_directives(inst)
    fields = {k: inst[k] for k in GRADE_FIELDS}
    return TestCommand(command=" ".join([command, *directives]), timeout=specs.get("timeout", DEFAULT_TIMEOUT),
                       instance=fields)


def _ids(value) -> list[str]:
    return json.loads(value) if isinstance(value, str) else list(value)


def grade(task: Task, log: str) -> tuple[dict[str, TestResult], bool]:
    """Per-test results and `resolved` for TASK from the output of its test command, as swebench grades them: its
    repository's log parser, then `get_eval_report` (FAIL_TO_PASS all pass; PASS_TO_PASS maintained, where a
    skipped test is not a failure; FAIL_ONLY repositories as it says)."""
    from swebench.harness.constants import END_TEST_OUTPUT, START_TEST_OUTPUT
    from swebench.harness.grading import get_eval_report
    from swebench.harness.test_spec.test_spec import TestSpec

    inst = task.test_command.instance
    f2p, p2p = _ids(inst["FAIL_TO_PASS"]), _ids(inst["PASS_TO_PASS"])
    # only what grading reads: the scripts and images are the harness's business, not the grader's
    spec = TestSpec(instance_id=inst["instance_id"], repo=inst["repo"], version=str(inst["version"]),
                    repo_script_list=[], eval_script_list=[], env_script_list=[], arch="x86_64",
                    FAIL_TO_PASS=f2p, PASS_TO_PASS=p2p, language="py", docker_specs={}, namespace=None)
    prediction = {"instance_id": inst["instance_id"], "model_name_or_path": "oec", "model_patch": ""}
    with tempfile.TemporaryDirectory(prefix="oec-grade-") as d:
        path = Path(d) / "test_output.txt"
        path.write_text(f"{START_TEST_OUTPUT}\n{log}\n{END_TEST_OUTPUT}\n")
        report = get_eval_report(spec, prediction, str(path), include_tests_status=True)[inst["instance_id"]]
    status = report.get("tests_status", {})
    failed = set(status.get("FAIL_TO_PASS", {}).get("failure", []) + status.get("PASS_TO_PASS", {}).get("failure", []))
    passed = set(status.get("FAIL_TO_PASS", {}).get("success", []) + status.get("PASS_TO_PASS", {}).get("success", []))
    # neither: skipped, which swebench counts as neither success nor failure (so a skipped PASS_TO_PASS is kept)
    tests = {t: TestResult(outcome="failed", message="failed or missing in the log (swebench's parser)")
             if t in failed else TestResult(outcome="passed", message="" if t in passed else "skipped")
             for t in f2p + p2p}
    return tests, bool(report["resolved"])
