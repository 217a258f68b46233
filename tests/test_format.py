import pytest

from oec.formats import TextFormat
from oec.protocols import FormatError
from oec.types import Action, Step


def test_parse_one_block():
    fmt = TextFormat()
    assert fmt.parse("THOUGHT: look\n\n```bash\nls -la\n```") == Action(kind="bash", command="ls -la")
    assert fmt.parse("done\n```bash\nsubmit\n```") == Action(kind="submit")


def test_heredoc_edit_survives_parsing():
    cmd = "edit a.py <<'EOF'\n    x = 1\n=======\n    x = 2\nEOF"
    assert TextFormat().parse(f"fix\n```bash\n{cmd}\n```\n").command == cmd


@pytest.mark.parametrize("text,needle", [
    ("no block at all", "found 0 bash blocks"),
    ("```bash\nls\n```\n```bash\npwd\n```", "found 2 bash blocks"),
    ("```bash\nls\n", "unterminated"),
    ("```bash\n\n```", "empty"),
])
def test_malformed_output_is_a_format_error_that_says_what_is_expected(text, needle):
    with pytest.raises(FormatError, match=needle) as e:
        TextFormat().parse(text)
    assert "```bash" in str(e.value) or "bash block" in str(e.value)


def test_render_alternates_roles(train_tasks):
    steps = [Step(turn=0, actor="student", output="a", action=Action(kind="bash", command="x"), observation="",
                  returncode=1)]
    msgs = TextFormat().render(train_tasks[0], steps)
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
    assert msgs[1]["content"] == train_tasks[0].problem_statement
    assert msgs[3]["content"] == "(exit 1)\n(no output)"
