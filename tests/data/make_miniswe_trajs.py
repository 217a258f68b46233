"""Writes the mini-swe-agent trajectory files that tests/test_demos.py imports: real runs of mini-swe-agent 2.4.6's
DefaultAgent and LocalEnvironment, with its own SWE-bench prompts, on a toy task's workspace. Only the model is
replaced, by mini-swe-agent's own DeterministicModel / DeterministicToolcallModel (no API model can run here), replaying
a fixed list of commands; the observations, messages and file format are mini-swe-agent's.

    .venv/bin/python tests/data/make_miniswe_trajs.py   # mini-swe-agent is in the dev extra
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from minisweagent import config as mconfig
from minisweagent.agents.default import DefaultAgent
from minisweagent.environments.local import LocalEnvironment
from minisweagent.exceptions import FormatError
from minisweagent.models.test_models import (
    DeterministicModel,
    DeterministicToolcallModel,
    make_output,
    make_toolcall_output,
)
from minisweagent.models.litellm_textbased_model import LitellmTextbasedModelConfig
from minisweagent.models.utils.actions_text import parse_regex_actions

HERE = Path(__file__).resolve().parent
TASK = json.loads((HERE / "toy_task.json").read_text())
PATCH = TASK["gold_patch"].splitlines()
MODULE = next(line[6:] for line in PATCH if line.startswith("+++ b/"))
BUG = next(line[1:] for line in PATCH if line.startswith("-") and not line.startswith("---"))
FIX = next(line[1:] for line in PATCH if line.startswith("+") and not line.startswith("+++"))
THOUGHTS_AND_COMMANDS = [
    ("Let me run the tests to see what fails.", "python -m pytest -q 2>&1 | tail -5"),
    ("Let me read the module the failing test imports.", f"cat {MODULE}"),
    ("The bug is on this line; let me fix it.",
     f"python - <<'EOF'\nimport pathlib\np = pathlib.Path('{MODULE}')\n"
     f"p.write_text(p.read_text().replace({BUG!r}, {FIX!r}, 1))\nEOF"),
    ("The tests should pass now.", "python -m pytest -q 2>&1 | tail -2"),
    ("Create the patch.", f"git diff -- {MODULE} > patch.txt"),
    ("Submit.", "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT && cat patch.txt"),
]


def workspace(root: Path) -> Path:
    for rel, text in TASK["repo"]["files"].items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
           "PATH": "/usr/bin:/bin"}
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "base"]):
        subprocess.run(["git", "-C", str(root), *cmd], env=env, check=True)
    return root


# A reply with two command blocks, which mini-swe-agent's own parser rejects (a format error), and a reply with two
# tool calls at once (mini-swe-agent's tool-call config allows parallel calls: it runs both)
BAD_REPLY = "THOUGHT: Two things at once.\n\n```mswea_bash_command\nls\n```\n\n```mswea_bash_command\npwd\n```"
PARALLEL = [("ls", "call_p0"), (f"cat {MODULE}", "call_p1")]


class ScriptedModel(DeterministicModel):
    """mini-swe-agent's DeterministicModel, whose serialized config names the exception a scripted reply raises
    (its own serialize cannot write an exception object into the trajectory file)."""

    def serialize(self) -> dict:
        outputs = [{**o, "extra": {**o["extra"], "actions": [{**a, "raise": type(a["raise"]).__name__}
                                                              if "raise" in a else a for a in o["extra"]["actions"]]}}
                   for o in self.config.outputs]
        config = self.config.model_copy(update={"outputs": outputs}).model_dump(mode="json")
        return {"info": {"config": {"model": config, "model_type": "minisweagent.models.test_models.DeterministicModel"}}}


def format_error(cfg: dict, content: str) -> dict:
    """The output that makes DefaultAgent meet the very FormatError its text models raise for CONTENT."""
    try:
        regex = cfg["model"].get("action_regex", LitellmTextbasedModelConfig.model_fields["action_regex"].default)
        parse_regex_actions(content, action_regex=regex, format_error_template=cfg["model"]["format_error_template"])
    except FormatError as e:
        return make_output(content, [{"raise": e}])
    raise AssertionError("the reply parsed")


def run(config_name: str, toolcalls: bool, out: Path, variant: str = "") -> None:
    cfg = yaml.safe_load((Path(mconfig.__file__).parent / "benchmarks" / config_name).read_text())
    with tempfile.TemporaryDirectory() as tmp:
        env = LocalEnvironment(cwd=str(workspace(Path(tmp))), env={"PYTHONDONTWRITEBYTECODE": "1"})
        if toolcalls:
            outputs = [make_toolcall_output(t, [{"id": f"call_{i}", "type": "function", "function": {
                "name": "bash", "arguments": json.dumps({"command": c})}}], [{"command": c, "tool_call_id": f"call_{i}"}])
                for i, (t, c) in enumerate(THOUGHTS_AND_COMMANDS)]
            if variant == "parallel":
                outputs.insert(1, make_toolcall_output("Two looks at once.", [{"id": i, "type": "function", "function": {
                    "name": "bash", "arguments": json.dumps({"command": c})}} for c, i in PARALLEL],
                    [{"command": c, "tool_call_id": i} for c, i in PARALLEL]))
            model = DeterministicToolcallModel(outputs=outputs, **{k: v for k, v in cfg["model"].items()
                                                                     if k in ("observation_template", "format_error_template")})
        else:
            outputs = [make_output(f"THOUGHT: {t}\n\n```mswea_bash_command\n{c}\n```", [{"command": c}])
                       for t, c in THOUGHTS_AND_COMMANDS]
            if variant == "format_error":
                outputs.insert(1, format_error(cfg, BAD_REPLY))
            model = ScriptedModel(outputs=outputs, observation_template=cfg["model"]["observation_template"])
        agent = DefaultAgent(model, env, **{**cfg["agent"], "cost_limit": 0})  # the stand-in model "costs" 1 a call
        agent.run(TASK["problem_statement"])
        data = agent.serialize()
        data["instance_id"] = TASK["task_id"]
        out.write_text(json.dumps(data, indent=1))
        print(f"wrote {out}: exit {data['info']['exit_status']}, {len(data['messages'])} messages", file=sys.stderr)


if __name__ == "__main__":
    run("swebench_backticks.yaml", False, HERE / "miniswe_backticks.traj.json")
    run("swebench.yaml", True, HERE / "miniswe_toolcalls.traj.json")
    run("swebench_backticks.yaml", False, HERE / "miniswe_format_error.traj.json", "format_error")
    run("swebench.yaml", True, HERE / "miniswe_parallel.traj.json", "parallel")
