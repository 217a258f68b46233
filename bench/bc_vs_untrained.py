"""Does BC work end to end? The default tiny student, untrained vs trained by `oec train` on `scripted:expert`
demonstrations, each evaluated by `oec eval` (greedy, student only) on the same held-out toy tasks.

Acceptance (issue: data -> training): the BC student resolves held-out tasks clearly above the untrained one; we
report both with Wilson 95% intervals and the training time on this machine. Every stage is the CLI's own function,
so this is also the shortest script of the whole pipeline:

    .venv/bin/python bench/bc_vs_untrained.py [--train 300] [--heldout 60] [--epochs 6 | --steps 2000]
                                              [--context-loss 0.25] [--out /tmp/bc-accept]
                                              [--student hidden_size=128 ...]

`copied` is the share of held-out episodes in which the student typed the name of the function the issue names: the
copy from context that a student must learn before anything else (held-out names never occur in training).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

from oec.core.metrics import summarize  # noqa: E402
from oec.data.build import BuildConfig, build  # noqa: E402
from oec.rollout.collect import CollectConfig, collect  # noqa: E402
from oec.tasks.io import generate_tasks, write_tasks  # noqa: E402
from oec.train.sft import TrainConfig, train  # noqa: E402
from oec.train.student import StudentConfig, init_student  # noqa: E402

# The easy end of the toy suite: the bug is in the function the issue names, which has its own test.
KNOBS = {"hops": 0, "direct_test_prob": 1.0, "modules": 2, "functions_per_module": 2}


def evaluate(model: Path, tasks: Path, out: Path) -> dict:
    collect(CollectConfig(tasks=str(tasks), out=str(out), mode="student", student=f"local:{model}?temperature=0",
                          workers=8), progress=False)
    return summarize(out)


def copied(run: Path, tasks: Path) -> float:
    """Share of episodes in which some student command contains the function name of the issue."""
    from oec.core.store import read_trajectories
    from oec.tasks.io import load_tasks

    named = {t.task_id: t.problem_statement.split("`")[1].split("(")[0] for t in load_tasks(tasks)}
    trajs = read_trajectories(run)
    return sum(any(named[t.task_id] in s.output for s in t.steps) for t in trajs) / max(1, len(trajs))


def line(name: str, s: dict) -> str:
    lo, hi = s["resolve_rate_ci95"]
    return (f"{name:10s} resolved {s['resolved']:3d}/{s['n']:3d} = {s['resolve_rate']:6.1%} "
            f"(95% CI {lo:.1%}-{hi:.1%}); exits {s['by_exit_status']}; mean steps {s['mean_steps']:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=300)
    ap.add_argument("--heldout", type=int, default=60)
    ap.add_argument("--epochs", type=float, default=6)
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps (instead of --epochs)")
    ap.add_argument("--context-loss", type=float, default=0.0, help="oec train context_loss")
    ap.add_argument("--out", default="/tmp/bc-accept")
    ap.add_argument("--student", nargs="*", default=[], help="StudentConfig overrides, e.g. vocab_size=512")
    args = ap.parse_args()
    root = Path(args.out)
    print(f"bc_vs_untrained  {machine()}", flush=True)
    train_tasks = write_tasks(generate_tasks("toy", "train", args.train, 1, **KNOBS), root / "train.jsonl")
    heldout = write_tasks(generate_tasks("toy", "heldout", args.heldout, 2, **KNOBS), root / "heldout.jsonl")
    t0 = time.perf_counter()
    collect(CollectConfig(tasks=str(train_tasks), out=str(root / "bc"), workers=4), progress=False)
    print(f"collect: {summarize(root / 'bc')['resolved']} expert demonstrations in {time.perf_counter() - t0:.0f} s")
    from oec.tasks.io import load_tasks

    fields = {k: int(v) for k, v in (a.split("=", 1) for a in args.student)}
    model = init_student(load_tasks(train_tasks), root / "student", StudentConfig(**fields))
    stats = build(BuildConfig(runs=[str(root / "bc")], student=str(model), out=str(root / "data")))["stats"]
    print(f"build: {stats['examples']} examples, {stats['trainable_tokens']} trained of {stats['total_tokens']} tokens")
    trl = {"num_train_epochs": args.epochs} if args.steps is None else {"max_steps": args.steps}
    info = train(TrainConfig(data=str(root / "data"), model=str(model), out=str(root / "ckpt"), trl=trl,
                             context_loss=args.context_loss), progress=False)
    print(f"train: {info['steps']} steps, context_loss {args.context_loss:g}, loss {info['losses'][0]:.3f} -> "
          f"{info['losses'][-1]:.3f}, {info['seconds']:.0f} s on this machine", flush=True)
    results = {}
    for name, m in (("untrained", model), ("bc", root / "ckpt")):
        t0 = time.perf_counter()
        results[name] = evaluate(m, heldout, root / f"eval-{name}")
        results[name]["copied"] = copied(root / f"eval-{name}", heldout)
        print(line(name, results[name]) + f"; copied {results[name]['copied']:.0%}; "
              f"eval {time.perf_counter() - t0:.0f} s", flush=True)
    (root / "result.json").write_text(json.dumps({"train": info, "eval": results}, indent=2, default=str))


if __name__ == "__main__":
    main()
