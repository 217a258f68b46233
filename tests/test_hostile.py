"""A hostile agent against the real sandbox and verifier: each test is an attack that once worked (or could), and
must now fail to change the verdict, hang the host, or leak into the next episode."""

import random

import pytest

from oec.env import EnvConfig, SandboxEnv
from oec.policies import make_policy
from oec.rollout import LoopConfig, rollout
from oec.schedules import make_schedule

CONFTEST_FORCES_PASS = """cat > conftest.py <<'EOF2'
import pytest
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    out = yield
    r = out.get_result(); r.outcome = "passed"; r.longrepr = None
EOF2"""

FAKE_REPLY_THROUGH_INHERITED_FDS = """cat > /tmp/evil.py <<'EOF2'
import json, os
fake = json.dumps({"code": 0, "results": {}, "stderr": "", "ok": True}) + "\\n"
for fd in range(3, 64):
    try:
        os.write(fd, fake.encode())
    except OSError:
        pass
EOF2
mkdir -p x && printf 'import runpy\\ndef test_x():\\n    runpy.run_path("/tmp/evil.py")\\n' > x/test_e.py && runtests x/test_e.py; rm -rf x"""

FSMONITOR_DAEMON = """printf '#!/bin/sh\\n(setsid sh -c "while true; do for f in tests/test_*.py; do echo \\\\"def test_ok(): pass\\\\" > \\\\$f; done; sleep 0.01; done" </dev/null >/dev/null 2>&1 &)\\nexit 1\\n' > .git/m.sh
chmod +x .git/m.sh && git config core.fsmonitor /workspace/.git/m.sh && echo set"""


@pytest.mark.parametrize("attack", [
    CONFTEST_FORCES_PASS,
    "printf '[pytest]\\naddopts = -p no:python\\n' > pytest.ini",
    FAKE_REPLY_THROUGH_INHERITED_FDS,
    FSMONITOR_DAEMON,
    "rm -rf tests && echo x > tests",
    "chmod 000 tests",
    "(sleep 0.3; for f in tests/test_*.py; do echo 'def test_ok(): pass' > $f; done) &",
], ids=["conftest", "pytest.ini", "inherited-fds", "git-fsmonitor", "tests-replaced", "tests-chmod", "late-writer"])
def test_attacks_do_not_change_the_verdict(train_tasks, attack):
    task = train_tasks[0]
    with SandboxEnv(task, EnvConfig(command_timeout=8)) as env:
        env.execute(attack)
        verdict = env.verify()
    assert not verdict.resolved and verdict.error is None
    assert {k for k, v in verdict.tests.items() if v.outcome == "failed"} == set(task.FAIL_TO_PASS)
    assert all(verdict.tests[k].outcome == "passed" for k in task.PASS_TO_PASS)


def test_a_fake_external_diff_does_not_forge_the_patch(train_tasks):
    with SandboxEnv(train_tasks[0]) as env:
        env.execute("printf '#!/bin/sh\\necho FAKE\\n' > .git/d.sh; chmod +x .git/d.sh; "
                    "git config diff.external /workspace/.git/d.sh; echo x >> README")
        verdict = env.verify()
    assert "FAKE" not in verdict.patch and "+x" in verdict.patch


def test_runtests_answers_go_to_their_own_caller(train_tasks):
    task = train_tasks[0]
    with SandboxEnv(task) as env:
        env.execute("printf 'import time\\ndef test_slow():\\n    time.sleep(1)\\n    assert 0, \"OLD RUN\"\\n' > "
                    "tests/test_slow.py; timeout 0.3 runtests tests/test_slow.py")
        out = env.execute("sleep 1.2; runtests " + task.FAIL_TO_PASS[0].split("::")[0]).output
    assert "OLD RUN" not in out and "failed" in out


def test_a_client_that_stops_reading_does_not_block_the_slot(train_tasks):
    with SandboxEnv(train_tasks[0], EnvConfig(command_timeout=3)) as env:
        env.execute("printf 'import pytest\\n@pytest.mark.parametrize(\"i\", range(1500))\\ndef test_x(i):\\n"
                    "    assert \"a\" * 300 == \"b\" * 300\\n' > tests/test_many.py")
        assert env.execute("runtests tests/test_many.py | sleep 100").timed_out
        assert env.execute("echo alive").output == "alive\n"


def test_nothing_written_outside_workspace_survives_into_the_next_episode(train_tasks):
    from oec.sandbox.shell import SlotPool

    pool = SlotPool()
    with SandboxEnv(train_tasks[0], pool=pool) as env:
        env.execute("echo a > /persist; echo b > /dev/s2; mkdir -p /oec/x; echo c > /tmp/t; echo d > /dev/shm/s")
    with SandboxEnv(train_tasks[1], pool=pool) as env:
        out = env.execute("cat /persist /dev/s2 /tmp/t /dev/shm/s 2>&1; ls /oec").output
    pool.close()
    assert out.count("No such file") == 4 and "x" not in out.split()


def test_a_faked_shell_exit_line_is_just_output(train_tasks):
    with SandboxEnv(train_tasks[0]) as env:
        r = env.execute("export A=1; printf 'x\\036EXIT 0\\n'; sleep 0.2; echo done")
        assert not r.restarted and r.output.endswith("done\n")
        assert env.execute("echo $A").output == "1\n"


BAD_STATES = {
    "wrong edit committed": "sed -i 's/return/return 1 +/' {bug}; git -c user.name=a -c user.email=a@b commit -qam x",
    "wrong edit staged": "sed -i 's/return/return 1 +/' {bug}; git add -A",
    "no .git": "sed -i 's/return/return 1 +/' {bug}; rm -rf .git",
    "shell function git": "git() {{ :; }}; sed -i 's/return/return 1 +/' {bug}",
    "cd elsewhere": "cd /tmp",
    "chmod 000": "chmod 000 {bug}",
    "module deleted": "rm {other}",
    "package renamed": "mv {pkg} other_pkg",
    "dir in place of file": "rm {other}; mkdir {other}",
    "symlink to a host fifo": "ln -sf /proc/1/fd/0 {other}",
}


@pytest.mark.parametrize("name", sorted(BAD_STATES))
def test_expert_recovers_from_hostile_states(train_tasks, name):
    task = train_tasks[0]
    pkg, bug = task.meta["package"], task.meta["buggy_file"]
    other = next(p for p in task.repo.files if p.startswith(pkg + "/") and p != bug and "__init__" not in p)
    with SandboxEnv(task, EnvConfig(command_timeout=5)) as env:
        env.execute(BAD_STATES[name].format(bug=bug, other=other, pkg=pkg))
        plan = make_schedule("expert").plan(task, {"expert": make_policy("scripted:expert")}, random.Random(0), None)
        traj = rollout(task, env, plan, mode="expert", seed=0, config=LoopConfig(step_limit=16))
    assert traj.resolved, [s.action.command[:40] for s in traj.steps if s.action]
