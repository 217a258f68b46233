"""`oec demo` (= `make demo`): the main job on the embedded default, small enough for a laptop CPU.

It is `oec experiment` on the packaged config `assets/demo.yaml` (fewer tasks, arms, sizes and one seed), then the
results and claims tables printed to the terminal. The warm-start student is the small one the project ships in
`assets/warm-student`, so the demo spends its minutes on the method instead of on teaching a fresh model to copy;
`oec experiment configs/warm-student.yaml` reproduces it (README: "The shipped warm-start student").
"""

from __future__ import annotations

import csv
import math
from importlib import resources
from pathlib import Path
from typing import Callable

from oec.experiments.report import summarize_results

ASSETS = resources.files("oec") / "assets"


def demo_config() -> Path:
    return Path(str(ASSETS / "demo.yaml"))


def warm_student() -> Path:
    return Path(str(ASSETS / "warm-student"))


def run_demo(out: Path, overrides: list[str] | None = None, log: Callable[[str], None] = print,
             fresh: bool = False) -> Path:
    """The demo experiment in OUT; FRESH: start over, deleting OUT only once the config is valid and only if OUT is
    an experiment directory oec made."""
    from oec.core.config import load_config
    from oec.experiments.experiment import Experiment, ExperimentConfig
    from oec.experiments.rows import remove_experiment

    fixed = [f"out={out}", f"student_model={warm_student()}"]
    experiment = Experiment(load_config(ExperimentConfig, demo_config(), {}, fixed + list(overrides or [])), log)
    if fresh:
        remove_experiment(experiment.root, set(ExperimentConfig.model_fields))
    return experiment.run()


def _pct(x: float) -> str:
    return "   -  " if math.isnan(x) else f"{100 * x:5.1f}%"


def text_tables(run: Path) -> str:
    """The results (per arm and size, mean over seeds) and the claims, as fixed-width text."""
    with (run / "results.csv").open(newline="") as f:
        results = summarize_results(list(csv.DictReader(f)))
    with (run / "claims.csv").open(newline="") as f:
        claims = list(csv.DictReader(f))
    lines = [f"{'arm':16s} {'size':>5s} {'resolved':>9s}  {'95% CI':15s} {'turns':>6s} {'expert tokens':>14s} "
             f"{'trained tokens':>15s}"]
    for r in results:
        ci = f"[{_pct(r['ci_lo']).strip()}, {_pct(r['ci_hi']).strip()}]"
        trained = "" if math.isnan(r.get("trained_tokens", math.nan)) else f"{r['trained_tokens']:,.0f}"
        lines.append(f"{r['arm']:16s} {r['size']:>5s} {_pct(r['resolve_rate']):>9s}  {ci:15s} "
                     f"{r['mean_turns']:6.1f} {r['expert_tokens']:14,.0f} {trained:>15s}")
    # paired on the same tasks at one size; +- is the half-width: effects much smaller cannot show (docs/statistics.md)
    lines += ["", f"{'claim':5s} {'':56s} {'size':>4s} {'effect':>7s}  {'95% CI':17s} {'+-':>5s} verdict"]
    for c in claims:
        num = lambda k: float(c[k]) if c.get(k) not in (None, "") else math.nan  # noqa: E731
        ci = "" if math.isnan(num("lo")) else f"[{num('lo'):+.3f}, {num('hi'):+.3f}]"
        effect = "" if math.isnan(num("effect")) else f"{num('effect'):+.3f}"
        half = "" if math.isnan(num("half_width")) else f"{num('half_width'):.3f}"
        lines.append(f"{c['claim']:5s} {(c.get('description') or '')[:56]:56s} {c.get('size') or '':>4s} {effect:>7s}  "
                     f"{ci:17s} {half:>5s} {c['verdict']}")
    return "\n".join(lines)
