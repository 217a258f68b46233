"""`oec shift`: covariate shift between populations of trajectories, turn by turn (the paper's Figure 1, as a tool).

For every trajectory and every turn t, the history the agent had seen before its t-th action is embedded; per turn,
each population gets a Gaussian; pairs of populations are compared by Fréchet distance and KL (both directions) with
bootstrap intervals, next to split-half baselines (expert vs expert) that should stay near zero. The reference
population's per-turn Gaussians are also saved, for the divergence-triggered switch (`--switch trigger:DIR`).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from oec.core.atomic import atomic_output, write_text
from oec.core.errors import InputError
from oec.core.store import read_trajectories
from oec.shift.config import ShiftConfig
from oec.shift.embed import history_text, make_embedder
from oec.shift.report import write_plots, write_summary
from oec.shift.stats import compare, has_spread, ledoit_wolf, loo_mahalanobis
from oec.tasks.io import tasks_of_run

COLUMNS = ["turn", "pair", "n_a", "n_b", "fd", "fd_lo", "fd_hi", "kl", "kl_lo", "kl_hi"]


def embed_population(run: Path, cfg: ShiftConfig, embedder, progress: bool) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """turn -> (embeddings, task id of each row)."""
    trajs = read_trajectories(run)
    if not trajs:
        raise InputError(f"{run}: no trajectories")
    problems = {} if cfg.role_only else {i: t.problem_statement for i, t in tasks_of_run(run, cfg.tasks).items()}
    texts, turns, groups = [], [], []
    for traj in trajs:
        last = len(traj.steps) if cfg.max_turn is None else min(len(traj.steps), cfg.max_turn + 1)
        for t in range(last):
            text = history_text(traj.steps[:t], problems.get(traj.task_id, ""), cfg.role_only, cfg.actions_only)
            if text:
                texts.append(text)
                turns.append(t)
                groups.append(traj.task_id)
    vecs = embedder.embed(texts, progress=progress)
    turns, groups = np.array(turns), np.array(groups)
    return {int(t): (vecs[turns == t], groups[turns == t]) for t in np.unique(turns)}


def analyze(populations: dict[str, str], out: str | Path, cfg: ShiftConfig | None = None,
            progress: bool = True) -> dict:
    cfg = cfg or ShiftConfig()
    if cfg.reference not in populations:
        raise InputError(f"--reference {cfg.reference!r} is not among the populations {sorted(populations)}; "
                         "name one of them expert=RUN or pass --reference")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = cfg.cache or Path.home() / ".cache/oec/embeddings"
    embedder = make_embedder(cfg.embedder, cache)
    data = {name: embed_population(Path(run), cfg, embedder, progress) for name, run in populations.items()}
    # Every pair compares side A on one half of the tasks with side B on the other half, the baselines (expert vs
    # expert) included: histories are dominated by their task's text, so a baseline over different tasks and a
    # comparison over the same tasks would not measure the same thing.
    tasks = sorted({g for pop in data.values() for _, groups in pop.values() for g in groups})
    first = set(np.random.default_rng(cfg.seed).permutation(tasks)[: len(tasks) // 2].tolist())
    rows = []
    ref = data[cfg.reference]
    pairs = [(name, cfg.reference) for name in populations if name != cfg.reference] + [(n, n) for n in populations]
    for a, b in pairs:
        for turn in sorted(set(data[a]) & set(data[b])):
            rng = np.random.default_rng([cfg.seed, turn, len(rows)])
            (xa, ga), (xb, gb) = data[a][turn], data[b][turn]
            x = xa[np.isin(ga, list(first))]
            y = xb[~np.isin(gb, list(first))]
            skip = "too few samples" if min(len(x), len(y)) < cfg.min_samples else \
                "" if has_spread(x) and has_spread(y) else "no spread (every history of a side is the same text)"
            if skip:
                rows.append({"turn": turn, "pair": f"{a}-{b}", "n_a": len(x), "n_b": len(y), "valid": False,
                             "skipped": skip})
                continue
            stats = compare(x, y, cfg.pca, cfg.bootstrap, rng)
            rows.append({"turn": turn, "pair": f"{a}-{b}", **asdict(stats), "valid": True, "skipped": ""})
    with atomic_output(out / "per_turn.csv") as tmp, tmp.open("w", newline="") as f:
        extra = ["kl_rev", "kl_rev_lo", "kl_rev_hi", "dims", "valid", "skipped"]
        w = csv.DictWriter(f, fieldnames=COLUMNS + extra, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    result = {"config": cfg.model_dump(), "populations": populations, "rows": rows,
              "embedder_window": embedder.window, "cache": str(cache)}
    write_text(out / "per_turn.json", json.dumps(result, indent=1) + "\n")
    write_plots(rows, out, cfg.reference)
    result["summary"] = write_summary(rows, out, cfg, embedder.window)
    save_trigger(ref, out, cfg)
    return result


def save_trigger(ref: dict[int, tuple[np.ndarray, np.ndarray]], out: Path, cfg: ShiftConfig) -> None:
    """Per turn, the reference population's Gaussian in the full embedding space (Ledoit-Wolf, so it inverts) and its
    own Mahalanobis distances, each computed leave-one-out so the quantiles are not optimistic.

    Full space, not the principal subspace used for the statistics: a student state differs from the expert's mostly
    in directions the expert's own variation does not span, and a projection would discard exactly those."""
    arrays, turns = {}, []
    for turn, (x, _) in sorted(ref.items()):
        if len(x) < cfg.min_samples or not has_spread(x):
            continue
        cov, shrink = ledoit_wolf(x)
        arrays.update({f"t{turn}_mean": x.mean(axis=0).astype(np.float32),
                       f"t{turn}_precision": np.linalg.inv(cov).astype(np.float32),
                       f"t{turn}_dists": np.sort(loo_mahalanobis(x, shrink)).astype(np.float32)})
        turns.append(turn)
    with atomic_output(out / "trigger.npz") as tmp, tmp.open("wb") as f:  # a file object: no ".npz" appended
        np.savez_compressed(f, **arrays)
    # trigger.json last: the experiment takes the trigger as done when it exists
    write_text(out / "trigger.json", json.dumps({"turns": turns, "embedder": cfg.embedder, "role_only": cfg.role_only,
                                                  "actions_only": cfg.actions_only, "reference": cfg.reference,
                                                  "cache": cfg.cache}, indent=1) + "\n")
