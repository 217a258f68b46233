"""`oec report RUN`: one self-contained HTML page of an experiment (tables, plots, sample trajectories).

Reads what `oec experiment` leaves in RUN: results.csv (required), claims.csv, calibration.json, experiment.json,
*.png, and every trajectories.jsonl below RUN. Plots are embedded as data URIs so the page can be mailed or attached
as one file. Everything that comes from a trajectory is agent-controlled text, so every string is escaped on the way
in; the page has no JavaScript, so a missed escape could only ever produce markup, not run code.
"""

from __future__ import annotations

import base64
import csv
import json
import math
import warnings
from collections import defaultdict
from html import escape
from pathlib import Path

from oec.core.atomic import atomic_output, write_text
from oec.core.errors import InputError
from oec.core.store import TRAJECTORIES, read_trajectories
from oec.core.types import Action, Step, Trajectory
from oec.experiments.config import view_names
from oec.tasks.io import tasks_of_run
from oec.viewer import failures_report

VERDICTS = ("reproduced", "not_reproduced", "inconclusive", "not_measured")
FACT_FILES = ("experiment.json", "calibration.json")
OBS_CHARS = 600  # observations can be whole test logs; the page shows their start, the run keeps them whole

CSS = """
body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td.text,th.text{text-align:left}.missing{color:#a40;font-style:italic}
.verdict.reproduced{background:#d6f5d6}.verdict.not_reproduced{background:#f8d4d4}
.verdict.inconclusive{background:#f5ecc8}.verdict.not_measured{background:#e4e4e4}
img{max-width:min(100%,760px);border:1px solid #ddd;margin:.3em 0}figure{margin:0 0 1em}
.trajectory{border:1px solid #bbb;border-radius:6px;padding:.6em;margin:1em 0}
.turn{border-radius:6px;padding:.4em .6em;margin:.4em 0;display:grid;grid-template-columns:1fr;gap:.6em}
.turn.labelled{grid-template-columns:3fr 2fr}.turn.student{background:#e8f0fe;border-left:4px solid #3367d6}
.turn.expert{background:#fdf0e0;border-left:4px solid #e37400}
.label{align-self:start;background:#fff;border:1px dashed #e37400;padding:.3em}
.switch{border-top:3px dashed #c00;color:#c00;font-weight:bold;margin:.6em 0;padding-top:.2em}
pre{white-space:pre-wrap;word-break:break-word;margin:.2em 0;font-size:12px}.command{font-weight:bold}
.observation{background:#ffffff99;padding:.2em .4em}.who{font-size:12px;color:#555}
.outcome.resolved{color:#070;font-weight:bold}.outcome.unresolved{color:#a00;font-weight:bold}
"""


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _num(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _mean(values) -> float:
    vals = [v for v in map(_num, values) if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.nan


def summarize_results(rows: list[dict]) -> list[dict]:
    """One row per (arm, size), arms in the order they first appear (the config's), sizes ascending: means over seeds
    of every numeric column, and how many seeds."""
    groups, first = defaultdict(list), {}
    for r in rows:
        groups[(r["arm"], r["size"])].append(r)
        first.setdefault(r["arm"], len(first))
    out = []
    for (arm, size), rs in sorted(groups.items(), key=lambda kv: (first[kv[0][0]], _num(kv[0][1]), kv[0][1])):
        row = {"arm": arm, "size": size, "seeds": len({r.get("seed") for r in rs})}
        for col in rs[0]:
            if col not in ("arm", "size", "seed"):
                row[col] = _mean(r.get(col) for r in rs)
        out.append(row)
    return out


def plots(run_dir: str | Path) -> list[Path]:
    """Draw scaling.png (resolve rate vs dataset size, CI bands) and efficiency.png (resolve rate vs expert tokens)
    from RUN/results.csv, each only if it is not there yet (a runner's own plot wins). Returns the files written."""
    run = Path(run_dir)
    todo = [name for name in ("scaling.png", "efficiency.png") if not (run / name).exists()]
    if not todo or not (run / "results.csv").exists():
        return []
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    by_arm = defaultdict(list)
    for r in summarize_results(_rows(run / "results.csv")):
        by_arm[r["arm"]].append(r)
    written = []
    for name in todo:
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for arm, rs in sorted(by_arm.items()):
            key = "size" if name == "scaling.png" else "expert_tokens"
            rs = sorted(rs, key=lambda r: _num(r[key]))
            x = [_num(r[key]) for r in rs]
            line, = ax.plot(x, [r["resolve_rate"] for r in rs], marker="o", label=arm)
            if name == "scaling.png":
                lo, hi = [r["ci_lo"] for r in rs], [r["ci_hi"] for r in rs]
                ax.fill_between(x, lo, hi, alpha=0.15, color=line.get_color())
        ax.set_xlabel("training trajectories" if name == "scaling.png" else "expert tokens spent")
        ax.set_ylabel("held-out resolve rate")
        ax.set_title("Scaling (95% CI bands, mean over seeds)" if name == "scaling.png" else "Sample efficiency")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        with atomic_output(run / name) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
        plt.close(fig)
        written.append(run / name)
    return written


def _fmt(value) -> str:
    if not isinstance(value, float):
        return str(value)
    if math.isnan(value):
        return ""
    return f"{value:.0f}" if abs(value) >= 1000 or value == int(value) else f"{value:.3g}"


def _table(header: list[str], rows: list[list[str]], text_cols: int = 1) -> str:
    """HEADER and ROWS are already-escaped cell contents; the first TEXT_COLS columns are left-aligned."""
    cls = lambda i: ' class="text"' if i < text_cols else ""  # noqa: E731
    head = "".join(f"<th{cls(i)}>{h}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _pct(x: float) -> str:
    return "" if math.isnan(x) else f"{100 * x:.1f}%"


def _results(rows: list[dict]) -> str:
    summary = summarize_results(rows)
    extra = [c for c in ("n", "resolved", "mean_turns", "expert_tokens", "trained_tokens", "train_seconds")
             if c in rows[0]]
    header = ["arm", "size", "seeds", "resolve rate", "95% CI"] + [c.replace("_", " ") for c in extra]
    body = [[escape(r["arm"]), escape(r["size"]), str(r["seeds"]), _pct(r["resolve_rate"]),
             f"[{_pct(r['ci_lo'])}, {_pct(r['ci_hi'])}]"] + [_fmt(r[c]) for c in extra] for r in summary]
    return _table(header, body, text_cols=1) + "<p>Resolve rates are means over seeds, as are the interval ends.</p>"


def _claims(rows: list[dict]) -> str:
    desc = ["description"] if rows and "description" in rows[0] else []
    detail = ["detail"] if rows and "detail" in rows[0] else []
    body = []
    for r in rows:
        v = r.get("verdict") or ""
        cell = f'<span class="verdict {v}">{escape(v)}</span>' if v in VERDICTS else escape(v)
        effect = f"{_fmt(_num(r.get('effect')))} [{_fmt(_num(r.get('lo')))}, {_fmt(_num(r.get('hi')))}]"
        if math.isnan(_num(r.get("effect"))):
            effect = ""
        body.append([escape(r.get("claim") or ""), *(escape(r[c] or "") for c in desc), escape(r.get("size") or ""),
                     effect, _fmt(_num(r.get("half_width"))), _fmt(_num(r.get("detectable"))), cell,
                     *(escape(r[c] or "") for c in detail)])
    return _table(["claim", *desc, "size", "effect [95% CI]", "± (half-width)", "detectable (80% power)", "verdict",
                   *detail], body,
                  text_cols=1 + len(desc)) + ("<p>Each claim pairs two arms on the same held-out tasks at one dataset "
                                              "size, seeds as replicates; an effect much smaller than its half-width "
                                              "could not have shown in this run.</p>")


def _views(run: Path) -> list[str]:
    """The second evaluations to show: those experiment.json's config asks for (files of an earlier config's are
    left out: they were not redone with this one's arms and seeds), or without it every claims_VIEW.csv."""
    try:
        config = json.loads((run / "experiment.json").read_text())["config"]
        names = view_names(config.get("recheck_step_limit"), config.get("unseen_heldout") or 0)
    except (OSError, ValueError, KeyError, TypeError):
        names = [p.stem.removeprefix("claims_") for p in sorted(run.glob("claims_*.csv"))]
    return [n for n in names if (run / f"claims_{n}.csv").exists()]


def _view(run: Path, claims: Path) -> str:
    """Another held-out evaluation of the same students (`recheck_step_limit`, `unseen_heldout`): its results and
    claims."""
    view = claims.stem.removeprefix("claims_")
    results = run / f"results_{view}.csv"
    what = f"{view.removeprefix('unseen')} held-out tasks of bug templates no student trained on" \
        if view.startswith("unseen") else f"the same held-out tasks at a step limit of {view.removeprefix('steps')}"
    return (f'<section id="view-{escape(view)}"><h2>Another held-out evaluation: {escape(view)}</h2>'
            f"<p>Every student again, on {escape(what)}.</p>"
            + (_results(_rows(results)) if results.exists() else "") + _claims(_rows(claims)) + "</section>")


def _facts(path: Path) -> str:
    try:
        facts = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return f'<p class="missing">{escape(path.name)} could not be read: {escape(str(e))}</p>'
    if not isinstance(facts, dict):
        facts = {"value": facts}
    rows = [[escape(str(k)), f"<pre>{_cut(v if isinstance(v, str) else json.dumps(v, indent=1), 2000)}</pre>"]
            for k, v in facts.items()]
    return f"<h3>{escape(path.name)}</h3>" + _table(["key", "value"], rows, text_cols=2)


def _plots(run: Path) -> str:
    first = ["scaling.png", "efficiency.png", "shift.png"]
    pngs = sorted(run.glob("*.png"), key=lambda p: (first.index(p.name) if p.name in first else len(first), p.name))
    data = {p: base64.b64encode(p.read_bytes()).decode() for p in pngs}
    figs = [f'<figure><img alt="{escape(p.name)}" src="data:image/png;base64,{data[p]}">'
            f"<figcaption>{escape(p.name)}</figcaption></figure>" for p in pngs]
    return "".join(figs) or '<p class="missing">No plots in this directory.</p>'


def pick_trajectories(run: Path) -> list[tuple[Path, Trajectory]]:
    """Up to 2 OEC trajectories with a switch, 1 DAgger one with labels, 1 expert one. Resolved ones first, and OEC
    ones where the student really acted before the switch; then by run path, task and sample, so the same directory
    always shows the same trajectories whatever order the workers finished in."""
    wanted = {"oec": 2, "dagger": 1, "expert": 1}
    ok = {"oec": lambda t: t.switch_turn is not None, "dagger": lambda t: any(s.label for s in t.steps),
          "expert": lambda t: True}
    best = {mode: [] for mode in wanted}
    for path in sorted(run.rglob(TRAJECTORIES)):
        for t in read_trajectories(path, warn=False):
            if t.mode in wanted and ok[t.mode](t):
                mixed = t.switch_turn is None or 0 < t.switch_turn < len(t.steps)
                best[t.mode].append(((not t.resolved, not mixed, str(path), t.task_id, t.sample), path.parent, t))
        # experiments hold many runs: stop reading once every slot is filled by an ideal candidate
        if all(sum(not k[0] and not k[1] for k, _, _ in best[m]) >= n for m, n in wanted.items()):
            break
    picked = []
    for mode, n in wanted.items():
        picked += [(where, t) for _, where, t in sorted(best[mode], key=lambda c: c[0])[:n]]
    return picked


def _cut(text: str, limit: int = OBS_CHARS) -> str:
    return escape(text if len(text) <= limit else text[:limit] + f"\n... ({len(text) - limit} more characters)")


def _command(action: Action) -> str:
    return "submit" if action.kind == "submit" else "$ " + escape(action.command)


def _step(step: Step) -> str:
    if step.action is None:
        act = f'<div class="missing">output could not be parsed:</div><pre>{_cut(step.output)}</pre>'
    else:
        act = f'<pre class="command">{_command(step.action)}</pre>'
    main = (f'<div><div class="who">turn {step.turn} · {escape(step.actor)}</div>'
            f'<div class="thought">{escape(step.thought)}</div>{act}'
            f'<pre class="observation">{_cut(step.observation)}</pre></div>')
    label = ""
    if step.label is not None:
        shown = _command(step.label.action) if step.label.action else _cut(step.label.output)
        label = (f'<div class="label"><div class="who">DAgger label ({escape(step.label.actor)})</div>'
                 f"<pre>{shown}</pre></div>")
    cls = f"turn {escape(step.actor)}" + (" labelled" if label else "")
    return f'<div class="{cls}">{main}{label}</div>'


def _trajectory(where: Path, traj: Trajectory, problems: dict) -> str:
    parts = [f"<h3>{escape(traj.mode)}: {escape(traj.task_id)} (sample {traj.sample}) "
             f"<small>from {escape(str(where))}</small></h3>"]
    task = problems.get(traj.task_id)
    parts.append(f'<pre class="problem">{_cut(task.problem_statement, 2000)}</pre>' if task else
                 '<p class="missing">Problem statement not available (tasks of this run not found).</p>')
    for i, step in enumerate(traj.steps):
        if i == traj.switch_turn:
            parts.append(f'<div class="switch">switch: the expert takes over at turn {traj.switch_turn}</div>')
        parts.append(_step(step))
    if traj.switch_turn is not None and traj.switch_turn >= len(traj.steps):
        parts.append(f'<div class="switch">switch planned at turn {traj.switch_turn}; the student finished first</div>')
    resolved = "resolved" if traj.resolved else "unresolved"
    failing = [k for k, v in (traj.verdict.tests.items() if traj.verdict else []) if v.outcome != "passed"]
    parts.append(f'<p class="outcome {resolved}">{resolved} · exit {escape(traj.exit_status)}'
                 + (f" · failing: {escape(', '.join(failing[:5]))}" if failing else "") + "</p>")
    return '<div class="trajectory">' + "".join(parts) + "</div>"


def _trajectories(run: Path) -> str:
    picked = pick_trajectories(run)
    if not picked:
        return f'<p class="missing">No {TRAJECTORIES} with OEC, DAgger or expert trajectories below this directory.</p>'
    problems = {}
    for where in {w for w, _ in picked}:
        try:
            problems.update(tasks_of_run(where))
        except (InputError, OSError, ValueError) as e:  # a moved tasks file costs only the problem statement
            warnings.warn(f"report: {e}", stacklevel=2)
    legend = ('<p>Student turns are blue, expert turns orange; a red dashed line marks the switch to the expert; a '
              "dashed box beside a student turn is the DAgger teacher's label for that state.</p>")
    return legend + "".join(_trajectory(w.relative_to(run), t, problems) for w, t in picked)


def write_report(run_dir: str | Path) -> Path:
    """Write RUN/report.html (drawing the scaling and efficiency plots first if they are missing); return its path."""
    run = Path(run_dir)
    if not (run / "results.csv").exists():
        raise InputError(f"{run}: no results.csv; the report is built from an experiment's results "
                         "(run `oec experiment CONFIG` first, or point at its run directory)")
    rows = _rows(run / "results.csv")
    need = {"arm", "size", "seed", "resolve_rate", "ci_lo", "ci_hi", "expert_tokens"}
    if not rows or need - set(rows[0]):
        raise InputError(f"{run / 'results.csv'}: needs a header with {sorted(need)} and at least one row; "
                         f"it has {sorted(rows[0]) if rows else 'no rows'}")
    plots(run)
    missing = [name for name in ("claims.csv", *FACT_FILES) if not (run / name).exists()]
    title = f"oec report: {escape(run.resolve().name)}"
    claims = run / "claims.csv"
    sections = [
        f"<h1>{title}</h1>",
        "".join(f'<p class="missing">{name} is missing: not shown.</p>' for name in missing),
        f'<section id="results"><h2>Results per arm and dataset size</h2>{_results(rows)}</section>',
        f'<section id="failures"><h2>Why held-out episodes failed</h2>{failures_report.section(run)}</section>',
        '<section id="claims"><h2>Claims</h2>'
        + (_claims(_rows(claims)) if claims.exists() else '<p class="missing">No claims.csv.</p>')
        + "</section>",
        *(_view(run, run / f"claims_{view}.csv") for view in _views(run)),
        f'<section id="plots"><h2>Plots</h2>{_plots(run)}</section>',
        '<section id="facts"><h2>Configuration and calibration</h2>'
        + "".join(_facts(run / n) for n in FACT_FILES if (run / n).exists()) + "</section>",
        f'<section id="trajectories"><h2>Sample trajectories</h2>{_trajectories(run)}</section>',
    ]
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{CSS}{failures_report.CSS}</style>"
            f"</head><body>{''.join(sections)}</body></html>\n")
    out = run / "report.html"
    write_text(out, page)
    return out
