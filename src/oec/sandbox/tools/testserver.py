"""Pytest runs inside a sandbox: compact reports for the agent, JSON reports for the verifier.

A cold `python -m pytest` costs ~0.3 s, most of it imports; slotd.py imports this module once and forks a child per
run (tens of milliseconds), and the code under test is still imported afresh in every child. Stdlib + pytest only:
this file runs under the sandbox's Python, not inside the oec package.

`python testserver.py once CWD [ARGS...]` prints the compact report without a server (the `runtests` fallback).
"""
import io
import json
import os
import select
import signal
import subprocess
import sys
import time

os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # entry-point scans of a large venv cost ~100 ms per run
sys.dont_write_bytecode = True  # `python -I` ignores PYTHONDONTWRITEBYTECODE; no .pyc may land in the workspace
import pytest  # noqa: E402

BASE_ARGS = ["-q", "-o", "addopts=", "-o", "console_output_style=classic"]
# Plugins a test run does not need; unraisableexception alone costs two gc.collect() calls (~40 ms) per run.
for _p in ("cacheprovider", "unraisableexception", "threadexception", "faulthandler", "pastebin", "doctest",
           "junitxml", "stepwise", "legacypath", "setuponly", "setupplan", "debugging"):
    BASE_ARGS += ["-p", f"no:{_p}"]
MAX_MSG = 200


def _short(report):
    """One line per failure: the `E` lines of pytest's traceback (the assertion and its `where`), squeezed."""
    text = report.longreprtext or ""
    lines = [ln[1:].strip() for ln in text.splitlines() if ln.startswith("E ")]
    msg = " ".join(" ".join(lines).split()) if lines else (text.strip().splitlines() or [""])[-1]
    return msg[:MAX_MSG] + (" ..." if len(msg) > MAX_MSG else "")


class Collector:
    """Records the outcome of every test and collection error in run order."""

    def __init__(self):
        self.results = {}

    def pytest_collectreport(self, report):
        if report.failed:
            self.results[report.nodeid or "<collection>"] = ("error", _short(report))

    def pytest_runtest_logreport(self, report):
        if report.failed:
            self.results[report.nodeid] = ("failed" if report.when == "call" else "error", _short(report))
        elif report.when == "call" and report.nodeid not in self.results:
            self.results[report.nodeid] = ("passed" if report.passed else "skipped", "")


def _run_pytest(cwd, args, out_fd, as_json):
    """Child body: run pytest on ARGS in CWD and write the report to OUT_FD."""
    os.chdir(cwd)
    sys.path.insert(0, cwd)  # as `python -m pytest` does, so the package under test imports
    err = io.StringIO()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    sys.stdout = sys.stderr = err
    col = Collector()
    try:
        code = int(pytest.main(BASE_ARGS + list(args), plugins=[col]))
    except BaseException as e:  # a test that raises SystemExit at import, etc.: report, never hang the parent
        code, err = 3, io.StringIO(f"{e.__class__.__name__}: {e}")
    if as_json:
        payload = json.dumps({"code": code, "results": col.results, "stderr": err.getvalue()[-2000:]})
    else:
        payload = _text_report(code, col.results, err.getvalue())
    data = payload.encode()
    while data:
        data = data[os.write(out_fd, data) :]


def _text_report(code, results, stderr):
    lines = [f"{'FAILED' if o == 'failed' else 'ERROR'} {nid} - {m}" for nid, (o, m) in results.items()
             if o in ("failed", "error")]
    counts = {}
    for o, _ in results.values():
        counts[o] = counts.get(o, 0) + 1
    summary = ", ".join(f"{counts[k]} {k}" for k in ("failed", "passed", "error", "skipped") if k in counts)
    if code in (3, 4) or not results:
        tail = [ln for ln in stderr.strip().splitlines() if ln.strip()][-3:]
        lines += tail or ["no tests ran"]
    return "\n".join(lines + ([summary] if summary else [])) + "\n"


def fork_pytest(cwd, args, as_json):
    """Start pytest in a forked child; return (pid, fd to read its report from)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            _run_pytest(cwd, args, w, as_json)
        finally:
            os._exit(0)
    os.close(w)
    return pid, r


def run_forked(cwd, args, as_json, timeout=None):
    """Fork, run pytest in the child, return (report text, timed_out)."""
    pid, r = fork_pytest(cwd, args, as_json)
    chunks, deadline, timed_out = [], (time.monotonic() + timeout) if timeout else None, False
    while True:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([r], [], [], wait)
        if not ready:
            timed_out = True
            os.kill(pid, signal.SIGKILL)
            break
        chunk = os.read(r, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:  # already reaped by a pid-1 reaper
        pass
    return b"".join(chunks).decode(errors="replace"), timed_out


def warm_up():
    """Run one empty session so pytest's lazily imported modules are loaded before the first fork."""
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        run_forked(d, ["--co"], as_json=True)
        saved, streams = (os.dup(1), os.dup(2)), (sys.stdout, sys.stderr)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1), os.dup2(devnull, 2)
        sys.stdout = sys.stderr = io.StringIO()
        try:
            pytest.main(BASE_ARGS + ["--co", d], plugins=[Collector()])
        finally:
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            sys.stdout, sys.stderr = streams


def verify_request(req):
    """Restore the test files, record the agent's patch, run the tests; return the report as a dict."""
    cwd = req["cwd"]
    git = ["git", "-c", "core.hooksPath=/dev/null", "-C", cwd]
    subprocess.run(git + ["add", "-A"], capture_output=True)
    patch = subprocess.run(git + ["diff", "--cached", "--no-color"], capture_output=True, text=True).stdout
    for rel, content in req["restore"].items():
        path = os.path.join(cwd, rel)
        if os.path.lexists(path) and not os.path.isdir(path):
            os.unlink(path)  # never write through a symlink the agent left
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(content)
    t0 = time.monotonic()
    out, timed_out = run_forked(cwd, ["--rootdir", cwd] + req["tests"], as_json=True, timeout=req["timeout"])
    report = json.loads(out) if out else {"code": None, "results": {}, "stderr": ""}
    report.update(patch=patch, timed_out=timed_out, duration_s=time.monotonic() - t0)
    return report


if __name__ == "__main__":
    if sys.argv[1:2] != ["once"]:
        sys.exit("usage: testserver.py once CWD [PYTEST ARGS...]")
    out, _ = run_forked(sys.argv[2], sys.argv[3:], as_json=False)
    sys.stdout.write(out)
