"""Named toy presets (oec.tasks.toy.PRESETS) and the scripted expert's seeded routes (oec.rollout.policies.routes)."""

import random
import subprocess
import sys

import pytest

from oec.tasks.io import InputError, generate_tasks
from oec.tasks.toy import PRESETS, ToyConfig, generate, toy_config

# needs the system tools `make test` installs (bubblewrap, podman or chromium): not in `make test-fast`
pytestmark = pytest.mark.tools


def test_a_preset_sets_its_knobs_and_given_knobs_override_it():
    cfg = toy_config("multihop")
    assert {k: getattr(cfg, k) for k in PRESETS["multihop"]} == PRESETS["multihop"]
    assert cfg.hops >= 1 and cfg.direct_test_prob <= 0.5 and cfg.modules > 2  # issue 14's setting
    assert toy_config("multihop", hops=2, modules=None).hops == 2  # None: an option not given
    assert toy_config("multihop", hops=2).modules == PRESETS["multihop"]["modules"]
    assert toy_config(None, hops=0) == ToyConfig(hops=0)
    tasks = generate_tasks("toy", "train", 3, 5, preset="multihop")
    assert tasks == generate("train", 3, 5, cfg) and all(t.meta["hops"] == cfg.hops for t in tasks)
    easy = generate_tasks("toy", "train", 2, 5, preset="easy")
    assert easy == generate_tasks("toy", "train", 2, 5, hops=0, direct_test_prob=1.0, modules=2,
                                  functions_per_module=2)


def test_an_unknown_preset_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match=r"unknown toy preset 'multi'; known presets: easy, multihop"):
        generate_tasks("toy", "train", 1, 0, preset="multi")
    r = subprocess.run([sys.executable, "-m", "oec", "tasks", "generate", "--preset", "multi", "--out",
                        str(tmp_path / "t.jsonl")], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown toy preset 'multi'" in r.stdout + r.stderr
    from pydantic import ValidationError

    from oec.experiments.experiment import SuiteConfig

    with pytest.raises(ValidationError, match="unknown toy preset 'hard'"):
        SuiteConfig(preset="hard")


def test_the_cli_and_an_experiment_generate_the_presets_tasks(tmp_path):
    from oec.experiments.experiment import ExperimentConfig
    from oec.experiments.task_sets import TaskSets
    from oec.tasks.io import load_tasks

    out = tmp_path / "t.jsonl"
    subprocess.run([sys.executable, "-m", "oec", "tasks", "generate", "--preset", "multihop", "--hops", "2", "--n",
                    "2", "--seed", "4", "--out", str(out)], check=True, capture_output=True)
    assert load_tasks(out) == generate_tasks("toy", "train", 2, 4, preset="multihop", hops=2)
    cfg = ExperimentConfig(name="x", suite={"train": 2, "heldout": 2, "seed": 4, "preset": "multihop",
                                            "knobs": {"hops": 2}}, warm_start={"trajectories": 0},
                           student_model=None, arms=[])
    made = TaskSets(cfg, tmp_path).sets["train"][1]
    assert made == load_tasks(out)


# ---- seeded routes -----------------------------------------------------------------------------------------------

def _commands(traj):
    return [s.action.command if s.action.kind == "bash" else "submit" for s in traj.steps]


def test_seeded_routes_differ_by_seed_and_every_route_resolves(tmp_path):
    """The expert through `oec collect` on preset tasks: 3 samples of each of 4 tasks, all resolved, with more than
    one command sequence per task; the same seed takes the same routes again."""
    from oec.core.store import read_trajectories
    from oec.tasks.io import write_tasks

    tasks = write_tasks(generate_tasks("toy", "train", 4, 12, preset="multihop"), tmp_path / "tasks.jsonl")

    def run(name, seed):
        subprocess.run([sys.executable, "-m", "oec", "collect", "--tasks", str(tasks), "--out", str(tmp_path / name),
                        "--mode", "expert", "--expert", "scripted:expert?routes=seeded", "--samples", "3",
                        "--seed", str(seed), "--workers", "2", "--quiet"], check=True, capture_output=True)
        return {t.key: t for t in read_trajectories(tmp_path / name)}

    a, again = run("a", 0), run("again", 0)
    assert len(a) == 12 and all(t.resolved and t.exit_status == "submitted" for t in a.values())
    assert {k: _commands(t) for k, t in a.items()} == {k: _commands(t) for k, t in again.items()}
    for task_id in {k[0] for k in a}:
        routes = {tuple(_commands(a[(task_id, s)])) for s in range(3)}
        assert len(routes) > 1, task_id
    every = [c for t in a.values() for c in _commands(t)]
    # the variety the routes are for: where the tests run, how functions are found and files read, how fixes are made
    assert {c.split()[0] for c in every} >= {"runtests", "grep", "cat", "head", "edit", "submit"}
    assert any(c.startswith("grep -rn") for c in every) and any(c.startswith("grep -n") for c in every)
    assert any(_commands(t)[0] != "runtests" for t in a.values())


def test_the_local_route_shows_each_callee_a_line_below_its_caller(tmp_path):
    """routes=local on one-hop and easy tasks: every episode resolves, no module is read whole, and the function the
    next grep looks for is in the previous grep's output right below the definition it found (a copy of one line)."""
    from oec.core.store import read_trajectories
    from oec.tasks.io import write_tasks

    tasks = generate_tasks("toy", "train", 4, 12, preset="multihop") + generate_tasks("toy", "train", 2, 13,
                                                                                       preset="easy")
    by_id = {t.task_id: t for t in tasks}
    path = write_tasks(tasks, tmp_path / "tasks.jsonl")
    subprocess.run([sys.executable, "-m", "oec", "collect", "--tasks", str(path), "--out", str(tmp_path / "run"),
                    "--mode", "expert", "--expert", "scripted:expert?routes=local", "--workers", "2", "--quiet"],
                   check=True, capture_output=True)
    trajs = read_trajectories(tmp_path / "run")
    assert len(trajs) == 6 and all(t.resolved for t in trajs)
    for t in trajs:
        chain, commands = by_id[t.task_id].meta["chain"], _commands(t)
        assert commands[0] == "runtests" and commands[-2:] == ["runtests", "submit"], commands
        greps = [s for s in t.steps if s.action.kind == "bash" and s.action.command.startswith("grep -rn -A6")]
        assert [g.action.command.split("'")[1] for g in greps] == [f"def {fn}(" for fn in chain]
        assert not any(c.split()[0] in ("cat", "head") for c in commands)
        for grep, caller, callee in zip(greps, chain, chain[1:]):
            lines = grep.observation.splitlines()
            at = next(i for i, line in enumerate(lines) if f"def {caller}(" in line)
            assert f"{callee}(" in lines[at + 1], grep.observation


def test_routes_are_drawn_without_consuming_the_stream_and_fixed_is_the_old_script():
    from oec.rollout.policies.routes import FIXED, draw_route

    stream = random.Random("7:expert")
    state = stream.getstate()
    drawn = {draw_route(random.Random(f"{s}:expert")) for s in range(40)}
    assert draw_route(stream) == draw_route(stream) and stream.getstate() == state
    assert len(drawn) > 10 and FIXED.tests_first and FIXED.edit == "edit" and not FIXED.review


def test_the_expert_counts_a_students_equivalent_command_and_edits_in_its_routes_style(train_tasks):
    """Taking over from a student who already found and read the buggy module another way, the expert goes on from
    there; the sed and rewrite styles leave the file exactly as the edit tool does."""
    from oec.core.protocols import Episode
    from oec.core.types import Action, Step
    from oec.env.sandbox_env import SandboxEnv
    from oec.rollout.policies.edits import edits_from_patch
    from oec.rollout.policies.routes import Route, edit_command_for
    from oec.rollout.policies.scripted import ScriptedExpert, make_plan

    task = train_tasks[1]
    plan = make_plan(task)
    bug, chain = task.meta["buggy_file"], task.meta["chain"]
    with SandboxEnv(task) as env:
        def step(command):
            r = env.execute(command)
            return Step(turn=0, actor="student", output=command, action=Action(kind="bash", command=command),
                        observation=r.output, returncode=r.returncode)

        history = [step("runtests")] + [step(f"grep -rn 'def {fn}(' .") for fn in chain] + [step(f"cat -n {bug}")]
        history += [step(f"head -n 100 {p}") for p in {plan.needs[i].target for i in range(len(plan.needs))
                                                        if plan.needs[i].kind == "read"}]
        thought, command = ScriptedExpert().decide(Episode(task, env.workspace, history, random.Random(0), "expert"))
        assert command.startswith(f"edit {bug}"), command
    for style in ("sed", "rewrite"):
        with SandboxEnv(task) as env:
            e = edits_from_patch(task.repo.files, task.gold_patch)[0]
            r = env.execute(edit_command_for(e, task.repo.files[e.path], Route(edit=style)))
            assert r.returncode == 0 and (env.workspace / e.path).read_text() == plan.stages[e.path][-1], style


def test_the_expert_goes_back_only_when_a_lasting_cd_left_the_root():
    from oec.rollout.policies.scripted import moved_to

    assert moved_to("cd tests && ls") == "tests" and moved_to("ls; cd") == "~"
    assert moved_to("cd /workspace && cat a.py") == "/workspace"  # back at the root: no `cd /workspace` needed
    assert moved_to("(cd tests; ls)") is None and moved_to("grep -rn abcd .") is None


def test_shipped_configs_on_the_multihop_preset_leave_room_to_recover():
    """A student who goes wrong on a multihop task needs turns to recover: a step limit of at least 20."""
    from pathlib import Path

    from oec.core.config import load_config
    from oec.experiments.experiment import ExperimentConfig

    root = Path(__file__).resolve().parent.parent
    on_preset = []
    for path in sorted((root / "configs").glob("*.yaml")):
        cfg = load_config(ExperimentConfig, path, {}) if "dagger" not in path.name else None
        if cfg is not None and cfg.suite.preset == "multihop":
            on_preset.append(path.name)
            assert cfg.collect.loop.step_limit >= 20, path  # typed: the default where not given
    assert "warm-student-multihop.yaml" in on_preset


def test_an_experiment_from_before_presets_still_resumes(tmp_path):
    """experiment.json written before suite.preset existed has no such key: it was no preset, not another config."""
    import json

    from oec.experiments.experiment import Experiment, ExperimentConfig
    from oec.tasks.io import InputError

    base = {"name": "x", "out": str(tmp_path / "run"), "arms": [], "warm_start": {"trajectories": 0},
            "suite": {"knobs": {"hops": 0}}}
    Experiment(ExperimentConfig(**base)).check_config()
    path = tmp_path / "run/experiment.json"
    old = json.loads(path.read_text())
    del old["config"]["suite"]["preset"]
    path.write_text(json.dumps(old))
    Experiment(ExperimentConfig(**base)).check_config()  # resumes
    path.write_text(json.dumps(old))
    with pytest.raises(InputError, match="differs in: suite"):  # but a preset now is another suite
        Experiment(ExperimentConfig(**{**base, "suite": {"preset": "easy", "knobs": {"hops": 0}}})).check_config()


def test_a_chain_longer_than_the_modules_is_refused_in_one_line(tmp_path):
    """hops >= modules once made import loops (20/20 tasks failed collection); now refused before any work."""
    from typer.testing import CliRunner

    from oec.cli.main import app

    r = CliRunner().invoke(app, ["tasks", "generate", "--hops", "2", "--modules", "2", "--n", "3",
                                 "--out", str(tmp_path / "t.jsonl")])
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and "hops=2 needs at least 3 modules" in lines[0], r.stderr
    assert not (tmp_path / "t.jsonl").exists()
