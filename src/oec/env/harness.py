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


def swesmith_command(inst: dict[str, Any]) -> TestCommand | None:
    """The test command of INST's SWE-smith repository profile (the whole suite, as its harness runs it), or None
    when swesmith is not installed or has no profile of the repository (a SWE-smith run of the user's own)."""
    try:
        from swesmith.profiles import registry
    except ImportError:
        return None
    try:
        profile = registry.get_from_inst(inst)
        command, _ = profile.get_test_cmd(inst)
    except Exception:  # swesmith raises plain errors for a repository it has no profile of
        return None
    fields = {k: inst[k] for k in ("instance_id", "repo", "FAIL_TO_PASS", "PASS_TO_PASS")}
    return TestCommand(harness="swesmith", command=command, timeout=float(profile.timeout), instance=fields)


def _ids(value) -> list[str]:
    return json.loads(value) if isinstance(value, str) else list(value)


def _swebench_report(inst: dict, f2p: list[str], p2p: list[str], path: Path, log: str) -> dict:
    from swebench.harness.constants import END_TEST_OUTPUT, START_TEST_OUTPUT
    from swebench.harness.grading import get_eval_report
    from swebench.harness.test_spec.test_spec import TestSpec

    # only what grading reads: the scripts and images are the harness's business, not the grader's
    spec = TestSpec(instance_id=inst["instance_id"], repo=inst["repo"], version=str(inst["version"]),
                    repo_script_list=[], eval_script_list=[], env_script_list=[], arch="x86_64",
                    FAIL_TO_PASS=f2p, PASS_TO_PASS=p2p, language="py", docker_specs={}, namespace=None)
    path.write_text(f"{START_TEST_OUTPUT}\n{log}\n{END_TEST_OUTPUT}\n")
    prediction = {"instance_id": inst["instance_id"], "model_name_or_path": "oec", "model_patch": ""}
    return get_eval_report(spec, prediction, str(path), include_tests_status=True)[inst["instance_id"]]


def _swesmith_report(inst: dict, f2p: list[str], p2p: list[str], path: Path, log: str) -> dict:
    from swebench.harness.constants import KEY_PREDICTION
    from swesmith.constants import TEST_OUTPUT_END, TEST_OUTPUT_START
    from swesmith.harness.grading import get_eval_report

    # the markers as its evaluation script echoes them under `set -x`
    path.write_text(f"+ : '{TEST_OUTPUT_START}'\n{log}\n+ : '{TEST_OUTPUT_END}'\n")
    return get_eval_report({KEY_PREDICTION: ""}, {**inst, "FAIL_TO_PASS": f2p, "PASS_TO_PASS": p2p}, str(path))


def grade(task: Task, log: str) -> tuple[dict[str, TestResult], bool]:
    """Per-test results and `resolved` for TASK from the output of its test command, as its harness grades them:
    the repository's log parser, then the harness's report (swebench's: FAIL_TO_PASS all pass; PASS_TO_PASS
    maintained, where a skipped test is not a failure; FAIL_ONLY repositories as it says; swesmith's the same rules
    over its profile's parser)."""
    inst = task.test_command.instance
    f2p, p2p = _ids(inst["FAIL_TO_PASS"]), _ids(inst["PASS_TO_PASS"])
    report_of = _swesmith_report if task.test_command.harness == "swesmith" else _swebench_report
    with tempfile.TemporaryDirectory(prefix="oec-grade-") as d:
        report = report_of(inst, f2p, p2p, Path(d) / "test_output.txt", log)
    status = report.get("tests_status", {})
    failed = set(status.get("FAIL_TO_PASS", {}).get("failure", []) + status.get("PASS_TO_PASS", {}).get("failure", []))
    passed = set(status.get("FAIL_TO_PASS", {}).get("success", []) + status.get("PASS_TO_PASS", {}).get("success", []))
    # neither: skipped, which swebench counts as neither success nor failure (so a skipped PASS_TO_PASS is kept)
    tests = {t: TestResult(outcome="failed", message="failed or missing in the log (swebench's parser)")
             if t in failed else TestResult(outcome="passed", message="" if t in passed else "skipped")
             for t in f2p + p2p}
    return tests, bool(report["resolved"])
