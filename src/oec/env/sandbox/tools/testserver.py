"""Pytest runs inside a sandbox: compact reports for the agent, JSON reports for the verifier.

A cold `python -m pytest` costs ~0.3 s, most of it imports; slotd.py imports this module once and forks a child per
run (tens of milliseconds), and the code under test is still imported afresh in every child. Stdlib + pytest only:
this file runs under the sandbox's Python, not inside the oec package.

`python testserver.py once CWD [ARGS...]` prints the compact report without a server (the `runtests` fallback).
"""
import gc
import importlib.metadata
import io
import json
import os
import select
import signal
import sys
import time

sys.dont_write_bytecode = True  # `python -I` ignores PYTHONDONTWRITEBYTECODE; no .pyc may land in the workspace
try:
    import pytest  # noqa: E402
except ImportError:  # an env.python without pytest (django's own runner needs none): no pytest runs in this slot
    pytest = None

# Per-test outcomes must equal plain `python -m pytest` (bench/real_corpus.py checks it on real packages), so the
# project's addopts apply and no plugin that a test or pytest's own integrations use is disabled: `debugging` is
# what the unittest integration asks for `--trace`, `doctest` collects doctests, `legacypath` gives `tmpdir`.
# Only the cache stays off: it would write .pytest_cache into the workspace on every run, and no outcome depends on
# it unless a project's addopts name --lf/--ff/--nf/--sw (bench/runner_plugins.py measures each plugin's cost).
BASE_ARGS = ["-q", "-o", "console_output_style=classic", "-p", "no:cacheprovider"]


def _entry_point_plugins():
    """The venv's pytest11 plugins, as plain pytest autoloads them, found and imported once at server start.

    In the child the distribution scan (~15 ms) would run again and, with the workspace first on sys.path, an
    agent's `x.dist-info/entry_points.txt` would become a plugin; so autoload stays off there and these are
    registered by name instead (`-p no:NAME` in a project's addopts still unregisters one).
    """
    found = []
    for ep in importlib.metadata.entry_points(group="pytest11"):
        try:
            found.append((ep.name, ep.load()))
        except Exception:  # a broken plugin: plain pytest would fail on it too, but the sandbox's runs must go on
            continue
    return found


ENTRY_POINT_PLUGINS = _entry_point_plugins()
os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"


class _LoadEntryPointPlugins:
    """Registers ENTRY_POINT_PLUGINS under their entry-point names as soon as pytest's plugin manager exists."""

    def pytest_addhooks(self, pluginmanager):
        for name, plugin in ENTRY_POINT_PLUGINS:
            if not pluginmanager.is_blocked(name) and not pluginmanager.has_plugin(name):
                pluginmanager.register(plugin, name)


NO_PYTEST = f"pytest is not installed for {sys.executable} (env.python): run the repository's own test command"
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
        """A failure in any phase (or any subtest) sticks; a skip in setup (a skip mark, a failed `skipif`)
        counts as the test's outcome, as in pytest's summary; an xfail reads `skipped`, an xpass `passed`. A
        subtest's pass or skip (its report is a TestReport subclass) is not the test's."""
        if report.failed:
            self.results[report.nodeid] = ("failed" if report.when == "call" else "error", _short(report))
        elif type(report) is pytest.TestReport and (report.when == "call" or report.skipped) \
                and report.nodeid not in self.results:
            self.results[report.nodeid] = ("passed" if report.passed else "skipped", "")


def _run_pytest(cwd, args, out_fd, as_json):
    """Child body: run pytest on ARGS in CWD and write the report to OUT_FD."""
    os.chdir(cwd)
    sys.path.insert(0, cwd)  # as `python -m pytest` does, so the package under test imports
    if os.path.isdir(os.path.join(cwd, "src")):  # a src/ layout: the package lives one level down
        sys.path.insert(1, os.path.join(cwd, "src"))
    if pytest is None:
        data = json.dumps({"code": 3, "results": {}, "stderr": NO_PYTEST}) if as_json else NO_PYTEST + "\n"
        os.write(out_fd, data.encode())
        return
    err = io.StringIO()
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    sys.stdout = sys.stderr = err
    col = Collector()
    try:
        code = int(pytest.main(BASE_ARGS + list(args), plugins=[_LoadEntryPointPlugins(), col]))
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
    # and first in line for the kernel's out-of-memory kill at the slot's cgroup limit (memory no process maps,
    # a memfd say, counts for no one, so without this the init could be the one picked)
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass
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

    if pytest is None:
        return

    with tempfile.TemporaryDirectory() as d:
        run_forked(d, ["--co"], as_json=True)
        saved, streams = (os.dup(1), os.dup(2)), (sys.stdout, sys.stderr)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1), os.dup2(devnull, 2)
        sys.stdout = sys.stderr = io.StringIO()
        try:
            pytest.main(BASE_ARGS + ["--co", d], plugins=[_LoadEntryPointPlugins(), Collector()])
        finally:
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            sys.stdout, sys.stderr = streams
    # What is loaded now is never garbage: out of the collector's sight, pytest's gc.collect() at the end of each
    # run (unraisableexception) scans only the test's objects, and the children share these pages untouched.
    gc.freeze()


def verify_request(req, kill_all=lambda: None, watch=None):
    """Run the task's tests in the workspace the host has just rebuilt (oec/env/verify.py: the base tree plus the
    agent's change, with the original tests); the agent's processes are already gone. Agent code still runs inside
    the pytest process (that is what a test run is), under the slot's limits and watchdog."""
    cwd = req["cwd"]
    t0 = time.monotonic()
    # The verifier's must-fail sentinel (oec/env/verify.py), outside the workspace and last, so that `-x` in a
    # project's addopts stops before it only where a task test already failed.
    sentinel = []
    if req.get("sentinel"):
        where = os.path.join("/tmp", req["sentinel"])
        os.makedirs(where, exist_ok=True)
        sentinel = [os.path.join(where, f"test_{req['sentinel']}.py")]
        with open(sentinel[0], "w") as f:
            f.write(req["sentinel_source"])
    out, timed_out, stopped = run_forked(cwd, ["--rootdir", cwd] + req["tests"] + sentinel, as_json=True,
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
