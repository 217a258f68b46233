"""Masked SFT throughput: `oec train`'s defaults vs TRL's padded defaults, same data, same model, same run.

Goal (issue: data -> training): our default >= 1.5x the tokens/s of TRL's padded default, with the same loss on the
first batch (the masks reach the loss the same way).

Arms, each a full `oec.train.sft.train` call from the same initial weights over the same examples in the same order:
  - `trl-default`: SFTConfig as TRL ships it (padded batches, activation checkpointing on), our data and schedule;
  - `padding-free`: flattened batches (TRL's padding_free), checkpointing off: what padding-free buys without flash
    attention (SDPA then attends over the whole flattened batch under a block-diagonal mask);
  - `oec-default`: what `oec train` does with no overrides (on a CPU: padded, checkpointing off; on a GPU with flash
    attention: padding-free, checkpointing on).
Rounds alternate the arms so all see the same machine noise; besides wall time, CPU time (this process and its
children) is reported, which other load on a shared machine disturbs far less. Throughput counts real tokens.

    .venv/bin/python bench/sft_throughput.py [--quick] [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, toy_tasks, tree_cpu, verdict_line  # noqa: E402

from oec.data.build import BuildConfig, build  # noqa: E402
from oec.rollout.collect import CollectConfig, collect  # noqa: E402
from oec.train.student import StudentConfig, init_student  # noqa: E402
from oec.tasks.io import write_tasks  # noqa: E402
from oec.train.sft import TrainConfig, train  # noqa: E402

ARMS = {
    "trl-default": {"padding_free": False, "activation_checkpointing": True},
    "padding-free": {"padding_free": True, "activation_checkpointing": False},
    "oec-default": {},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=None)
    args = ap.parse_args()
    rounds = args.rounds or (1 if args.quick else 3)
    n_tasks = 24 if args.quick else 48
    print(f"sft_throughput  {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # toy tasks of mixed size, so padded batches carry real padding (as trajectories of real runs do)
        tasks = toy_tasks(n_tasks // 2, seed=5) + toy_tasks(n_tasks - n_tasks // 2, seed=6, modules=4, hops=2)
        write_tasks(tasks, root / "tasks.jsonl")
        collect(CollectConfig(tasks=str(root / "tasks.jsonl"), out=str(root / "bc"), workers=4), progress=False)
        model = init_student(tasks, root / "model", StudentConfig())
        info = build(BuildConfig(runs=[str(root / "bc")], student=str(model), out=str(root / "data")))
        stats = info["stats"]
        print(f"data: {stats['examples']} examples, {stats['total_tokens']} tokens "
              f"({stats['trainable_tokens']} trained); model: default tiny student (hidden 256, 4 layers)")
        times: dict[str, list[float]] = {a: [] for a in ARMS}
        cpus: dict[str, list[float]] = {a: [] for a in ARMS}
        first: dict[str, float] = {}
        for r in range(rounds):
            for arm, trl in ARMS.items():
                t0, c0 = time.perf_counter(), tree_cpu()
                out = train(TrainConfig(data=str(root / "data"), model=str(model), out=str(root / f"ck-{arm}"),
                                        trl={"num_train_epochs": 1, "logging_steps": 1, **trl}), progress=False)
                times[arm].append(time.perf_counter() - t0)
                cpus[arm].append(tree_cpu() - c0)
                first.setdefault(arm, out["losses"][0])
                print(f"  round {r} {arm:15s} {times[arm][-1]:6.1f} s wall {cpus[arm][-1]:6.1f} s CPU  first loss {out['losses'][0]:.6f} "
                      f"({out['steps']} steps)", flush=True)
    tok = stats["total_tokens"]
    print(f"\n{'arm':15s} {'wall s':>7s} {'tokens/s':>9s} {'vs trl':>7s} {'CPU s':>7s} {'tok/CPU-s':>9s} {'vs trl':>7s} "
          f"{'first-batch loss':>17s}")
    base, cbase = statistics.median(times["trl-default"]), statistics.median(cpus["trl-default"])
    for arm in ARMS:
        m, c = statistics.median(times[arm]), statistics.median(cpus[arm])
        print(f"{arm:15s} {m:7.1f} {tok / m:9.0f} {base / m:6.2f}x {c:7.1f} {tok / c:9.0f} {cbase / c:6.2f}x "
              f"{first[arm]:17.6f}")
    ratio = base / statistics.median(times["oec-default"])
    cratio = cbase / statistics.median(cpus["oec-default"])
    same = abs(first["oec-default"] - first["trl-default"]) <= 1e-3 * abs(first["trl-default"])
    print(f"\noec default vs TRL padded default: {ratio:.2f}x tokens/s wall, {cratio:.2f}x per CPU second "
          f"(goal >= 1.5x: {verdict_line(min(ratio, cratio) >= 1.5)}); "
          f"first-batch loss equal to 1e-3 relative: {same}")


if __name__ == "__main__":
    main()
