"""`oec view RUN`: what happened in a run, and why: one self-contained HTML page (or plain text with `--text`).

Each trajectory shows its steps coloured by actor (a DAgger label beside the student's action), the switch turn
marked, observations folded, the workspace diff, the verdict's per-test results, the filter's verdict with its reasons
and the failure category (failures.py). Given a dataset built by `oec build --format hf` (`--data DIR`), it also
shows each example exactly as the student's tokenizer sees it, decoded from the dataset's own input_ids, with the
tokens the loss trains on highlighted: the mask can be checked by eye. Everything shown comes from trajectories, which
are agent-written, so every string is escaped; the page's only script filters the list and reads no data.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from oec.viewer.failures import CATEGORIES, RESOLVED, classify_run
from oec.data.filter import FILTER_LINES
from oec.core.store import TRAJECTORIES, read_trajectories
from oec.tasks.io import InputError, tasks_of_run
from oec.core.types import Step, Trajectory
from oec.viewer.page import CSS, SCRIPT

OBS_CHARS = 4000  # an observation can be a whole test log: the page keeps its start, the run keeps it whole


@dataclass
class Segment:
    """A run of consecutive tokens of one kind: `trained` (assistant_masks 1), `context` (outside every assistant
    message) or `untrained` (an assistant message the loss skips: the student's turns before an OEC switch)."""

    kind: str
    text: str


@dataclass
class Example:
    turn: int
    tokens: int
    trained: int
    segments: list[Segment]


@dataclass
class Item:
    traj: Trajectory
    category: dict
    filter: dict | None
    problem: str | None
    examples: list[Example] = field(default_factory=list)


def segments(ids: list[int], mask: list[int], context: list[int] | None, tokenizer) -> list[Segment]:
    """Decode IDS in runs of one kind each; the trained runs are exactly the tokens with mask 1."""
    kinds = ["trained" if m else "context" if context is None or context[i] else "untrained"
             for i, m in enumerate(mask)]
    out, start = [], 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or kinds[i] != kinds[start]:
            out.append(Segment(kinds[start], tokenizer.decode(ids[start:i])))
            start = i
    return out


def load_examples(data: Path, run: Path) -> tuple[dict[tuple[str, int], list[Example]], set[str]]:
    """(task_id, sample) -> the built examples of RUN's trajectories in the dataset at DATA, decoded by the
    tokenizer saved beside it; and the runs the dataset was built from."""
    if not (data / "dataset_info.json").exists() or not (data / "tokenizer").is_dir():
        raise InputError(f"--data {data}: not a dataset written by `oec build --format hf` (it needs "
                         "dataset_info.json and tokenizer/); build one with `oec build RUN --student MODEL --out DIR`")
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    ds = load_from_disk(str(data))
    tokenizer = AutoTokenizer.from_pretrained(data / "tokenizer")
    has_context = "context_masks" in ds.column_names
    out: dict[tuple[str, int], list[Example]] = {}
    runs = set(ds.unique("run")) if "run" in ds.column_names else set()
    for row in ds:
        if "run" in row and Path(row["run"]).resolve() != run.resolve():
            continue  # a dataset built from several runs: only this run's examples belong here
        ids, mask = row["input_ids"], row["assistant_masks"]
        ex = Example(row.get("turn", -1), len(ids), sum(mask),
                     segments(ids, mask, row["context_masks"] if has_context else None, tokenizer))
        out.setdefault((row["task_id"], row["sample"]), []).append(ex)
    return out, runs


def _read_filter(run: Path) -> dict[tuple[str, int], dict]:
    path = run / FILTER_LINES
    if not path.exists():
        return {}
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {(r["task_id"], r["sample"]): r for r in rows}


def load(run: str | Path, task: str | None = None, sample: int | None = None, data: str | Path | None = None,
         tasks: str | Path | None = None) -> list[Item]:
    """The trajectories of RUN to show (all, one task's, or one), with what the other stages said about them."""
    run = Path(run)
    if not (run / TRAJECTORIES).exists():
        raise InputError(f"{run}: no {TRAJECTORIES} here; `oec view` takes a run directory written by `oec collect` "
                         "(e.g. runs/demo/seed-0/pools/oec-uniform)")
    examples, built_from = load_examples(Path(data), run) if data else ({}, set())
    categories = {(r["task_id"], r["sample"]): r for r in classify_run(run, tasks)}
    trajs = [t for t in read_trajectories(run)
             if (task is None or t.task_id == task) and (sample is None or t.sample == sample)]
    if not trajs:
        raise InputError(f"{run}: no trajectory of task {task!r}" + (f" sample {sample}" if sample is not None else "")
                         + "; `oec show RUN --json` lists what the run has")
    try:
        problems = {k: t.problem_statement for k, t in tasks_of_run(run, tasks).items()}
    except InputError as e:  # a moved tasks file costs only the problem statements
        warnings.warn(f"view: {e}", stacklevel=2)
        problems = {}
    if data and not any(t.key in examples for t in trajs):
        warnings.warn(f"view: the dataset {data} holds no example of these trajectories (it was built from "
                      f"{sorted(built_from)[:3]} as seen from where `oec build` ran; or none of them was kept)",
                      stacklevel=2)
    filters = _read_filter(run)
    return [Item(t, categories[t.key], filters.get(t.key), problems.get(t.task_id), examples.get(t.key, []))
            for t in trajs]


def _pre(text: str, cls: str = "", limit: int = OBS_CHARS) -> str:
    body = text if len(text) <= limit else text[:limit] + f"\n... ({len(text) - limit} more characters)"
    return f'<pre class="{cls}">{escape(body)}</pre>'


def _action(step_action, output: str) -> str:
    if step_action is None:
        return f'<div class="missing">output could not be parsed:</div>{_pre(output, "output")}'
    shown = "submit" if step_action.kind == "submit" else "$ " + step_action.command
    return _pre(shown, "command")


def _step(step: Step) -> str:
    obs = step.observation
    rc = "" if step.returncode is None else f", exit {step.returncode}"
    folded = (f'<details class="observation"><summary>observation ({len(obs.splitlines())} lines{rc})</summary>'
              f"{_pre(obs)}</details>" if obs else "")
    main = (f'<div><div class="who">turn {step.turn} · {escape(step.actor)}</div>'
            f'<div class="thought">{escape(step.thought)}</div>{_action(step.action, step.output)}{folded}</div>')
    label = ""
    if step.label is not None:
        label = (f'<div class="label"><div class="who">DAgger label ({escape(step.label.actor)})</div>'
                 f"{_action(step.label.action, step.label.output)}</div>")
    return f'<div class="turn {escape(step.actor)}{" labelled" if label else ""}">{main}{label}</div>'


def _diff(patch: str) -> str:
    if not patch.strip():
        return '<p class="missing">The final workspace has no change.</p>'
    def kind(line: str) -> str:
        if line.startswith(("--- ", "+++ ", "diff ", "index ")):
            return "file"
        return {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "")

    lines = [f'<span class="{kind(line)}">{escape(line)}</span>' for line in patch.splitlines()]
    return '<pre class="diff">' + "\n".join(lines) + "</pre>"


def _tests(traj: Trajectory) -> str:
    v = traj.verdict
    if v is None or not v.tests:
        why = v.error if v and v.error else "no verdict (the episode was not verified)"
        return f'<p class="missing">{escape(why)}</p>'
    rows = "".join(f'<tr class="{escape(r.outcome)}"><td class="text">{escape(k)}</td><td>{escape(r.outcome)}</td>'
                   f'<td class="text">{escape(r.message[:300])}</td></tr>' for k, r in v.tests.items())
    head = '<tr><th class="text">test</th><th>outcome</th><th class="text">message</th></tr>'
    return f'<table class="tests">{head}{rows}</table>'


def _verdicts(item: Item) -> str:
    c = item.category
    parts = [f'<div class="category {escape(c["category"])}"><b>{escape(c["category"])}</b>: {escape(c["reason"])}']
    others = [f"{k}: {v}" for k, v in c.get("signals", {}).items() if k != c["category"]]
    if others:
        parts.append(f'<div class="signals">also: {escape("; ".join(others))}</div>')
    if "judge" in c:
        j = c["judge"]
        said = j.get("reason") or j.get("unparsed", "")
        parts.append(f'<div class="judge">LLM judge ({escape(j.get("judge", ""))}): '
                     f'{escape(j.get("category") or "unparsed")} {escape(said)}</div>')
    parts.append("</div>")
    f = item.filter
    if f is None:
        parts.append('<div class="filter missing">not filtered (run `oec filter RUN`)</div>')
    else:
        reasons = "; ".join(f"{k}: {v}" for k, v in f["reasons"].items())
        parts.append(f'<div class="filter {"kept" if f["kept"] else "rejected"}">filter: '
                     f'{"kept" if f["kept"] else "rejected: " + escape(reasons)}</div>')
    return "".join(parts)


def _examples(item: Item) -> str:
    if not item.examples:
        return ""
    out = ["<h3>What the student's tokenizer sees (highlighted: trained tokens)</h3>"]
    for i, ex in enumerate(item.examples):
        spans = "".join(f'<mark class="trained">{escape(s.text)}</mark>' if s.kind == "trained" else
                        f'<span class="{s.kind}">{escape(s.text)}</span>' for s in ex.segments)
        out.append(f'<div class="example"><div class="who">example {i} (up to turn {ex.turn}): {ex.tokens} tokens, '
                   f'{ex.trained} trained</div><pre class="tokens">{spans}</pre></div>')
    return "".join(out)


def _section(i: int, item: Item) -> str:
    t = item.traj
    resolved = "resolved" if t.resolved else "unresolved"
    head = (f"<h2>{escape(t.task_id)} · sample {t.sample} <small>{escape(t.mode)} · "
            f"{escape(', '.join(f'{a}={p}' for a, p in t.policies.items()))}</small></h2>"
            f'<p class="outcome {resolved}">{resolved} · exit {escape(t.exit_status)}'
            + (f" · {escape(t.exit_message.splitlines()[0][:200])}" if t.exit_message else "") + "</p>")
    parts = [head, _verdicts(item)]
    if item.problem:
        parts.append(f'<details class="problem"><summary>problem statement</summary>{_pre(item.problem)}</details>')
    for step in t.steps:
        if step.turn == t.switch_turn:
            parts.append(f'<div class="switch">switch: the expert takes over at turn {t.switch_turn}</div>')
        parts.append(_step(step))
    planned = t.switch_info.get("switch_turn")
    if t.switch_turn is None and planned is not None:
        parts.append(f'<div class="switch planned">switch planned at turn {planned}; the student finished first</div>')
    parts += ["<h3>Workspace diff</h3>", _diff(t.verdict.patch if t.verdict else ""), "<h3>Tests</h3>", _tests(t),
              _examples(item)]
    attrs = (f'data-resolved="{resolved}" data-exit="{escape(t.exit_status)}" '
             f'data-category="{escape(item.category["category"])}"')
    return f'<section class="trajectory" id="t{i}" {attrs}>{"".join(parts)}</section>'


def _nav(items: list[Item]) -> str:
    links = []
    for i, item in enumerate(items):
        t = item.traj
        resolved = "resolved" if t.resolved else "unresolved"
        links.append(f'<a class="navitem {resolved}" href="#t{i}" data-resolved="{resolved}" '
                     f'data-exit="{escape(t.exit_status)}" data-category="{escape(item.category["category"])}">'
                     f"{escape(t.task_id)}/{t.sample} · {escape(item.category['category'])}</a>")
    return "".join(links)


def _select(name: str, values: list[str]) -> str:
    opts = "".join(f'<option value="{escape(v)}">{escape(v)}</option>' for v in values)
    return f'<label>{name} <select id="f-{name}"><option value="">all</option>{opts}</select></label>'


def render_html(items: list[Item], title: str) -> str:
    exits = sorted({it.traj.exit_status for it in items})
    cats = [c for c in (RESOLVED, *CATEGORIES) if any(it.category["category"] == c for it in items)]
    legend = ('<p class="legend"><span class="turn student">student</span> <span class="turn expert">expert</span> '
              '<span class="switch">switch</span> <mark class="trained">trained tokens</mark> '
              '<span class="untrained">assistant tokens not trained</span> <span class="context">context</span></p>')
    filters = (f'<div id="filters">{_select("resolved", ["resolved", "unresolved"])} {_select("exit", exits)} '
               f'{_select("category", cats)} <span id="shown">{len(items)} of {len(items)}</span></div>')
    body = "".join(_section(i, it) for i, it in enumerate(items))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{CSS}</style></head><body><header><h1>{escape(title)}</h1>{legend}{filters}</header>"
            f'<div id="layout"><nav id="nav">{_nav(items)}</nav><main>{body}</main></div>'
            f"<script>{SCRIPT}</script></body></html>\n")


def write_view(run: str | Path, out: str | Path | None = None, **select) -> Path:
    """Write the page (RUN/view.html unless OUT) under a temporary name, then rename it; return its path."""
    run = Path(run)
    items = load(run, **select)
    page = render_html(items, f"oec view: {run.resolve().name}")
    out = Path(out) if out else run / "view.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page)
    os.replace(tmp, out)
    return out
