"""The `oec` command: a thin layer over the library. Each pipeline stage is one verb (the verbs that make its inputs,
tasks, students and imported demonstrations, are in cli_inputs.py)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import List, Optional

import typer

from oec.cli.common import USER_ERRORS, fail as _fail
from oec.cli.inputs import demos_app, student_app, tasks_app
from oec.rollout.collect import CollectConfig, collect
from oec.core.config import load_config
from oec.viewer.show import render, summarize
from oec.tasks.io import InputError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="On-policy expert corrections and DAgger for LM agents.")
app.add_typer(tasks_app, name="tasks")
app.add_typer(student_app, name="student")
app.add_typer(demos_app, name="demos")


def _warn(message, category, filename, lineno, file=None, line=None):  # one short line, not a source excerpt
    typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)


warnings.showwarning = _warn


@app.command("collect")
def collect_cmd(
    overrides: Optional[List[str]] = typer.Argument(None, help="config overrides KEY=VALUE, e.g. loop.step_limit=20"),
    tasks: Optional[Path] = typer.Option(None, help="tasks JSONL file"),
    out: Optional[Path] = typer.Option(None, help="run directory (re-running the same command resumes it)"),
    mode: Optional[str] = typer.Option(None, help="expert | student | oec | dagger [expert]"),
    expert: Optional[str] = typer.Option(None, help="expert policy spec [scripted:expert]"),
    student: Optional[str] = typer.Option(None, help="student policy spec, e.g. scripted:noisy"),
    expert_format: Optional[str] = typer.Option(None, help="the expert's format: text | toolcalls [text]"),
    student_format: Optional[str] = typer.Option(None, help="the student's format: text | toolcalls [text]"),
    switch: Optional[str] = typer.Option(None, help="oec switch turn: uniform | late[:A,B] | fixed:K | trigger:DIR [uniform]"),
    trigger_threshold: Optional[float] = typer.Option(None, help="trigger: quantile of the expert's distances [0.99]"),
    beta: Optional[float] = typer.Option(None, help="dagger: probability the expert acts at a turn [0.5]"),
    samples: Optional[int] = typer.Option(None, help="episodes per task [1]"),
    workers: Optional[int] = typer.Option(None, help="concurrent episodes [4]"),
    backend: Optional[str] = typer.Option(None, help="local | ray: threads here, or worker actors on Ray [local]"),
    ray_address: Optional[str] = typer.Option(None, help="ray: cluster address, e.g. auto [start a local Ray]"),
    seed: Optional[int] = typer.Option(None, help="fixes all randomness of the collection [0]"),
    config: Optional[Path] = typer.Option(None, help="YAML config; options and overrides are applied on top"),
    quiet: bool = typer.Option(False, help="no progress bar"),
    retry_errors: bool = typer.Option(False, help="also rerun the episodes whose latest attempt ended in an error "
                                      "(appended; the older attempt stays on disk, superseded)"),
):
    """Run episodes and append them to OUT/trajectories.jsonl."""
    options = dict(tasks=str(tasks) if tasks else None, out=str(out) if out else None, mode=mode, expert=expert,
                   student=student, expert_format=expert_format, student_format=student_format, switch=switch,
                   trigger_threshold=trigger_threshold, beta=beta, samples=samples, workers=workers, seed=seed,
                   backend=backend, ray_address=ray_address)
    try:
        cfg = load_config(CollectConfig, config, options, overrides)
        result = collect(cfg, progress=not quiet, retry_errors=retry_errors)
    except USER_ERRORS as e:
        _fail(e)
    if result["retried"]:
        typer.echo(f"{result['retried']} episodes re-run after their Ray worker died (see {cfg.out}/retries.jsonl)")
    if result["interrupted"]:
        typer.echo(f"stopped: {result['written']} written, {result['remaining']} left; run the same command to resume")
        raise typer.Exit(130)
    typer.echo(render(summarize(cfg.out)))


@app.command("filter")
def filter_cmd(
    run: Path = typer.Argument(..., help="run directory"),
    overrides: Optional[List[str]] = typer.Argument(None, help="thresholds, e.g. max_read_only_run=12 require_resolved=false"),
    config: Optional[Path] = typer.Option(None, help="YAML with FilterConfig fields"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Mark each trajectory kept or rejected with reasons (RUN/filter.jsonl); nothing is deleted."""
    from oec.data.filter import FilterConfig, filter_run, render as render_filter

    try:
        summary = filter_run(run, load_config(FilterConfig, config, None, overrides))
    except USER_ERRORS as e:
        _fail(e)
    typer.echo(json.dumps(summary, indent=2) if as_json else render_filter(summary))


@app.command()
def build(
    runs: List[Path] = typer.Argument(..., help="run directories (filtered runs contribute their kept trajectories)"),
    out: Path = typer.Option(..., help="dataset directory (hf) or JSONL file (openai, sharegpt)"),
    student: Optional[Path] = typer.Option(None, help="student model dir: tokenizer + chat template (hf format)"),
    mask: Optional[str] = typer.Option(None, help="expert | all | custom [expert]"),
    format: Optional[str] = typer.Option(None, "--format", help="hf | openai | sharegpt [hf]"),
    weights: Optional[str] = typer.Option(None, help="comma-separated, one per run, e.g. 1,2"),
    max_trajectories: Optional[int] = typer.Option(None, help="sample this many trajectories"),
    max_tokens: Optional[int] = typer.Option(None, help="token budget per example [the model's context]"),
    student_format: Optional[str] = typer.Option(None, help="the student's format [text]"),
    tasks: Optional[Path] = typer.Option(None, help="tasks file [from each run's manifest]"),
    seed: Optional[int] = typer.Option(None),
):
    """Training data from kept trajectories, rendered in the student's format, masks by actor."""
    from oec.data.build import BuildConfig, build as build_data

    try:
        w = [float(x) for x in weights.split(",")] if weights else None
    except ValueError:
        _fail(InputError(f"--weights {weights!r}: expected numbers separated by commas, e.g. 1,2"))
    options = dict(runs=[str(r) for r in runs], out=str(out), student=str(student) if student else None, mask=mask,
                   format=format, weights=w, max_trajectories=max_trajectories, max_tokens=max_tokens,
                   student_format=student_format, tasks=str(tasks) if tasks else None, seed=seed)
    try:
        info = build_data(load_config(BuildConfig, None, options))
    except USER_ERRORS as e:
        _fail(e)
    st = info["stats"]
    typer.echo(f"wrote {out}: {st['examples']} examples from {st['trajectories']} trajectories; tokens: "
               f"{st['trainable_tokens']} trainable of {st['total_tokens']}, {st['dropped_tokens']} dropped")


@app.command("train")
def train_cmd(
    data: Path = typer.Option(..., help="dataset written by `oec build --format hf`"),
    model: Path = typer.Option(..., help="model directory to start from"),
    out: Path = typer.Option(..., help="checkpoint directory"),
    overrides: Optional[List[str]] = typer.Argument(None, help="e.g. trl.learning_rate=3e-4 trl.max_steps=200 lora_r=8"),
    lora: bool = typer.Option(False, help="LoRA adapters (PEFT), merged into the saved model"),
    seed: Optional[int] = typer.Option(None),
):
    """Fine-tune the student on a built dataset (TRL SFTTrainer; masks reach the loss)."""
    from oec.train.sft import TrainConfig, train

    options = dict(data=str(data), model=str(model), out=str(out), lora=lora or None, seed=seed)
    try:
        info = train(load_config(TrainConfig, None, options, overrides))
    except USER_ERRORS as e:
        _fail(e)
    if info["main_process"]:  # one line, not one per `accelerate launch` process
        typer.echo(f"wrote {out}: {info['steps']} steps on {info['examples']} examples in {info['processes']} "
                   f"process(es), loss {info['losses'][:1]} -> {info['losses'][-1:]} in {info['seconds']:.0f} s")


@app.command("eval")
def eval_cmd(
    model: str = typer.Option(..., help="model directory (or any policy spec, e.g. openai:M@URL)"),
    tasks: Path = typer.Option(..., help="held-out tasks"),
    out: Path = typer.Option(..., help="run directory for the student's trajectories"),
    samples: int = typer.Option(1, help="episodes per task"),
    temperature: float = typer.Option(0.0, help="sampling temperature (0 = greedy)"),
    workers: int = typer.Option(8, help="concurrent episodes (batched together by the local policy)"),
    seed: int = typer.Option(0),
    backend: str = typer.Option("local", help="local | ray (worker actors on Ray; the model loads once per worker)"),
    ray_address: Optional[str] = typer.Option(None, help="ray: cluster address, e.g. auto [start a local Ray]"),
    as_json: bool = typer.Option(False, "--json"),
):
    """Student-only rollouts on held-out tasks: resolve rate with a Wilson 95% interval (a normal run directory)."""
    spec = model if ":" in model else f"local:{model}?temperature={temperature}"
    try:
        cfg = CollectConfig(tasks=str(tasks), out=str(out), mode="student", student=spec, samples=samples,
                            workers=workers, seed=seed, backend=backend, ray_address=ray_address)
        collect(cfg, progress=not as_json)
        summary = summarize(out)
    except USER_ERRORS as e:
        _fail(e)
    typer.echo(json.dumps(summary, indent=2) if as_json else render(summary))


@app.command()
def shift(
    population: List[str] = typer.Option(..., help="NAME=RUN_DIR, repeated: e.g. student=runs/s0 expert=runs/bc"),
    out: Path = typer.Option(..., help="output directory"),
    embedder: Optional[str] = typer.Option(None, help="minilm | st:PATH_OR_NAME | openai:MODEL@URL [minilm]"),
    pca: Optional[int] = typer.Option(None, help="principal dimensions per turn [16]"),
    bootstrap: Optional[int] = typer.Option(None, help="bootstrap replicates [200]"),
    role_only: bool = typer.Option(False, help="drop the system note and problem statement from histories"),
    actions_only: bool = typer.Option(False, help="embed only the actions"),
    reference: Optional[str] = typer.Option(None, help="population the others are compared with [expert]"),
    tasks: Optional[Path] = typer.Option(None, help="tasks file (default: from each run's manifest)"),
    min_samples: Optional[int] = typer.Option(None, help="trajectories per side needed at a turn [8]"),
    seed: Optional[int] = typer.Option(None),
    cache: Optional[Path] = typer.Option(None, help="embedding cache [~/.cache/oec/embeddings]"),
    quiet: bool = typer.Option(False, help="no progress bar"),
):
    """Covariate shift per turn between populations: per_turn.csv, fd.png, kl.png, summary.md, trigger model."""
    from oec.shift.analyze import ShiftConfig, analyze

    pops = {}
    for item in population:
        name, eq, run = item.partition("=")
        if not eq or not name or not run:
            _fail(InputError(f"--population {item!r}: expected NAME=RUN_DIR, e.g. expert=runs/bc"))
        pops[name] = run
    options = dict(embedder=embedder, pca=pca, bootstrap=bootstrap, role_only=role_only or None,
                   actions_only=actions_only or None, reference=reference, tasks=str(tasks) if tasks else None,
                   min_samples=min_samples, seed=seed, cache=str(cache) if cache else None)
    try:
        cfg = load_config(ShiftConfig, None, options)
        result = analyze(pops, out, cfg, progress=not quiet)
    except USER_ERRORS as e:
        _fail(e)
    typer.echo(result["summary"])
    typer.echo(f"wrote {out}/per_turn.csv, fd.png, kl.png, summary.md, trigger.npz")


@app.command("dagger")
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
    except USER_ERRORS as e:
        _fail(e)
    typer.echo(f"\n{'round':>5} {'beta':>6} {'labels':>7} {'examples':>9} {'resolve':>8}  95% CI")
    for row in rows:
        rate = "" if row["resolve_rate"] == "" else f"{row['resolve_rate']:.1%}"
        ci = "" if row["ci_lo"] == "" else f"{row['ci_lo']:.1%}-{row['ci_hi']:.1%}"
        typer.echo(f"{row['round']:>5} {row['beta']:>6.3f} {row['labels']:>7} {row['examples']:>9} {rate:>8}  {ci}")
    typer.echo(f"wrote {Path(cfg.out) / ROUNDS_CSV}")


@app.command()
def show(run: Path = typer.Argument(..., help="run directory"), as_json: bool = typer.Option(False, "--json"),
         failures: bool = typer.Option(False, help="also the failure categories (written to RUN/failures.jsonl)"),
         judge: Optional[str] = typer.Option(None, help="with --failures: an LLM judge too, openai:MODEL@URL"),
         tasks: Optional[Path] = typer.Option(None, help="tasks file [from the run's manifest]")):
    """Summarise a run: counts by exit status, resolve rate with 95% CI, switch-turn histogram, failure categories."""
    from oec.viewer.failures import failures_of, render as render_failures, table

    try:
        summary, text = summarize(run), ""
        if failures or judge:
            rows = failures_of(run, judge, tasks)
            summary["failures"], text = table(rows), "\n" + render_failures(rows, run)
    except USER_ERRORS as e:
        _fail(e)
    typer.echo(json.dumps(summary, indent=2) if as_json else render(summary) + text)


@app.command()
def view(run: Path = typer.Argument(..., help="run directory"),
         task: Optional[str] = typer.Option(None, help="only this task's trajectories"),
         sample: Optional[int] = typer.Option(None, help="only this sample (with --task: one trajectory)"),
         data: Optional[Path] = typer.Option(None, help="dataset built by `oec build --format hf`: show its tokens, "
                                             "the trained ones highlighted"),
         out: Optional[Path] = typer.Option(None, help="HTML file to write [RUN/view.html]"),
         text: bool = typer.Option(False, "--text", help="print a plain-text rendering instead of writing HTML"),
         tasks: Optional[Path] = typer.Option(None, help="tasks file [from the run's manifest]")):
    """What happened and why: steps by actor, the switch, diff, tests, filter verdict, failure category, mask."""
    from oec.viewer.view import load, write_view
    from oec.viewer.page import render_text

    select = dict(task=task, sample=sample, data=data, tasks=tasks)
    try:
        typer.echo(render_text(load(run, **select)) if text else write_view(run, out, **select))
    except USER_ERRORS as e:
        _fail(e)


@app.command()
def report(run: Path = typer.Argument(..., help="experiment directory (results.csv, claims.csv, plots, runs/...)")):
    """Self-contained HTML page of an experiment: tables, plots, sample trajectories. Prints RUN/report.html."""
    from oec.experiments.report import write_report

    try:
        path = write_report(run)
    except USER_ERRORS as e:
        _fail(e)
    typer.echo(str(path))


@app.command("experiment")
def experiment_cmd(
    config: Path = typer.Argument(..., help="experiment YAML (see configs/paper-tiny.yaml)"),
    overrides: Optional[List[str]] = typer.Argument(None, help="KEY=VALUE, e.g. seeds=[0] sizes=[25,50]"),
):
    """The full comparison (arms x sizes x seeds), resumable: `oec experiment configs/paper-tiny.yaml`."""
    from oec.experiments.experiment import run_experiment

    try:
        report = run_experiment(config, overrides, log=lambda m: typer.echo(m))
    except USER_ERRORS as e:
        _fail(e)
    typer.echo(f"results: {report.parent / 'results.csv'}; claims: {report.parent / 'claims.csv'}; report: {report}")


@app.command()
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="run directory (a rerun resumes)"),
    fresh: bool = typer.Option(False, help="delete OUT first instead of resuming (only a directory oec made)"),
    overrides: Optional[List[str]] = typer.Argument(None, help="KEY=VALUE on the demo config, e.g. seeds=[0,1]"),
):
    """The main job on the embedded default, small: `oec experiment` on the packaged demo config (~11 min on 2 CPU
    cores), then the results and claims tables and where the report is."""
    from oec.experiments.demo import demo_config, run_demo, text_tables

    typer.echo(f"oec demo: the experiment in {demo_config()} -> {out} (a rerun resumes)")
    try:
        report = run_demo(out, overrides, log=lambda m: typer.echo(m), fresh=fresh)
    except USER_ERRORS as e:
        _fail(e)
    typer.echo("\n" + text_tables(out) + "\n")
    typer.echo(f"results: {out / 'results.csv'}\nclaims: {out / 'claims.csv'}\nreport: {report}")

if __name__ == "__main__":
    app()
