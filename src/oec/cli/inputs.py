"""The verbs that make a pipeline's inputs: `oec tasks generate|import|mutate`, `oec student init`,
`oec demos import`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from oec.cli.common import user_errors
from oec.cli.options import config_options
from oec.core.atomic import check_output, write_text
from oec.core.config import load_config
from oec.tasks.io import generate_tasks, load_tasks, write_tasks
from oec.tasks.mutate import MutateConfig
from oec.tasks.toy import PRESETS, ToyConfig

tasks_app = typer.Typer(no_args_is_help=True, help="Make and inspect task files.")


@tasks_app.command("generate")
@config_options(ToyConfig, "modules", "functions_per_module", "hops", "shapes", "mutation_kinds", "direct_test_prob")
@user_errors
def tasks_generate(
    options: dict,
    out: Path = typer.Option(..., help="tasks JSONL file to write"),
    suite: str = typer.Option("toy", help="task generator (the embedded suite is 'toy')"),
    split: str = typer.Option("train", help="train | heldout (disjoint names)"),
    n: int = typer.Option(100, min=1, help="number of tasks"),
    seed: int = typer.Option(0, help="generator seed"),
    preset: Optional[str] = typer.Option(None, help=f"named knobs ({' | '.join(PRESETS)}); knobs given too override "
                                         "it"),
):
    """Generate tasks, e.g. `oec tasks generate --suite toy --split train --n 200 --seed 0 --out tasks/train.jsonl`."""
    check_output(out, "file")
    tasks = generate_tasks(suite, split, n, seed, preset=preset, **options)
    write_tasks(tasks, out)
    typer.echo(f"wrote {len(tasks)} {suite}/{split} tasks to {out}")


@tasks_app.command("import")
@user_errors
def tasks_import(
    instances: Path = typer.Argument(..., help="instances JSONL (or a JSON array, as SWE-smith publishes)"),
    format: str = typer.Option(..., "--format", help="swebench (also SWE-Gym) | swesmith"),
    repos_dir: Path = typer.Option(..., help="local clones: REPOS_DIR/owner/name, REPOS_DIR/owner__name or "
                                   "REPOS_DIR/name"),
    out: Path = typer.Option(..., help="tasks JSONL to write; instances that fail go to OUT's .errors.jsonl"),
    split: str = typer.Option("train", help="split written into the tasks"),
    check: bool = typer.Option(False, help="also build each workspace once (applies the patches; slow on big repos)"),
):
    """Tasks from SWE-bench / SWE-Gym / SWE-smith instances over local clones; bad instances are reported, not fatal."""
    from oec.tasks.importers import import_instances

    check_output(out, "file")
    tasks, errors = import_instances(instances, format, repos_dir, split, check=check)
    write_tasks(tasks, out)
    errors_path = out.with_name(out.name.removesuffix(".jsonl") + ".errors.jsonl")
    if errors:
        write_text(errors_path, "".join(json.dumps(e) + "\n" for e in errors))
        for e in errors[:5]:
            typer.secho(f"  {e['instance_id']}: {e['reason']}", fg=typer.colors.YELLOW, err=True)
    elif errors_path.exists():
        errors_path.unlink()  # from an earlier import of the same file
    note = f"; {len(errors)} failed (reasons in {errors_path})" if errors else ""
    typer.echo(f"imported {len(tasks)} of {len(tasks) + len(errors)} {format} instances to {out}{note}")
    if not tasks:
        raise typer.Exit(1)


@tasks_app.command("mutate")
@config_options(MutateConfig, "repo", "out", "n", "seed", "split", "kinds", "per_function", "max_tries", "workers",
                "test_timeout")
@user_errors
def tasks_mutate(options: dict, quiet: bool = typer.Option(False, help="no progress bar")):
    """Procedural bugs in a real repo, kept only if some tests fail and some pass:
    `oec tasks mutate --repo R --n 50 --out tasks/m.jsonl`."""
    from oec.tasks.mutate import mutate

    stats = mutate(load_config(MutateConfig, None, options), progress=not quiet)
    typer.echo(f"tried {stats['tried']} of {stats['candidates']} mutants: {stats['survived']} failed to break a test, "
               f"{stats['broke_all']} broke every test, {stats['timed_out']} timed out, {stats['duplicates']} "
               f"duplicates, {stats['order_dependent']} failed on the clean code in the verifier's order; kept "
               f"{stats['kept']} -> {options['out']} (repo {stats['repo']}) in {stats['seconds']:.0f} s")


student_app = typer.Typer(no_args_is_help=True, help="Make student models.")


@student_app.command("init")
@user_errors
def student_init(
    tasks: Path = typer.Option(..., help="tasks whose text trains the tokenizer"),
    out: Path = typer.Option(..., help="model directory to write"),
    overrides: Optional[List[str]] = typer.Argument(None, help="size overrides, e.g. hidden_size=128 layers=2"),
    config: Optional[Path] = typer.Option(None, help="YAML with StudentConfig fields"),
):
    """Build a tiny untrained student offline: `oec student init --tasks tasks/train.jsonl --out models/tiny`."""
    from oec.train.student import StudentConfig, init_student

    cfg = load_config(StudentConfig, config, None, overrides)
    path = init_student(load_tasks(tasks), out, cfg)
    info = json.loads((path / "oec_student.json").read_text())
    typer.echo(f"wrote {path}: {info['parameters'] / 1e6:.2f}M parameters, vocabulary {cfg.vocab_size}, "
               f"context {cfg.context}")


demos_app = typer.Typer(no_args_is_help=True, help="Bring in other agents' trajectories as expert demonstrations.")


@demos_app.command("import")
@user_errors
def demos_import(
    paths: List[Path] = typer.Argument(..., help="mini-swe-agent .traj.json files or directories; or messages JSONL"),
    out: Path = typer.Option(..., help="run directory to write (importing again adds only what is new)"),
    format: str = typer.Option("miniswe", "--format", help="miniswe | messages (SWE-smith-style JSONL)"),
    resolved_ids: Optional[Path] = typer.Option(None, help="SWE-bench evaluation report (resolved_ids) or a JSON "
                                                          "list of ids: marks those demonstrations resolved"),
):
    """Import demonstrations for BC, e.g. `oec demos import trajs/ --format miniswe --out runs/msa`."""
    from oec.data.demos import import_demos

    result = import_demos(paths, out, format, resolved_ids)
    typer.echo(f"imported {result['imported']} demonstrations into {out} ({result['already_there']} already there, "
               f"{result['errors']} could not be converted" + (f": see {out}/import_errors.jsonl)" if result['errors']
                                                                  else ")"))
