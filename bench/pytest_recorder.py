"""A pytest plugin that only watches: every test report, as one JSON line in $OEC_RECORD (bench/real_corpus.py).

Loaded into plain `python -m pytest` with `-p pytest_recorder`; it changes nothing pytest does. Stdlib only.
"""

import json
import os

_out = None


def pytest_configure(config):
    global _out
    _out = open(os.environ["OEC_RECORD"], "a")  # noqa: SIM115 (open for the whole session)


def _write(report, kind):
    _out.write(json.dumps({"nodeid": report.nodeid, "when": getattr(report, "when", "collect"), "kind": kind,
                           "outcome": report.outcome}) + "\n")


def pytest_runtest_logreport(report):
    _write(report, type(report).__name__)


def pytest_collectreport(report):
    if report.failed:
        _write(report, "CollectReport")


def pytest_unconfigure(config):
    if _out is not None:
        _out.close()
