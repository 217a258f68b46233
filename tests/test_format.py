import json

import pytest

from oec.core.errors import FormatError, InputError
from oec.core.types import Action, Completion, Step, ToolCall
from oec.formats import TextFormat, ToolCallFormat, make_format

# needs the system tools `make test` installs (bubblewrap, podman or chromium): not in `make test-fast`
pytestmark = pytest.mark.tools


def C(text="", calls=()):
    return Completion(text=text,
                      tool_calls=[ToolCall(id=f"c{i}", name=n, arguments=a) for i, (n, a) in enumerate(calls)])


def test_parse_one_block():
    fmt = TextFormat()
    assert fmt.parse(C("THOUGHT: look\n\n```bash\nls -la\n```")) == ("look", Action(kind="bash", command="ls -la"))
    assert fmt.parse(C("done\n```bash\nsubmit\n```")) == ("done", Action(kind="submit"))


def test_heredoc_edit_survives_parsing():
    cmd = "edit a.py <<'EOF'\n    x = 1\n=======\n    x = 2\nEOF"
    assert TextFormat().parse(C(f"fix\n```bash\n{cmd}\n```\n"))[1].command == cmd


@pytest.mark.parametrize("text,needle", [
    ("no block at all", "found 0 bash blocks"),
    ("```bash\nls\n```\n```bash\npwd\n```", "found 2 bash blocks"),
    ("```bash\nls\n", "unterminated"),
    ("```bash\n\n```", "empty"),
])
def test_malformed_output_is_a_format_error_that_says_what_is_expected(text, needle):
    with pytest.raises(FormatError, match=needle) as e:
        TextFormat().parse(C(text))
    assert "```bash" in str(e.value) or "bash block" in str(e.value)


def test_render_alternates_roles(train_tasks):
    steps = [Step(turn=0, actor="student", output="a", action=Action(kind="bash", command="x"), observation="",
                  returncode=1)]
    msgs = TextFormat().render(train_tasks[0], steps)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[1]["content"] == train_tasks[0].problem_statement
    assert msgs[3]["content"] == "(exit 1)\n(no output)"


def test_toolcalls_parse():
    fmt = ToolCallFormat()
    assert fmt.parse(C("why", [("bash", '{"command": "ls"}')])) == ("why", Action(kind="bash", command="ls"))
    assert fmt.parse(C("", [("submit", "{}")]))[1] == Action(kind="submit")
    _, edit = fmt.parse(C("", [("edit", json.dumps({"path": "a.py", "old": "x = 1", "new": "x = 2"}))]))
    assert edit.command == "edit a.py <<'EOF'\nx = 1\n=======\nx = 2\nEOF"
    for calls, needle in [([], "0 tool calls"), ([("bash", "{}"), ("bash", "{}")], "2 tool calls"),
                          ([("bash", "{not json")], "not valid JSON"), ([("bash", "{}")], "missing its argument"),
                          ([("rm", "{}")], "unknown tool")]:
        with pytest.raises(FormatError, match=needle):
            fmt.parse(C("", calls))


def test_context_rewrite_between_formats(train_tasks):
    """Steps written in one format are shown to a policy of the other format in its own form."""
    edit = "edit a.py <<'EOF'\nx = 1\n=======\nx = 2\nEOF"
    text_steps = [
        Step(turn=0, actor="student", output="THOUGHT: look\n\n```bash\nls\n```", format="text", thought="look",
             action=Action(kind="bash", command="ls"), observation="a.py\n", returncode=0),
        Step(turn=1, actor="student", output="oops", format="text", action=None, observation="Format error: x",
             format_error=True),
        Step(turn=2, actor="student", output=f"fix\n```bash\n{edit}\n```", format="text", thought="fix",
             action=Action(kind="bash", command=edit), observation="edited a.py\n", returncode=0),
    ]
    msgs = ToolCallFormat().render(train_tasks[0], text_steps)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "tool",
                                         "assistant", "user", "assistant", "tool"]
    assert msgs[2]["tool_calls"][0]["function"] == {"name": "bash", "arguments": json.dumps({"command": "ls"})}
    assert msgs[2]["content"] == "look" and msgs[3]["content"] == "a.py\n"
    assert json.loads(msgs[6]["tool_calls"][0]["function"]["arguments"]) == \
        {"path": "a.py", "old": "x = 1", "new": "x = 2"}
    # and back: a tool-call step shown to a text-format policy
    call = ToolCall(id="call_x", name="bash", arguments='{"command": "cat a.py"}')
    tc_step = Step(turn=0, actor="expert", output="read it", format="toolcalls", thought="read it",
                   action=Action(kind="bash", command="cat a.py"), observation="x = 1\n", returncode=0,
                   completion=Completion(text="read it", tool_calls=[call]))
    assert TextFormat().render(train_tasks[0], [tc_step])[2]["content"] == "THOUGHT: read it\n\n```bash\ncat a.py\n```"
    same = ToolCallFormat().render(train_tasks[0], [tc_step])  # its own format: verbatim, ids kept
    assert same[2]["tool_calls"][0]["id"] == "call_x" and same[3]["tool_call_id"] == "call_x"


def test_observation_window(train_tasks):
    steps = [Step(turn=i, actor="student", output=f"```bash\necho {i}\n```",
                  action=Action(kind="bash", command=f"echo {i}"),
                  observation=f"{i}\n" * 50, returncode=0) for i in range(5)]
    msgs = make_format("text?window=2").render(train_tasks[0], steps)
    obs = [m["content"] for m in msgs[3::2]]
    assert [o.startswith("[output of turn") for o in obs] == [True, True, True, False, False]
    with pytest.raises(InputError, match="windw"):
        make_format("text?windw=2")


def test_oec_with_text_student_and_toolcall_expert(train_tasks):
    """The stored trajectory is canonical; at the switch the expert's prompt holds the student's turns as tool calls."""
    import random

    from oec.env.sandbox_env import SandboxEnv
    from oec.rollout.loop import rollout
    from oec.rollout.policies import make_policy
    from oec.rollout.schedules import Switch

    expert = make_policy("scripted:expert", "toolcalls")
    prompts = []

    class Recording:
        spec, format = expert.spec, expert.format

        def act(self, messages, episode):
            prompts.append(messages)
            return expert.act(messages, episode)

    task = train_tasks[4]
    policies = {"student": make_policy("scripted:noisy?error_rate=0"), "expert": Recording()}
    plan = Switch("fixed:3").plan(task, policies, random.Random(0), probe=None)
    with SandboxEnv(task) as env:
        traj = rollout(task, env, plan, mode="oec", seed=0)
    assert traj.resolved and traj.switch_turn == 3
    assert [s.format for s in traj.steps] == ["text"] * 3 + ["toolcalls"] * (len(traj.steps) - 3)
    first = prompts[0]
    assert [m["role"] for m in first[2:]] == ["assistant", "tool"] * 3
    assert all(m["tool_calls"][0]["function"]["name"] == "bash" for m in first[2::2])
    assert "```" not in json.dumps(first[2:])  # no trace of the student's text format
    # canonical: the same actions whatever format produced them
    assert traj.steps[0].action.command == "runtests" and traj.steps[-1].action.kind == "submit"
    assert traj.steps[-1].completion.tool_calls[0].name == "submit"
