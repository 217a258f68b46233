"""The real bubblewrap shell and the real pytest verifier (no doubles)."""

import os
from pathlib import Path

import pytest

from oec.env.sandbox.shell import PersistentShell
from oec.env.sandbox_env import EnvConfig, SandboxEnv
from oec.rollout.policies.edits import edits_from_patch

# needs the system tools `make test` installs (bubblewrap, podman or chromium): not in `make test-fast`
pytestmark = pytest.mark.tools


@pytest.fixture
def shell(tmp_path):
    (tmp_path / "f.txt").write_text("hello\n")
    sh = PersistentShell(tmp_path, timeout=2.0, output_limit=200)
    yield sh
    sh.close()


def test_state_persists_between_commands(shell):
    shell.run("cd /tmp && export X=42")
    assert shell.run("pwd; echo $X").output == "/tmp\n42\n"


def test_environment_is_scrubbed(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    sh = PersistentShell(tmp_path)
    try:
        out = sh.run("env").output
    finally:
        sh.close()
    assert "sk-secret" not in out and "OPENAI_API_KEY" not in out


def test_isolation(shell, tmp_path):
    assert shell.run("touch /usr/oec-x").returncode != 0
    assert not Path("/usr/oec-x").exists()
    assert shell.run("python3 -c 'import socket; socket.create_connection((\"1.1.1.1\", 53), 1)'").returncode != 0
    assert shell.run("cat /workspace/f.txt").output == "hello\n"
    assert shell.run("echo hi > /workspace/g.txt").returncode == 0
    assert (tmp_path / "g.txt").read_text() == "hi\n"
    assert shell.run("ls /root").output.strip() in ("", ".pyenv")  # the host's home is not visible
    assert shell.run("ps -e | wc -l").output.strip().isdigit()
    assert int(shell.run("ps -e --no-headers | wc -l").output) < 10  # own pid namespace
    assert "CapEff:\t0000000000000000" in shell.run("grep CapEff /proc/self/status").output  # no capabilities
    assert shell.run("mount -o remount,rw /usr").returncode != 0


def test_output_is_capped_and_says_so(shell):
    r = shell.run("seq 1 100000")
    assert r.truncated and "output truncated" in r.output and len(r.output) < 400
    assert r.output.startswith("1\n2\n") and r.output.endswith("100000\n")


def test_timeout_kills_and_restarts(shell):
    r = shell.run("cd /tmp; sleep 30")
    assert r.timed_out and "timed out" in r.output
    assert shell.run("pwd").output == "/workspace\n"


def test_stdin_and_syntax_errors_do_not_hang(shell):
    assert shell.run("cat").returncode == 0
    r = shell.run("echo 'unterminated")
    assert r.returncode != 0 and "unexpected EOF" in r.output
    r = shell.run("exit 3")
    assert r.restarted and r.returncode == 3
    assert shell.run("echo ok").output == "ok\n"


def test_edit_tool(shell, tmp_path):
    (tmp_path / "m.py").write_text("a = 1\nb = 1\nc = 2\n")
    r = shell.run("edit m.py <<'EOF'\n= 1\n=======\n= 3\nEOF")
    assert r.returncode == 1 and "occurs 2 times" in r.output
    r = shell.run("edit m.py <<'EOF'\nzzz\n=======\nyyy\nEOF")
    assert r.returncode == 1 and "not found" in r.output
    r = shell.run("edit nope.py <<'EOF'\nzzz\n=======\nyyy\nEOF")
    assert r.returncode == 1 and "no such file" in r.output
    r = shell.run("edit m.py <<'EOF'\nc = 2\nEOF")
    assert r.returncode == 1 and "=======" in r.output
    assert shell.run("edit m.py <<'EOF'\nc = 2\n=======\nc = 5\nEOF").returncode == 0
    assert (tmp_path / "m.py").read_text() == "a = 1\nb = 1\nc = 5\n"


def test_runtests_is_compact_and_verifier_is_real(train_tasks):
    task = train_tasks[0]
    with SandboxEnv(task) as env:
        out = env.execute("runtests").output
        failed = [ln for ln in out.splitlines() if ln.startswith("FAILED")]
        assert sorted(ln.split()[1] for ln in failed) == sorted(task.FAIL_TO_PASS)
        assert out.strip().endswith(f"{len(task.FAIL_TO_PASS)} failed, {len(task.PASS_TO_PASS)} passed")
        verdict = env.verify()
    assert not verdict.resolved
    assert {k for k, v in verdict.tests.items() if v.outcome == "failed"} == set(task.FAIL_TO_PASS)
    assert all(verdict.tests[k].outcome == "passed" for k in task.PASS_TO_PASS)


def test_gold_patch_resolves_every_task(varied_tasks):
    for task in varied_tasks:
        with SandboxEnv(task) as env:
            for e in edits_from_patch(task.repo.files, task.gold_patch):
                assert env.execute(e.command()).returncode == 0
            verdict = env.verify()
        assert verdict.resolved, (task.task_id, verdict.tests)
        assert verdict.patch.startswith("diff --git") and "__pycache__" not in verdict.patch


def test_verifier_restores_tests_and_kills_agent_processes(train_tasks):
    """An agent that rewrites the tests, or leaves a process that breaks the code later, does not fool the verdict."""
    task = train_tasks[1]
    with SandboxEnv(task) as env:
        for path in task.test_files:
            env.execute(f"printf 'def test_ok():\\n    pass\\n' > {path}")
        assert "passed" in env.execute("runtests").output
        env.execute("(sleep 0.5; echo 'raise SystemExit' >> " + task.meta["buggy_file"] + ") &")
        verdict = env.verify()
    assert not verdict.resolved
    assert {k for k, v in verdict.tests.items() if v.outcome != "passed"} == set(task.FAIL_TO_PASS)


def test_missing_bwrap_is_a_clear_error(monkeypatch, tmp_path):
    from oec.env.sandbox import bwrap

    bwrap.bwrap_path.cache_clear()
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(bwrap.SandboxUnavailable, match="apt-get install bubblewrap"):
        PersistentShell(tmp_path)
    bwrap.bwrap_path.cache_clear()


def test_env_config_rejects_unknown_keys():
    with pytest.raises(Exception, match="comand_timeout"):
        EnvConfig(comand_timeout=3)
    assert os.environ.get("OPENAI_API_KEY", "") == os.environ.get("OPENAI_API_KEY", "")


def test_a_reused_slot_starts_clean(train_tasks):
    """Slots are pooled: nothing of one episode (processes, /tmp, workspace edits) may reach the next."""
    from oec.env.sandbox.shell import SlotPool

    pool = SlotPool()
    a, b = train_tasks[0], train_tasks[1]
    with SandboxEnv(a, pool=pool) as env:
        env.execute("echo secret > /tmp/left; echo x >> " + a.meta["buggy_file"])
        env.execute("(while true; do echo y >> /workspace/spam; sleep 0.05; done) > /dev/null 2>&1 &")
        first = env._slot
    with SandboxEnv(b, pool=pool) as env:
        assert env._slot is first
        assert env.execute("ls /tmp/left spam 2>&1; ps -e --no-headers | wc -l").output.count("No such file") == 2
        assert env.execute("git status --porcelain").output == ""
        assert env.execute("kill -9 1; echo still here").output == "still here\n"  # the slot's init survives
        assert not env.verify().resolved
    pool.close()


def test_an_idle_slot_sleeps_and_a_busy_one_keeps_watching(train_tasks):
    """The slot's init scans /proc every 50 ms while anything runs in it (the watchdog); a pooled slot with nothing
    running must sleep instead (it cost 1% of a core per idle slot, and a pool keeps every slot it started). Counted
    as the init's wake-ups (voluntary context switches) over a second."""
    import time

    from oec.env.sandbox.shell import SlotPool

    def wakeups(bwrap_pid):
        init = Path(f"/proc/{bwrap_pid}/task/{bwrap_pid}/children").read_text().split()[0]
        status = Path(f"/proc/{init}/status")
        count = lambda: int(status.read_text().split("voluntary_ctxt_switches:")[1].split()[0])  # noqa: E731
        before = count()
        time.sleep(1)
        return count() - before

    pool = SlotPool()
    with SandboxEnv(train_tasks[0], pool=pool) as env:
        env.execute("sleep 30 > /dev/null 2>&1 &")
        pid = env._slot._proc.pid
        busy = wakeups(pid)
    idle = wakeups(pid)  # back in the pool: the sleep was killed
    pool.close()
    assert busy >= 10 and idle <= 2, (busy, idle)


def test_a_sandbox_that_dies_mid_command_is_an_error_not_a_hang(tmp_path):
    import signal
    import threading
    import time

    from oec.core.errors import SandboxError

    sh = PersistentShell(tmp_path, timeout=30)
    threading.Timer(0.3, lambda: os.killpg(sh.slot._proc.pid, signal.SIGKILL)).start()
    t0 = time.monotonic()
    with pytest.raises(SandboxError, match="died"):
        sh.run("sleep 20")
    assert time.monotonic() - t0 < 5
    sh.close()


def test_a_src_layout_package_imports_in_runtests_and_the_verifier():
    from oec.core.types import Task
    from oec.env.sandbox_env import SandboxEnv

    files = {"src/calc/__init__.py": "", "src/calc/ops.py": "def add(a, b):\n    return a - b\n",
             "tests/test_ops.py": "from calc.ops import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n\n\n"
                                  "def test_zero():\n    assert add(0, 0) == 0\n"}
    task = Task(task_id="src-layout", split="train", problem_statement="add subtracts", repo={"files": files},
                FAIL_TO_PASS=["tests/test_ops.py::test_add"], PASS_TO_PASS=["tests/test_ops.py::test_zero"],
                test_files=["tests/test_ops.py"])
    with SandboxEnv(task) as env:
        assert "1 failed, 1 passed" in env.execute("runtests").output
        before = env.verify()  # the verdict ends an episode: the fixed workspace is another one
    with SandboxEnv(task) as env:
        env.execute("sed -i 's/a - b/a + b/' src/calc/ops.py")
        after = env.verify()
    assert before.tests["tests/test_ops.py::test_add"].outcome == "failed" and not before.resolved
    assert after.resolved, after.tests
