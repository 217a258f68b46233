"""`oec demos import`: other agents' trajectories -> a run directory of expert demonstrations for BC.

Sources:
  - `miniswe`: mini-swe-agent `.traj.json` files (a file, or a directory searched recursively): `messages` in the
    OpenAI chat format, one ```bash block per assistant turn (or native tool calls), observations wrapped in
    `<returncode>`/`<output>` tags, `info.exit_status`.
  - `messages`: JSONL with one conversation per line, as SWE-smith publishes its SFT trajectories: `messages` (a list,
    or a JSON string of one), `instance_id`, optionally `resolved`. SWE-agent's tools (`bash`, `str_replace_editor`,
    `submit`) are turned into the shell commands our agents use (`cat -n`, `edit`, heredocs, `submit`), so a student
    trained on them learns the tools it will actually have.

Each conversation becomes an ordinary Trajectory (mode "imported", every turn the expert's; thought and action kept,
output re-rendered by the student's Format at build time), so `oec show`, `oec filter`, `oec shift` and `oec build`
work on it. The problem statements go to RUN/problems.jsonl (the demos come without repos, so there are no Tasks);
records that cannot be converted are listed in RUN/import_errors.jsonl with the file, line and reason, and the import
goes on. Importing again into the same run adds only what is not there yet.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterator, Literal

from oec.core.atomic import write_text
from oec.core.errors import ConversionError, InputError
from oec.core.stage import digest
from oec.core.store import PROBLEMS, TRAJECTORIES, TrajectoryWriter, read_trajectories
from oec.core.types import Action, Problem, Step, Trajectory, Verdict

ERRORS = "import_errors.jsonl"
SUBMIT_MARKERS = ("COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT", "MINI_SWE_AGENT_FINAL_OUTPUT")
EXIT = {"submitted": "submitted", "limitsexceeded": "step_limit", "formaterror": "format_errors"}
# Any fenced block: ```bash, ```sh, or mini-swe-agent 2's ```mswea_bash_command.
FENCE = re.compile(r"^```[\w-]*[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)
OBSERVATION = re.compile(r"<returncode>(-?\d+)</returncode>\s*(.*)", re.DOTALL)
SOURCE = re.compile(r" from (.*) \(sha256 ([0-9a-f]{16})\)$")  # where an imported trajectory came from


def _text(content) -> str:
    """Message content as text: a string, or a list of {"type": "text", "text": ...} parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content if isinstance(p, dict))


def problem_of(first_user: str) -> str:
    """The issue text inside the agent's instance prompt (`<pr_description>` in mini-swe-agent and SWE-agent)."""
    m = re.search(r"<pr_description>(.*?)</pr_description>", first_user, re.DOTALL)
    text = m.group(1) if m else first_user
    return re.sub(r"^\s*Consider the following PR description:\s*", "", text).strip()


def observation_of(text: str) -> tuple[str, int | None]:
    """(output, return code) from an observation message, unwrapping the agents' templates."""
    text = re.sub(r"^\s*OBSERVATION:[ \t]*\n?", "", text)
    m = OBSERVATION.match(text.strip())
    if not m:
        return text, None
    body = m.group(2)
    inner = re.findall(r"<(output|output_head|output_tail)>\n?(.*?)</\1>", body, re.DOTALL)
    if inner:
        body = "\n[...]\n".join(part.rstrip("\n") for _, part in inner)
    return body, int(m.group(1))


def _editor(args: dict) -> str:
    """SWE-agent's str_replace_editor call as the equivalent command in our shell."""
    cmd, path = args.get("command"), args.get("path", "")
    if cmd == "view":
        lo, hi = (list(args.get("view_range") or []) + [None, None])[:2]
        if lo is not None:
            return f"cat -n {path} | sed -n '{lo},{hi if hi not in (None, -1) else '$'}p'"
        return f"cat -n {path}" if not path.endswith("/") else f"find {path} -maxdepth 2 -not -path '*/.*'"
    if cmd == "create":
        return f"cat > {path} <<'EOF'\n{args.get('file_text', '')}\nEOF"
    if cmd == "str_replace":
        return f"edit {path} <<'EOF'\n{args.get('old_str', '')}\n=======\n{args.get('new_str', '')}\nEOF"
    if cmd == "insert":  # GNU sed's `r` appends a file (here stdin) after the line
        return f"sed -i '{int(args.get('insert_line', 0))}r /dev/stdin' {path} <<'EOF'\n{args.get('new_str', '')}\nEOF"
    raise ConversionError(f"str_replace_editor command {cmd!r} has no shell equivalent")


def _action(message: dict) -> tuple[str, Action | None]:
    """(thought, action) of an assistant message; action None when it holds no usable command (a format error)."""
    text = _text(message.get("content"))
    calls = message.get("tool_calls") or []
    parsed = (message.get("extra") or {}).get("actions") or []  # mini-swe-agent 2 records what it executed
    if parsed and isinstance(parsed[0], dict) and "command" in parsed[0]:
        command = parsed[0]["command"]
        if not calls and FENCE.search(text):
            text = text[: FENCE.search(text).start()]
    elif calls:
        fn = calls[0].get("function", {})
        args = fn.get("arguments") or {}
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError:
                raise ConversionError(f"tool call arguments are not JSON: {args[:80]!r}") from None
        name = fn.get("name")
        if name == "submit":
            return text.strip(), Action(kind="submit")
        if name == "str_replace_editor":
            return text.strip(), Action(kind="bash", command=_editor(args))
        if name in ("bash", "execute_bash", "shell"):
            command = args.get("command", "")
        else:
            raise ConversionError(f"unknown tool {name!r} (known: bash, str_replace_editor, submit)")
    else:
        blocks = FENCE.findall(text)
        if len(blocks) != 1:
            return text.strip(), None
        command = blocks[0]
        text = text[: FENCE.search(text).start()]
    command = command.strip()
    thought = text.strip().removeprefix("THOUGHT:").strip()
    if not command:
        return thought, None
    if command == "submit" or any(m in command for m in SUBMIT_MARKERS):
        return thought, Action(kind="submit")
    return thought, Action(kind="bash", command=command)


def _rejected(message: dict) -> bool:
    return message.get("role") == "user" and (message.get("extra") or {}).get("interrupt_type") == "FormatError"


def _rejected_reply(message: dict) -> str:
    """The reply a format-error message rejected: text models keep it as `model_response`; tool-call models keep the
    provider's whole response, whose message content is the reply's text."""
    extra = message.get("extra") or {}
    if extra.get("model_response") is not None:
        return _text(extra["model_response"])
    response = extra.get("response")
    choices = response.get("choices") if isinstance(response, dict) else None
    return _text(choices[0].get("message", {}).get("content")) if choices else ""


def _one_per_call(message: dict, replies: list[dict]) -> list[tuple[dict, list[dict]]]:
    """(assistant message, its replies), one pair per tool call: parallel calls (on by default in mini-swe-agent's
    tool-call config) become one step each, with the tool message that answers it (by call id, else in order)."""
    calls = message.get("tool_calls") or []
    if len(calls) < 2:
        return [(message, replies)]
    actions = (message.get("extra") or {}).get("actions") or []
    by_id = {r.get("tool_call_id"): r for r in replies if r.get("tool_call_id")}
    out = []
    for k, call in enumerate(calls):
        answer = by_id.get(call.get("id")) or (replies[k] if k < len(replies) else None)
        extra = {**(message.get("extra") or {}), "actions": actions[k:k + 1]}
        out.append(({**message, "tool_calls": [call], "extra": extra}, [answer] if answer else []))
    return out


def convert(messages: list[dict], task_id: str, sample: int, source: str, exit_status: str | None = None,
            resolved: bool | None = None, patch: str = "") -> tuple[Trajectory, Problem]:
    if not messages or not isinstance(messages, list):
        raise ConversionError("no messages")
    users = [m for m in messages if m.get("role") == "user"]
    if not users:
        raise ConversionError("no user message with the problem statement")
    problem = Problem(task_id=task_id, problem_statement=problem_of(_text(users[0].get("content"))))
    i = messages.index(users[0]) + 1
    steps: list[Step] = []

    def add(**fields) -> None:
        steps.append(Step(turn=len(steps), actor="expert", format=f"import:{source}", **fields))

    while i < len(messages):
        m = messages[i]
        i += 1
        if _rejected(m):  # mini-swe-agent 2 keeps a rejected reply only inside its format-error message
            reply = _rejected_reply(m)
            add(output=reply, thought=reply.strip(), action=None, observation=_text(m.get("content")),
                format_error=True)
            continue
        if m.get("role") != "assistant":
            continue  # e.g. a second instruction message before the first turn
        replies = []
        while i < len(messages) and messages[i].get("role") in ("user", "tool") and not _rejected(messages[i]):
            replies.append(messages[i])
            i += 1
        for k, (single, answer) in enumerate(_one_per_call(m, replies)):
            thought, action = _action(single)
            observation, returncode = observation_of("\n".join(_text(r.get("content")) for r in answer))
            raw = [(r.get("extra") or {}) for r in answer]
            if len(raw) == 1 and "raw_output" in raw[0]:  # mini-swe-agent 2 keeps the untemplated output
                observation, returncode = raw[0]["raw_output"], raw[0].get("returncode", returncode)
            add(output=_text(m.get("content")) if k == 0 else "", thought=thought if k == 0 else "", action=action,
                observation=observation if action else "\n".join(_text(r.get("content")) for r in answer),
                format_error=action is None, returncode=returncode,
                info={"parallel_call": k} if len(m.get("tool_calls") or []) > 1 else {})
    if not steps:
        raise ConversionError("no assistant turns")
    status = EXIT.get((exit_status or "").replace("_", "").lower())
    if status is None:
        status = "submitted" if steps[-1].action and steps[-1].action.kind == "submit" else "error"
    if not patch and steps[-1].action and steps[-1].action.kind == "submit" and "diff --git" in steps[-1].observation:
        patch = steps[-1].observation[steps[-1].observation.index("diff --git"):]  # SWE-agent's submit prints it
    # We did not run the tests: resolved only when the source says so, and the verdict says which it is.
    verdict = Verdict(resolved=bool(resolved), tests={}, patch=patch,
                      error=None if resolved is not None else "not verified: an imported demonstration")
    traj = Trajectory(task_id=task_id, sample=sample, mode="imported", policies={"expert": f"import:{source}"},
                      steps=steps, exit_status=status, verdict=verdict, seed=0,
                      exit_message=f"imported ({exit_status})" if exit_status else "imported")
    return traj, problem


def _records(paths: list[Path], source: str) -> Iterator[tuple[str, dict | None, str | None]]:
    """(where, record, error) for every demonstration in PATHS."""
    for path in paths:
        if not path.exists():
            raise InputError(f"{path}: no such file or directory")
        if source == "miniswe":
            files = sorted(path.rglob("*.traj.json")) + sorted(path.rglob("*.traj")) if path.is_dir() else [path]
            for f in files:
                try:
                    yield str(f.resolve()), json.loads(f.read_text()), None
                except (json.JSONDecodeError, UnicodeDecodeError) as e:
                    yield str(f), None, f"not valid JSON ({e})"
        else:
            with path.open() as fh:
                for lineno, line in enumerate(fh, 1):
                    if line.strip():
                        where = f"{path.resolve()} line {lineno}"
                        try:
                            yield where, json.loads(line), None
                        except json.JSONDecodeError as e:
                            yield where, None, f"not valid JSON ({e.msg} at column {e.colno})"


def _fields(record: dict, where: str, source: str, resolved_ids: set[str] | None) -> dict:
    """The parts of one record that `convert` needs."""
    if source == "miniswe":
        info = record.get("info") or {}
        iid = record.get("instance_id") or info.get("instance_id") or Path(where).name.split(".traj")[0]
        messages, status, resolved = record.get("messages"), info.get("exit_status"), None
        patch = info.get("submission") or ""
    else:
        iid = record.get("instance_id") or record.get("task_id")
        if not iid:
            raise ConversionError("no `instance_id`")
        messages, status, resolved = record.get("messages"), record.get("exit_status"), record.get("resolved")
        patch = record.get("patch") or record.get("model_patch") or ""
        if isinstance(messages, str):  # SWE-smith's dataset stores the list as a JSON string
            try:
                messages = json.loads(messages)
            except json.JSONDecodeError:
                raise ConversionError("`messages` is a string but not JSON") from None
    if resolved_ids is not None:
        resolved = iid in resolved_ids
    return {"messages": messages, "task_id": iid, "exit_status": status, "resolved": resolved, "patch": patch}


def import_demos(paths: list[str | Path], out: str | Path, source: Literal["miniswe", "messages"],
                 resolved_ids: str | Path | None = None) -> dict:
    """Convert every demonstration in PATHS into OUT (a run directory); return counts."""
    if source not in ("miniswe", "messages"):
        raise InputError(f"unknown demonstration format {source!r}; use miniswe or messages")
    ids = None
    if resolved_ids is not None:  # a SWE-bench evaluation report ({"resolved_ids": [...]}) or a JSON list of ids
        data = json.loads(Path(resolved_ids).read_text())
        ids = set(data.get("resolved_ids", []) if isinstance(data, dict) else data)
    run = Path(out)
    run.mkdir(parents=True, exist_ok=True)
    have = read_trajectories(run / TRAJECTORIES)
    # what is there already, by the file (resolved: another spelling of a path is the same file) and by content (the
    # same trajectory copied elsewhere)
    sources = [SOURCE.search(t.exit_message) for t in have]
    seen_sources = {m.group(1) for m in sources if m} | {t.exit_message.split(" from ", 1)[-1] for t in have}
    seen_content = {m.group(2) for m in sources if m}
    samples: dict[str, int] = {}
    for t in have:
        samples[t.task_id] = max(samples.get(t.task_id, 0), t.sample + 1)
    counts = {"imported": 0, "already_there": 0, "errors": 0}
    writer = TrajectoryWriter(run / TRAJECTORIES)
    try:
        with (run / PROBLEMS).open("a") as problems, (run / ERRORS).open("a") as errors:
            for where, record, error in _records([Path(p) for p in paths], source):
                content = digest(record)
                if where in seen_sources or (record is not None and content in seen_content):
                    counts["already_there"] += 1
                    continue
                try:
                    if error:
                        raise ConversionError(error)
                    fields = _fields(record, where, source, ids)
                    sample = samples.get(fields["task_id"], 0)
                    traj, problem = convert(source=source, sample=sample, **fields)
                except ConversionError as e:
                    errors.write(json.dumps({"where": where, "error": str(e)}) + "\n")
                    counts["errors"] += 1
                    continue
                except (ValueError, TypeError, AttributeError, KeyError) as e:  # a record of an unexpected shape
                    errors.write(json.dumps({"where": where, "error": f"malformed record ({e.__class__.__name__}: "
                                                                     f"{e})"}) + "\n")
                    counts["errors"] += 1
                    continue
                samples[traj.task_id] = sample + 1
                # the problem first, on disk, then the trajectory: a kill between them leaves a harmless duplicate
                # problem, never a trajectory whose problem is lost (a rerun skips the trajectory as already there)
                problems.write(problem.model_dump_json() + "\n")
                problems.flush()
                os.fsync(problems.fileno())
                writer.write(traj.model_copy(update={"exit_message": f"{traj.exit_message} from {where} "
                                                                     f"(sha256 {content})"}))
                seen_sources.add(where)
                seen_content.add(content)
                counts["imported"] += 1
    finally:
        writer.close()
    manifest = {"config": {"tasks": None, "mode": "imported"}, "imported": {"format": source,
                "paths": [str(p) for p in paths], "resolved_ids": str(resolved_ids) if resolved_ids else None}}
    write_text(run / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return {"run": str(run), **counts}
