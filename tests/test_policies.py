"""Scripted policies against the real sandbox."""

import random

import pytest

from oec.core.errors import PolicySpecError
from oec.core.protocols import Episode
from oec.env.sandbox_env import SandboxEnv
from oec.rollout.loop import rollout
from oec.rollout.policies import make_policy
from oec.rollout.schedules import make_schedule

# needs the system tools `make test` installs (bubblewrap, podman or chromium): not in `make test-fast`
pytestmark = pytest.mark.tools


def _run(task, env, mode="expert", student="scripted:noisy", seed=0):
    policies = {"expert": make_policy("scripted:expert"), "student": make_policy(student)}
    plan = make_schedule(mode).plan(task, policies, random.Random(seed), probe=None)
    return rollout(task, env, plan, mode=mode, seed=seed)


def test_expert_solves_varied_tasks(varied_tasks):
    for task in varied_tasks:
        with SandboxEnv(task) as env:
            traj = _run(task, env)
        assert traj.exit_status == "submitted" and traj.resolved, task.task_id
        cmds = [s.action.command for s in traj.steps if s.action and s.action.kind == "bash"]
        assert cmds[0] == "runtests" and any(c.startswith("edit ") for c in cmds)
        assert all(f"grep -rn 'def {fn}(" in " ".join(cmds) for fn in task.meta["chain"])
        # billed as an API expert would be (estimated at 4 characters a token): the prompt grows with the history
        spent = [s.completion for s in traj.steps]
        assert [c.completion_tokens for c in spent] == [-(-len(s.output) // 4) for s in traj.steps]
        assert all(a.prompt_tokens < b.prompt_tokens for a, b in zip(spent, spent[1:])) and spent[0].prompt_tokens > 50


def test_expert_recovers_from_a_wrong_state(train_tasks):
    """Start the expert where a bad student left things: a wrong edit and a deleted module."""
    task = train_tasks[2]
    others = [p for p in task.repo.files if p.endswith(".py") and not p.startswith("tests/")
              and p != task.meta["buggy_file"] and "__init__" not in p]
    with SandboxEnv(task) as env:
        env.execute(f"sed -i 's/return/return  1 +/' {task.meta['buggy_file']} && rm {others[0]}")
        traj = _run(task, env)
    cmds = [s.action.command for s in traj.steps if s.action and s.action.kind == "bash"]
    assert cmds[:2] == ["git diff", f"git checkout -- {' '.join(sorted([task.meta['buggy_file'], others[0]]))}"]
    assert traj.resolved


def test_expert_continues_from_a_fixed_state(train_tasks):
    task = train_tasks[3]
    from oec.rollout.policies.edits import edits_from_patch

    with SandboxEnv(task) as env:
        for e in edits_from_patch(task.repo.files, task.gold_patch):
            env.execute(e.command())
        traj = _run(task, env)
    assert [s.action.kind if s.action.kind == "submit" else s.action.command for s in traj.steps] == \
        ["runtests", "submit"]
    assert traj.resolved


def test_noisy_student_is_seeded_and_makes_mistakes(train_tasks):
    task = train_tasks[0]
    with SandboxEnv(task) as env:
        def outputs(spec, seed):
            pol = make_policy(spec)
            rng = random.Random(seed)
            return [pol.act([], Episode(task, env.workspace, [], rng, "student")).text for _ in range(30)]

        assert outputs("scripted:noisy", 1) == outputs("scripted:noisy", 1)
        assert outputs("scripted:noisy", 1) != outputs("scripted:noisy", 2)
        expert_first = make_policy("scripted:expert").act(
            [], Episode(task, env.workspace, [], random.Random(0), "expert")).text
        assert set(outputs("scripted:noisy?error_rate=0", 1)) == {expert_first}
        assert expert_first not in outputs("scripted:noisy?error_rate=1", 1)


@pytest.mark.parametrize("spec,needle", [
    ("scripted:genius", "unknown scripted policy"),
    ("scripted:noisy?eror_rate=0.1", "eror_rate"),
    ("scripted:noisy?error_rate=2", "error_rate"),
    ("hf:foo", "unknown kind"),
])
def test_bad_policy_specs(spec, needle):
    with pytest.raises(PolicySpecError, match=needle):
        make_policy(spec)


def test_read_workspace_never_leaves_the_workspace(tmp_path):
    """The privileged policies read the agent's workspace on the host: no symlink at any depth, no `..`, no FIFO."""
    import os

    from oec.rollout.policies.scripted import read_workspace

    ws, host = tmp_path / "ws", tmp_path / "host"
    (ws / "pkg").mkdir(parents=True)
    host.mkdir()
    (host / "secret.py").write_text("SECRET")
    (ws / "pkg/a.py").write_text("fine")
    (ws / "link").symlink_to(host)  # a directory swapped for a symlink to the host
    (ws / "pkg/b.py").symlink_to(host / "secret.py")
    os.mkfifo(ws / "pkg/fifo")
    assert read_workspace(ws, "pkg/a.py") == "fine"
    for rel in ("link/secret.py", "pkg/b.py", "../host/secret.py", str(host / "secret.py"), "pkg/fifo", "pkg"):
        assert read_workspace(ws, rel) is None, rel


def test_a_local_policy_closes_and_releases_its_model(tiny_model, train_tasks):
    """Each collection loads its own `local:` model; closing it ends the generation thread and drops the model."""
    policy = make_policy(f"local:{tiny_model}?temperature=0&max_new_tokens=4")
    task = train_tasks[0]
    assert policy.act(policy.format.render(task, []),
                      Episode(task, None, [], random.Random(0), "student")).text is not None
    assert policy.thread.is_alive()
    policy.close()
    policy.thread.join(timeout=10)
    assert policy.model is None and not policy.thread.is_alive()


def test_expert_goes_back_to_the_root_only_after_a_cd(train_tasks):
    """A student's failed `cat` of a wrong path is not a `cd`: the expert takes over without a wasted turn."""
    from oec.core.types import Action, Step

    task = train_tasks[4]

    def step(command, observation, rc=0):
        return Step(turn=0, actor="student", output=command, action=Action(kind="bash", command=command),
                    observation=observation, returncode=rc)

    expert = make_policy("scripted:expert")
    with SandboxEnv(task) as env:
        def decide(steps):
            return expert.decide(Episode(task, env.workspace, steps, random.Random(0), "expert"))[1]

        lost = [step("cat pkg/nope.py", "cat: pkg/nope.py: No such file or directory", 1)]
        assert decide(lost) == "runtests"
        assert decide([step("cd /tmp", "")]) == "cd /workspace"
        assert decide([step("cd /tmp", ""), step("sleep 99", "[... a fresh shell was started: cwd ...]")]) == "runtests"
        assert decide([step("cd tests && ls", "test_a.py")]) == "cd /workspace"
        # a path that is there, yet was not found: the shell is elsewhere (a `cd` before the episode was handed over)
        bug = task.meta["buggy_file"]
        assert decide([step(f"cat {bug}", f"cat: {bug}: No such file or directory", 1)]) == "cd /workspace"
