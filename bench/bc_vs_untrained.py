"""Does BC work end to end? The default tiny student, untrained vs trained by `oec train` on `scripted:expert`
demonstrations, each evaluated by `oec eval` (greedy, student only) on the same held-out toy tasks.

Acceptance (issue: data -> training): the BC student resolves held-out tasks clearly above the untrained one; we
report both with Wilson 95% intervals and the training time on this machine. Every stage is the CLI's own function,
so this is also the shortest script of the whole pipeline:

    .venv/bin/python bench/bc_vs_untrained.py [--train 300] [--heldout 60] [--epochs 6] [--out /tmp/bc-accept]
                                              [--student vocab_size=512 ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

from oec.build import BuildConfig, build  # noqa: E402
from oec.collect import CollectConfig, collect  # noqa: E402
from oec.show import summarize  # noqa: E402
from oec.student import StudentConfig, init_student  # noqa: E402
from oec.tasks import generate_tasks, write_tasks  # noqa: E402
from oec.train import TrainConfig, train  # noqa: E402

# The easy end of the toy suite: the bug is in the function the issue names, which has its own test.
KNOBS = {"hops": 0, "direct_test_prob": 1.0, "modules": 2, "functions_per_module": 2}


def evaluate(model: Path, tasks: Path, out: Path) -> dict:
    collect(CollectConfig(tasks=str(tasks), out=str(out), mode="student", student=f"local:{model}?temperature=0",
                          workers=8), progress=False)
    return summarize(out)


def line(name: str, s: dict) -> str:
    lo, hi = s["resolve_rate_ci95"]
    return (f"{name:10s} resolved {s['resolved']:3d}/{s['n']:3d} = {s['resolve_rate']:6.1%} (95% CI {lo:.1%}-{hi:.1%}); "
            f"exits {s['by_exit_status']}; mean steps {s['mean_steps']:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=300)
    ap.add_argument("--heldout", type=int, default=60)
    ap.add_argument("--epochs", type=float, default=6)
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
    from oec.tasks import load_tasks

    fields = {k: int(v) for k, v in (a.split("=", 1) for a in args.student)}
    model = init_student(load_tasks(train_tasks), root / "student", StudentConfig(**fields))
    stats = build(BuildConfig(runs=[str(root / "bc")], student=str(model), out=str(root / "data")))["stats"]
    print(f"build: {stats['examples']} examples, {stats['trainable_tokens']} trained of {stats['total_tokens']} tokens")
    info = train(TrainConfig(data=str(root / "data"), model=str(model), out=str(root / "ckpt"),
                             trl={"num_train_epochs": args.epochs}), progress=False)
    print(f"train: {info['steps']} steps, {args.epochs:g} epochs, loss {info['losses'][0]:.3f} -> "
          f"{info['losses'][-1]:.3f}, {info['seconds']:.0f} s on this machine", flush=True)
    results = {}
    for name, m in (("untrained", model), ("bc", root / "ckpt")):
        t0 = time.perf_counter()
        results[name] = evaluate(m, heldout, root / f"eval-{name}")
        print(line(name, results[name]) + f"; eval {time.perf_counter() - t0:.0f} s", flush=True)
    (root / "result.json").write_text(json.dumps({"train": info, "eval": results}, indent=2, default=str))


if __name__ == "__main__":
    main()
