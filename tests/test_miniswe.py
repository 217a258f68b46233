"""The `miniswe` format against the real mini-swe-agent package (the `miniswe` extra): an oec dataset in that format is
what stock mini-swe-agent sends and expects, turn by turn, and its episodes submit the fix there.

Nothing is a double: the agent, its model class, its local environment and its stock SWE-bench text config are
mini-swe-agent's own; the model behind it is a replay endpoint on 127.0.0.1 that answers each request with the
dataset's next reply, after checking that the request equals the dataset's messages up to that turn.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from http.server import BaseHTTPRequestHandler

import pytest
from local_http import LocalServer, chat_completion, send

from oec.core.errors import InputError
from oec.core.store import read_trajectories
from oec.core.types import Action, Completion, Step
from oec.data.build import BuildConfig, build
from oec.data.demos import import_demos
from oec.env.repos import template
from oec.formats import make_format
from oec.rollout.collect import CollectConfig, collect
from oec.tasks.io import generate_tasks, write_tasks

pytestmark = pytest.mark.tools  # the episodes run in the bubblewrap sandbox

def stock_config() -> dict:
    """mini-swe-agent's stock SWE-bench text config (imported here, not at collection: litellm takes seconds)."""
    make_format("miniswe")  # imports mini-swe-agent quietly (no banner, no network)
    from minisweagent.config import get_config_from_spec

    return get_config_from_spec("swebench_backticks.yaml")

# what differs between oec's sandbox and the machine mini-swe-agent runs on, and is named in docs/formats.md
DURATION = re.compile(r"\bin \d+\.\d+s\b")  # pytest's run time


def _difference(request: list[dict], expected: list[dict]) -> str | None:
    """None if REQUEST equals EXPECTED (pytest's run times aside), else the first message that differs."""
    got, want = ([(m["role"], DURATION.sub("in Ts", m["content"])) for m in ms] for ms in (request, expected))
    if got == want:
        return None
    at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    if at == min(len(got), len(want)):
        return f"{len(got)} messages, the dataset {len(want)}"
    (role, a), (_, b) = got[at], want[at]
    c = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return f"message {at} ({role}) at character {c}: {a[c - 20:c + 40]!r} != {b[c - 20:c + 40]!r}"


class Replay(LocalServer):
    """Answers the k-th request with the k-th assistant message of MESSAGES; records how each request differed from
    MESSAGES up to there (None: it did not)."""

    def __init__(self, messages: list[dict]):
        self.messages, self.checks = messages, []
        replies = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                at = replies[len(outer.checks)]
                outer.checks.append(_difference(body["messages"], messages[:at]))
                send(self, chat_completion(messages[at]["content"]))

        super().__init__(Handler)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Scripted-expert episodes of three one-hop toy tasks collected in the miniswe format, as an OpenAI export."""
    root = tmp_path_factory.mktemp("miniswe")
    tasks = generate_tasks("toy", "train", 3, seed=7, preset="multihop")
    write_tasks(tasks, root / "tasks.jsonl")
    collect(CollectConfig(tasks=str(root / "tasks.jsonl"), out=str(root / "run"), expert_format="miniswe",
                          workers=3), progress=False)
    build(BuildConfig(runs=[str(root / "run")], out=str(root / "data.jsonl"), format="openai",
                      student_format="miniswe"))
    records = [json.loads(line) for line in (root / "data.jsonl").read_text().splitlines()]
    return {t.task_id: t for t in tasks}, read_trajectories(root / "run"), records


def test_expert_episodes_in_the_miniswe_format_use_a_plain_shell_and_submit_as_mini_swe_agent_does(dataset):
    _, trajs, _ = dataset
    for t in trajs:
        commands = [s.action.command for s in t.steps]
        assert t.exit_status == "submitted" and t.verdict.resolved
        assert not any(c.split()[0] in ("runtests", "edit", "submit") for c in commands)  # oec's tools unused
        assert "python -m pytest -q" in commands
        assert commands[-2].startswith("git diff -- ") and commands[-2].endswith("> patch.txt")
        assert commands[-1] == "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT && cat patch.txt"


def test_stock_mini_swe_agent_replaying_the_dataset_sends_its_messages_and_submits_the_fix(dataset, tmp_path):
    """The acceptance test of the format: each request stock mini-swe-agent (DefaultAgent, its text-based litellm
    model, LocalEnvironment, the stock swebench_backticks.yaml) sends equals the dataset's messages up to that turn,
    pytest's run time aside; the episode ends Submitted with the fix as its submission, and importing the trajectory
    mini-swe-agent saved gives back the dataset's commands."""
    from minisweagent.agents.default import DefaultAgent
    from minisweagent.environments.local import LocalEnvironment
    from minisweagent.models.litellm_textbased_model import LitellmTextbasedModel

    tasks, trajs, records = dataset
    config = stock_config()
    assert len(records) == len(trajs) == 3
    by_task = {t.task_id: t for t in trajs}
    for record in records:
        traj = by_task[record["metadata"]["task_id"]]
        task = tasks[traj.task_id]
        repo = tmp_path / traj.task_id
        shutil.copytree(template(task).path, repo, symlinks=True)
        server = Replay(record["messages"])
        try:
            model = LitellmTextbasedModel(**{**config["model"], "model_name": "openai/replay", "cost_tracking":
                                             "ignore_errors", "model_kwargs": {"api_base": server.url,
                                                                               "api_key": "none"}})
            # the interpreter with pytest first on PATH, as oec's sandbox has it; the terminal width pytest sees; no
            # CI marker: LocalEnvironment passes the host's environment on, and pytest prints whole multi-line
            # summary lines where CI or BUILD_NUMBER is set (as on a CI machine), oec's sandbox sets neither
            env = LocalEnvironment(cwd=str(repo), env={"PATH": f"{os.path.dirname(sys.executable)}:"
                                                               f"{os.environ['PATH']}", "COLUMNS": "80",
                                                       "CI": "", "BUILD_NUMBER": ""})
            saved = tmp_path / f"{traj.task_id}.traj.json"
            agent = DefaultAgent(model, env, **{**config["agent"], "output_path": saved})
            result = agent.run(task.problem_statement)
        finally:
            server.close()
        replies = sum(m["role"] == "assistant" for m in record["messages"])
        assert server.checks == [None] * replies  # every request, byte for byte but pytest's run time
        assert result["exit_status"] == "Submitted"
        fix = traj.steps[-1].observation.split("\n", 1)[1]  # what oec's run printed after the submit word
        assert result["submission"] == fix and "+" in fix
        imported = tmp_path / f"imported-{traj.task_id}"
        import_demos([saved], imported, "miniswe")
        (back,) = read_trajectories(imported)
        assert [s.action.command for s in back.steps[:-1]] == [s.action.command for s in traj.steps[:-1]]


def test_the_format_is_read_from_the_installed_package(tmp_path):
    """System prompt, format-error message and submit rule are mini-swe-agent's: changing its config changes them."""
    import yaml

    fmt, config = make_format("miniswe"), stock_config()
    assert fmt.system == config["agent"]["system_template"].rstrip("\n")  # as Jinja renders it
    config["agent"]["system_template"] = config["agent"]["system_template"].replace("helpful", "careful")
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(config))
    assert "You are a careful assistant" in make_format(f"miniswe?config={tmp_path / 'mine.yaml'}").system
    with pytest.raises(Exception) as e:
        fmt.parse(Completion(text="THOUGHT: two\n```mswea_bash_command\nls\n```\n```mswea_bash_command\npwd\n```"))
    assert "found 2 actions" in str(e.value) and "<response_example>" in str(e.value)
    with pytest.raises(Exception) as e:
        fmt.parse(Completion(text="THOUGHT: cut off", finish_reason="length"))
    assert "finish_reason=length" in str(e.value)
    assert fmt.parse(Completion(text=fmt.write("look", Action(kind="bash", command="ls -a")))) == \
        ("look", Action(kind="bash", command="ls -a"))
    assert fmt.submits("COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\ndiff", 0)
    assert not fmt.submits("COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT\n", 1)  # a failed `cat patch.txt` submits nothing
    assert not fmt.submits("the word COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT later", 0)
    long = Step(turn=0, actor="expert", output="", action=Action(kind="bash", command="x"), returncode=0,
                observation="a" * 5000 + "\n[... output truncated: 20000 bytes in all; showing the first and last "
                            "5000 ...]\n" + "b" * 5000)
    shown = fmt.observation(long)
    assert "10000 characters elided" in shown and "a" * 5000 in shown and "b" * 5000 in shown


def test_a_config_that_cannot_be_reproduced_is_refused_in_one_line(tmp_path):
    with pytest.raises(InputError, match="no mini-swe-agent config 'nope'"):
        make_format("miniswe?config=nope")
    with pytest.raises(InputError, match="window and system are mini-swe-agent's"):
        make_format("miniswe?window=4")
    with pytest.raises(InputError, match="not a text-based mini-swe-agent config"):
        (tmp_path / "c.yaml").write_text("agent: {system_template: hi}\n")
        make_format(f"miniswe?config={tmp_path / 'c.yaml'}")
    with pytest.raises(InputError, match="config. is an option of the miniswe format only"):
        make_format("text?config=x")
    assert CollectConfig(tasks="t", out="o", expert_format="miniswe").env.output_limit == 10_000  # raised for it
    with pytest.raises(Exception, match="env.output_limit to at least 10000"):
        CollectConfig(tasks="t", out="o", expert_format="miniswe", env={"output_limit": 2000})
    with pytest.raises(Exception, match="must both be miniswe"):
        CollectConfig(tasks="t", out="o", mode="oec", student="scripted:noisy", expert_format="miniswe",
                      env={"output_limit": 10_000})
