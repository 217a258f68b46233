"""The `oec` command: a thin layer over the library. Each pipeline stage is one verb (the verbs that make its inputs,
tasks, students and imported demonstrations, are in inputs.py)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import List, Optional

import typer

from oec.cli.common import user_errors
from oec.cli.inputs import demos_app, student_app, tasks_app
from oec.cli.options import config_options
from oec.core.config import load_config
from oec.core.errors import InputError
from oec.core.metrics import summarize
from oec.data.build import BuildConfig
from oec.rollout.collect import CollectConfig, collect
from oec.shift.config import ShiftConfig
from oec.train.sft import TrainConfig
from oec.viewer.show import render

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="On-policy expert corrections and DAgger for LM agents.")
app.add_typer(tasks_app, name="tasks")
app.add_typer(student_app, name="student")
app.add_typer(demos_app, name="demos")


def _warn(message, category, filename, lineno, file=None, line=None):  # one short line, not a source excerpt
    typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)


warnings.showwarning = _warn


@app.command("collect")
@config_options(CollectConfig, "tasks", "out", "mode", "expert", "student", "expert_format", "student_format", "switch",
                "trigger_threshold", "beta", "samples", "workers", "backend", "ray_address", "seed")
@user_errors
def collect_cmd(
    options: dict,
    overrides: Optional[List[str]] = typer.Argument(None, help="config overrides KEY=VALUE, e.g. loop.step_limit=20"),
    config: Optional[Path] = typer.Option(None, help="YAML config; options and overrides are applied on top"),
    quiet: bool = typer.Option(False, help="no progress bar"),
    retry_errors: bool = typer.Option(False, help="also rerun the episodes whose latest attempt ended in an error "
                                      "(appended; the older attempt stays on disk, superseded)"),
):
    """Run episodes and append them to OUT/trajectories.jsonl."""
    cfg = load_config(CollectConfig, config, options, overrides)
    result = collect(cfg, progress=not quiet, retry_errors=retry_errors)
    if result["retried"]:
        typer.echo(f"{result['retried']} episodes re-run after their Ray worker died (see {cfg.out}/retries.jsonl)")
    if result["interrupted"]:
        typer.echo(f"stopped: {result['written']} written, {result['remaining']} left; run the same command to resume")
        raise typer.Exit(130)
    typer.echo(render(summarize(cfg.out)))


@app.command("filter")
@user_errors
def filter_cmd(
    run: Path = typer.Argument(..., help="run directory"),
    overrides: Optional[List[str]] = typer.Argument(None, help="thresholds, e.g. max_read_only_run=12 "
                                                    "require_resolved=false"),
    config: Optional[Path] = typer.Option(None, help="YAML with FilterConfig fields"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Mark each trajectory kept or rejected with reasons (RUN/filter.jsonl); nothing is deleted."""
    from oec.data.filter import FilterConfig, filter_run
    from oec.data.filter import render as render_filter

    summary = filter_run(run, load_config(FilterConfig, config, None, overrides))
    typer.echo(json.dumps(summary, indent=2) if as_json else render_filter(summary))


@app.command()
@config_options(BuildConfig, "out", "student", "mask", "format", "max_trajectories", "max_tokens", "student_format",
                "tasks", "seed")
@user_errors
def build(
    options: dict,
    runs: List[Path] = typer.Argument(..., help="run directories (filtered runs contribute their kept trajectories)"),
    weights: Optional[str] = typer.Option(None, help="comma-separated, one per run, e.g. 1,2 (0 leaves a run out)"),
):
    """Training data from kept trajectories, rendered in the student's format, masks by actor."""
    from oec.data.build import build as build_data

    try:
        w = [float(x) for x in weights.split(",")] if weights else None
    except ValueError:
        raise InputError(f"--weights {weights!r}: expected numbers separated by commas, e.g. 1,2")
    info = build_data(load_config(BuildConfig, None, {**options, "runs": [str(r) for r in runs], "weights": w}))
    st = info["stats"]
    verb = "kept (complete, from the same config and inputs; remove it to rebuild)" if info.get("reused") else "wrote"
    typer.echo(f"{verb} {options.get('out')}: {st['examples']} examples from {st['trajectories']} trajectories; "
               f"tokens: "
               f"{st['trainable_tokens']} trainable of {st['total_tokens']}, {st['dropped_tokens']} dropped")


@app.command("train")
@config_options(TrainConfig, "data", "model", "out", "lora", "seed")
@user_errors
def train_cmd(
    options: dict,
    overrides: Optional[List[str]] = typer.Argument(None, help="e.g. trl.learning_rate=3e-4 trl.max_steps=200 "
                                                    "lora_r=8"),
):
    """Fine-tune the student on a built dataset (TRL SFTTrainer; masks reach the loss)."""
    from oec.train.sft import train

    info = train(load_config(TrainConfig, None, options, overrides))
    verb = "kept (complete, from the same config, data and model; remove it to retrain)" if info.get("reused") \
        else "wrote"
    if info["main_process"]:  # one line, not one per `accelerate launch` process
        typer.echo(f"{verb} {options.get('out')}: {info['steps']} steps on {info['examples']} examples in "
                   f"{info['processes']} "
                   f"process(es), loss {info['losses'][:1]} -> {info['losses'][-1:]} in {info['seconds']:.0f} s")


@app.command("eval")
@config_options(CollectConfig, "tasks", "out", "samples", "workers", "seed", "backend", "ray_address")
@user_errors
def eval_cmd(
    options: dict,
    model: str = typer.Option(..., help="model directory (or any policy spec, e.g. openai:M@URL)"),
    temperature: float = typer.Option(0.0, help="sampling temperature (0 = greedy)"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Student-only rollouts on held-out tasks: resolve rate with a Wilson 95% interval (a normal run directory)."""
    spec = model if ":" in model else f"local:{model}?temperature={temperature}"
    cfg = load_config(CollectConfig, None, {**options, "mode": "student", "student": spec})
    collect(cfg, progress=not as_json)
    summary = summarize(cfg.out)
    typer.echo(json.dumps(summary, indent=2) if as_json else render(summary))


@app.command()
@config_options(ShiftConfig, "embedder", "pca", "bootstrap", "role_only", "actions_only", "reference", "tasks",
                "min_samples", "seed", "cache")
@user_errors
def shift(
    options: dict,
    population: List[str] = typer.Option(..., help="NAME=RUN_DIR, repeated: e.g. student=runs/s0 expert=runs/bc"),
    out: Path = typer.Option(..., help="output directory"),
    quiet: bool = typer.Option(False, help="no progress bar"),
):
    """Covariate shift per turn between populations: per_turn.csv, fd.png, kl.png, summary.md, trigger model."""
    from oec.shift.analyze import analyze

    pops = {}
    for item in population:
        name, eq, run = item.partition("=")
        if not eq or not name or not run:
            raise InputError(f"--population {item!r}: expected NAME=RUN_DIR, e.g. expert=runs/bc")
        pops[name] = run
    cfg = load_config(ShiftConfig, None, options)
    result = analyze(pops, out, cfg, progress=not quiet)
    typer.echo(result["summary"])
    typer.echo(f"wrote {out}/per_turn.csv, fd.png, kl.png, summary.md, trigger.npz")


@app.command("dagger")
@user_errors
def dagger_cmd(
    config: Path = typer.Option(..., help="YAML with DaggerConfig fields, e.g. configs/dagger-tiny.yaml"),
    overrides: Optional[List[str]] = typer.Argument(None, help="KEY=VALUE, e.g. rounds=5 train.max_steps=200"),
    quiet: bool = typer.Option(False, help="no progress bars (the one line per stage stays)"),
):
    """DAgger rounds (collect with annealed beta, filter, build the aggregate, train, eval); a rerun resumes."""
    from oec.experiments.dagger import ROUNDS_CSV, DaggerConfig, run_dagger

    if quiet:  # datasets' own bars (one per saved dataset) would come between the stage lines
        from datasets.utils.logging import disable_progress_bar

        disable_progress_bar()
    try:
        cfg = load_config(DaggerConfig, config, None, overrides)
        rows = run_dagger(cfg, progress=not quiet, log=typer.echo)
    except KeyboardInterrupt:
        typer.echo("stopped; run the same command to resume")
        raise typer.Exit(130)
    typer.echo(f"\n{'round':>5} {'beta':>6} {'labels':>7} {'examples':>9} {'resolve':>8}  95% CI")
    for row in rows:
        rate = "" if row["resolve_rate"] == "" else f"{row['resolve_rate']:.1%}"
        ci = "" if row["ci_lo"] == "" else f"{row['ci_lo']:.1%}-{row['ci_hi']:.1%}"
        typer.echo(f"{row['round']:>5} {row['beta']:>6.3f} {row['labels']:>7} {row['examples']:>9} {rate:>8}  {ci}")
    typer.echo(f"wrote {Path(cfg.out) / ROUNDS_CSV}")


@app.command()
@user_errors
def show(run: Path = typer.Argument(..., help="run directory"), as_json: bool = typer.Option(False, "--json"),
         failures: bool = typer.Option(False, help="also the failure categories (written to RUN/failures.jsonl)"),
         judge: Optional[str] = typer.Option(None, help="with --failures: an LLM judge too, openai:MODEL@URL"),
         tasks: Optional[Path] = typer.Option(None, help="tasks file [from the run's manifest]")):
    """Summarise a run: counts by exit status, resolve rate with 95% CI, switch-turn histogram, failure categories."""
    from oec.viewer.failures import render as render_failures
    from oec.viewer.failures import table
    from oec.viewer.judge import failures_of

    summary, text = summarize(run), ""
    if failures or judge:
        rows = failures_of(run, judge, tasks)
        summary["failures"], text = table(rows), "\n" + render_failures(rows, run)
    typer.echo(json.dumps(summary, indent=2) if as_json else render(summary) + text)


@app.command()
@user_errors
def predictions(run: Path = typer.Argument(..., help="run directory (oec collect / oec eval)"),
                out: Path = typer.Option(..., help="predictions file to write (.jsonl, or .json)"),
                model_name: Optional[str] = typer.Option(None, help="model_name_or_path [the run's student policy]")):
    """Write a SWE-bench predictions file: each task's latest verified patch, for the official harness."""
    from oec.data.predictions import write_predictions

    path = write_predictions(run, out, model_name)
    typer.echo(f"wrote {path}")


@app.command()
@user_errors
def view(run: Path = typer.Argument(..., help="run directory"),
         task: Optional[str] = typer.Option(None, help="only this task's trajectories"),
         sample: Optional[int] = typer.Option(None, help="only this sample (with --task: one trajectory)"),
         data: Optional[Path] = typer.Option(None, help="dataset built by `oec build --format hf`: show its tokens, "
                                             "the trained ones highlighted"),
         out: Optional[Path] = typer.Option(None, help="HTML file to write [RUN/view.html]"),
         text: bool = typer.Option(False, "--text", help="print a plain-text rendering instead of writing HTML"),
         tasks: Optional[Path] = typer.Option(None, help="tasks file [from the run's manifest]")):
    """What happened and why: steps by actor, the switch, diff, tests, filter verdict, failure category, mask."""
    from oec.viewer.page import render_text
    from oec.viewer.view import load, write_view

    select = dict(task=task, sample=sample, data=data, tasks=tasks)
    typer.echo(render_text(load(run, **select)) if text else write_view(run, out, **select))


@app.command()
@user_errors
def report(run: Path = typer.Argument(..., help="experiment directory (results.csv, claims.csv, plots, runs/...)")):
    """Self-contained HTML page of an experiment: tables, plots, sample trajectories. Prints RUN/report.html."""
    from oec.experiments.report import write_report

    path = write_report(run)
    typer.echo(str(path))


@app.command("experiment")
@user_errors
def experiment_cmd(
    config: Path = typer.Argument(..., help="experiment YAML (see configs/paper-tiny.yaml)"),
    overrides: Optional[List[str]] = typer.Argument(None, help="KEY=VALUE, e.g. seeds=[0] sizes=[25,50]"),
):
    """The full comparison (arms x sizes x seeds), resumable: `oec experiment configs/paper-tiny.yaml`."""
    from oec.experiments.experiment import run_experiment

    report = run_experiment(config, overrides, log=lambda m: typer.echo(m))
    typer.echo(f"results: {report.parent / 'results.csv'}; claims: {report.parent / 'claims.csv'}; report: {report}")


@app.command()
@user_errors
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="run directory (a rerun resumes)"),
    fresh: bool = typer.Option(False, help="delete OUT first instead of resuming (only a directory oec made)"),
    overrides: Optional[List[str]] = typer.Argument(None, help="KEY=VALUE on the demo config, e.g. seeds=[0,1]"),
):
    """The main job on the embedded default, small: `oec experiment` on the packaged demo config (5-7 min on 2 CPU
    cores), then the results and claims tables and where the report is."""
    from oec.experiments.demo import demo_config, run_demo, text_tables

    typer.echo(f"oec demo: the experiment in {demo_config()} -> {out} (a rerun resumes)")
    report = run_demo(out, overrides, log=lambda m: typer.echo(m), fresh=fresh)
    typer.echo("\n" + text_tables(out) + "\n")
    typer.echo(f"results: {out / 'results.csv'}\nclaims: {out / 'claims.csv'}\nreport: {report}")

if __name__ == "__main__":
    app()
