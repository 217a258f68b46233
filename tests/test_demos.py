"""`oec demos import`: mini-swe-agent trajectory files and SWE-smith-style messages JSONL as BC demonstrations.

The .traj.json files in tests/data are real mini-swe-agent 2.4.6 runs (its agent, shell environment, prompts and file
writer) on a toy task; only its model is its own DeterministicModel replaying fixed commands, because no API model can
run here (tests/data/make_miniswe_trajs.py writes them): one per SWE-bench config (text and tool calls), one with a
reply its own parser rejects (a format error), one with two tool calls in one reply. The SWE-smith records are written
by hand in the shape of SWE-agent's function-calling trajectories, as no real ones can be downloaded here.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from oec.core.store import read_trajectories
from oec.data.build import BuildConfig, build
from oec.data.demos import import_demos
from oec.data.filter import FilterConfig, filter_run

DATA = Path(__file__).parent / "data"


def smith_record(iid, resolved=True):
    call = lambda i, name, args: {"id": f"c{i}", "type": "function",  # noqa: E731
                                  "function": {"name": name, "arguments": json.dumps(args)}}
    return {"instance_id": iid, "resolved": resolved, "messages": json.dumps([
        {"role": "system", "content": "You are a helpful assistant ..."},
        {"role": "user", "content": [{"type": "text", "text": "<uploaded_files>/testbed</uploaded_files>\n"
                                      "<pr_description>\nConsider the following PR description:\nadd() subtracts\n"
                                      "</pr_description>\nCan you help me?"}]},
        {"role": "assistant", "content": "Let me look.", "tool_calls": [
            call(0, "str_replace_editor", {"command": "view", "path": "/testbed/m.py", "view_range": [1, 5]})]},
        {"role": "tool", "tool_call_id": "c0",
         "content": "OBSERVATION:\n     1\tdef add(a, b):\n     2\t    return a - b"},
        {"role": "assistant", "content": "Fix it.", "tool_calls": [call(1, "str_replace_editor", {
            "command": "str_replace", "path": "/testbed/m.py", "old_str": "    return a - b",
            "new_str": "    return a + b"})]},
        {"role": "tool", "tool_call_id": "c1", "content": "OBSERVATION:\nThe file /testbed/m.py has been edited."},
        {"role": "assistant", "content": "Check.", "tool_calls": [call(2, "bash", {"command": "python -m pytest -q"})]},
        {"role": "tool", "tool_call_id": "c2", "content": "OBSERVATION:\n1 passed"},
        {"role": "assistant", "content": "Done.", "tool_calls": [call(3, "submit", {})]},
        {"role": "tool", "tool_call_id": "c3", "content": "OBSERVATION:\ndiff --git ..."},
    ])}


CLEAN = [DATA / "miniswe_backticks.traj.json", DATA / "miniswe_toolcalls.traj.json"]


def test_real_mini_swe_agent_trajectories_become_expert_runs(tmp_path):
    run = tmp_path / "msa"
    result = import_demos(CLEAN, run, "miniswe")
    assert result == {"run": str(run), "imported": 2, "already_there": 0, "errors": 0}
    trajs = read_trajectories(run)
    task = json.loads((DATA / "toy_task.json").read_text())
    for t in trajs:
        assert t.task_id == task["task_id"] and t.exit_status == "submitted" and t.mode == "imported"
        commands = [s.action.command if s.action.kind == "bash" else "submit" for s in t.steps]
        assert commands[0] == "python -m pytest -q 2>&1 | tail -5" and commands[-1] == "submit" and len(commands) == 6
        assert all(s.actor == "expert" and not s.format_error for s in t.steps)
        assert "FAILED tests/" in t.steps[0].observation and "<returncode>" not in t.steps[0].observation
        assert t.steps[0].returncode == 0 and t.steps[0].thought == "Let me run the tests to see what fails."
    assert sorted(t.sample for t in trajs) == [0, 1]  # two demonstrations of one instance
    assert import_demos(CLEAN, run, "miniswe")["already_there"] == 2 and len(read_trajectories(run)) == 2
    # the same files by other spellings of their paths, and a copy elsewhere: nothing new
    other = [DATA / ".." / "data" / p.name for p in CLEAN]
    (tmp_path / "copy.traj.json").write_bytes(CLEAN[0].read_bytes())
    assert import_demos([*other, tmp_path / "copy.traj.json"], run, "miniswe")["already_there"] == 3
    assert len(read_trajectories(run)) == 2
    problems = [json.loads(x) for x in (run / "problems.jsonl").read_text().splitlines()]
    assert problems[0]["problem_statement"] == task["problem_statement"].strip()  # taken out of <pr_description>


def test_format_errors_and_parallel_tool_calls_import_without_loss(tmp_path):
    """A reply mini-swe-agent rejected lives only inside its format-error message: it becomes a format-error step
    with the reply and the feedback, so the format_errors filter sees it. Two tool calls in one reply (parallel
    calls, on by default in its tool-call config) become two steps, each with the output of its own call."""
    run = tmp_path / "r"
    import_demos([DATA / "miniswe_format_error.traj.json", DATA / "miniswe_parallel.traj.json"], run, "miniswe")
    by_file = {t.exit_message.split(" from ")[1].split(" (")[0]: t for t in read_trajectories(run)}
    fe, par = by_file[str(DATA / "miniswe_format_error.traj.json")], by_file[str(DATA / "miniswe_parallel.traj.json")]
    assert len(fe.steps) == 7 and [s.format_error for s in fe.steps] == [False, True] + [False] * 5
    rejected = fe.steps[1]
    assert "```mswea_bash_command\nls\n```" in rejected.output and rejected.action is None
    assert "Expected exactly 1 action, found 2" in rejected.observation
    verdicts = filter_run(run, FilterConfig(require_resolved=False, max_read_only_run=None, max_format_errors=0))
    assert verdicts["kept"] == 1  # the parallel one; the other has one format error too many
    assert len(par.steps) == 8 and [s.info.get("parallel_call") for s in par.steps[1:3]] == [0, 1]
    assert [s.action.command for s in par.steps[1:3]][0] == "ls"
    assert par.steps[1].observation.split() == ["fine_kiko", "tests"]
    assert par.steps[2].observation.startswith("def zeme_viba") and par.steps[2].returncode == 0


def test_imported_demos_build_in_the_students_format(tmp_path, tiny_model):
    run = tmp_path / "msa"
    import_demos([DATA / "miniswe_backticks.traj.json"], run, "miniswe")
    # mini-swe-agent files say nothing of the tests: the verifier gate keeps nothing until told
    assert filter_run(run, FilterConfig())["kept"] == 0
    assert filter_run(run, FilterConfig(require_resolved=False, max_read_only_run=None))["kept"] == 1
    build(BuildConfig(runs=[str(run)], out=str(tmp_path / "d.jsonl"), format="openai"))
    record = json.loads((tmp_path / "d.jsonl").read_text())
    assistant = [m for m in record["messages"] if m["role"] == "assistant"]
    assert len(assistant) == 6 and all(m["weight"] == 1 for m in assistant)
    assert assistant[-1]["content"].endswith("```bash\nsubmit\n```")  # our tool, not mini-swe-agent's echo marker
    assert "mswea_bash_command" not in json.dumps(record)
    assert record["messages"][0]["content"].startswith("You fix bugs")  # the student's system prompt
    info = build(BuildConfig(runs=[str(run)], student=str(tiny_model), out=str(tmp_path / "hf"), max_tokens=2048))
    assert info["stats"]["examples"] == 1 and info["stats"]["dropped_tokens"] == 0


def test_swe_smith_messages_with_swe_agent_tools(tmp_path):
    src = tmp_path / "smith.jsonl"
    src.write_text("\n".join([json.dumps(smith_record("a__b-1")), "{not json", json.dumps({"messages": []}),
                              json.dumps(smith_record("a__b-2", resolved=False))]) + "\n")
    result = import_demos([src], tmp_path / "run", "messages")
    assert (result["imported"], result["errors"]) == (2, 2)
    errors = [json.loads(x) for x in (tmp_path / "run/import_errors.jsonl").read_text().splitlines()]
    assert [e["where"] for e in errors] == [f"{src} line 2", f"{src} line 3"] and "instance_id" in errors[1]["error"]
    t = read_trajectories(tmp_path / "run")[0]
    assert [s.action.command for s in t.steps[:3]] == [
        "cat -n /testbed/m.py | sed -n '1,5p'", "edit /testbed/m.py <<'EOF'\n    return a - b\n=======\n"
        "    return a + b\nEOF", "python -m pytest -q"]
    assert t.steps[-1].action.kind == "submit" and t.steps[0].observation.startswith("     1\tdef add")
    assert t.resolved and not read_trajectories(tmp_path / "run")[1].resolved
    problems = (tmp_path / "run/problems.jsonl").read_text()
    assert json.loads(problems.splitlines()[0])["problem_statement"] == "add() subtracts"


def test_cli_reports_counts_and_resolved_ids(tmp_path):
    report = tmp_path / "report.json"
    task_id = json.loads((DATA / "toy_task.json").read_text())["task_id"]
    report.write_text(json.dumps({"resolved_ids": [task_id]}))
    r = subprocess.run([sys.executable, "-m", "oec", "demos", "import", str(DATA), "--out", str(tmp_path / "r"),
                        "--resolved-ids", str(report)], capture_output=True, text=True)
    assert r.returncode == 0 and "imported 4 demonstrations" in r.stdout, r.stderr
    assert all(t.resolved for t in read_trajectories(tmp_path / "r"))
    r = subprocess.run([sys.executable, "-m", "oec", "show", str(tmp_path / "r")], capture_output=True, text=True)
    assert r.returncode == 0 and "4 trajectories" in r.stdout, r.stderr
    r = subprocess.run([sys.executable, "-m", "oec", "demos", "import", str(tmp_path / "nope"), "--out",
                        str(tmp_path / "x")], capture_output=True, text=True)
    assert r.returncode == 2 and "nope: no such file" in r.stderr


@pytest.mark.parametrize("text,expected", [
    ("<returncode>1</returncode>\n<output>\nboom\n</output>", ("boom", 1)),
    ("<returncode>0</returncode>\n<warning>long</warning><output_head>\nA\n</output_head>\n<elided_chars>9"
     "</elided_chars>\n<output_tail>\nZ\n</output_tail>", ("A\n[...]\nZ", 0)),
    ("OBSERVATION:\nplain", ("plain", None)),
])
def test_observation_templates(text, expected):
    from oec.data.demos import observation_of

    assert observation_of(text) == expected
