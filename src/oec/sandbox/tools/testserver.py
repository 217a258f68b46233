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
WATCH_EVERY = 0.05
AGENT_NICE = 19


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
    if os.path.isdir(os.path.join(cwd, "src")):  # a src/ layout: the package lives one level down
        sys.path.insert(1, os.path.join(cwd, "src"))
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
        try:
            # Test code is agent code: it must inherit nothing but its report pipe (not the host's control
            # pipes, not the shell's), or it could answer for the verifier.
            os.dup2(w, 3)
            os.closerange(4, 65536)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            signal.signal(signal.SIGINT, signal.default_int_handler)  # the slot's init ignores it
            limit_resources()
            _run_pytest(cwd, args, 3, as_json)
        finally:
            os._exit(0)
    os.close(w)
    return pid, r


def limit_resources():
    """Per-process ceilings for agent code: address space, file size, no core files. Processes and total memory
    are watched by the slot's init (slotd.py): as root, RLIMIT_NPROC is not enforced."""
    import resource

    # below the slot's init, whose watchdog must get the CPU while a fork bomb competes for it
    os.setpriority(os.PRIO_PROCESS, 0, AGENT_NICE)
    for what, value in ((resource.RLIMIT_AS, 8 << 30), (resource.RLIMIT_FSIZE, 1 << 30), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(what, (value, value))


def run_forked(cwd, args, as_json, timeout=None, watch=None):
    """Fork, run pytest in the child, return (report text, timed_out, stopped).

    WATCH, if given, is called every 50 ms and returns why the run must stop (then STOPPED), or None; it is the
    slot's watchdog, which a fork bomb in the code under test must meet during verification too.
    """
    pid, r = fork_pytest(cwd, args, as_json)
    chunks, deadline, timed_out, stopped = [], (time.monotonic() + timeout) if timeout else None, False, None
    while True:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        if watch is not None:
            wait = WATCH_EVERY if wait is None else min(wait, WATCH_EVERY)
        ready, _, _ = select.select([r], [], [], wait)
        stopped = watch() if watch is not None else None
        if stopped or (not ready and deadline is not None and time.monotonic() >= deadline):
            timed_out = not stopped
            os.kill(pid, signal.SIGKILL)
            break
        if not ready:
            continue
        chunk = os.read(r, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:  # already reaped by a pid-1 reaper
        pass
    return b"".join(chunks).decode(errors="replace"), timed_out, stopped


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


def verify_request(req, kill_all=lambda: None, watch=None):
    """Run the task's tests in the workspace the host has just rebuilt (oec/verify.py: the base tree plus the
    agent's change, with the original tests); the agent's processes are already gone. Agent code still runs inside
    the pytest process (that is what a test run is), under the slot's limits and watchdog."""
    cwd = req["cwd"]
    t0 = time.monotonic()
    out, timed_out, stopped = run_forked(cwd, ["--rootdir", cwd] + req["tests"], as_json=True,
                                         timeout=req["test_timeout"], watch=watch)
    if stopped:
        kill_all()
    try:
        report = json.loads(out)
    except json.JSONDecodeError:
        report = {"code": None, "results": {}, "stderr": out[-2000:]}
    report.update(timed_out=timed_out, duration_s=time.monotonic() - t0)
    if stopped:  # each test not run says why, so the verdict records it
        why = f"the sandbox killed the tests: {stopped}"
        report["results"] = {t: report["results"].get(t, ("error", why)) for t in req["tests"]}
    return report


if __name__ == "__main__":
    if sys.argv[1:2] != ["once"]:
        sys.exit("usage: testserver.py once CWD [PYTEST ARGS...]")
    out, _, _ = run_forked(sys.argv[2], sys.argv[3:], as_json=False)
    sys.stdout.write(out)
