"""Greedy held-out evaluation of the shipped student: `local:` engine=hf against engine=kv, side by side in one run.

Goal (issue: student inference that re-reads nothing): engine=kv >= 4x engine=hf in episodes/s, with the same resolve
rate within 1 task in 100. Both evaluate the same held-out toy tasks (split `heldout`, whose names never occur in the
student's training tasks; seed 21 and the warm start's knobs, as bench/expert_tokens.yaml's held-out set) with the
demo's settings: greedy, 8 workers, max_new_tokens=160, 12 turns at most. Each engine's episodes run exactly as
`oec collect` runs them (Collector.run_episode on 8 threads, real sandboxes and verifier).

Tokens encoded per episode: positions the model computed, prompt reading plus decoding. engine=hf reads every turn's
whole prompt (prompt_tokens + completion_tokens of its steps; its batches' padding is not counted, so hf's figure is
a lower bound); engine=kv counts what it read and decoded. The physical floor: the tokens an episode must compute
once (its longest prompt plus its replies), at the prefill and batch-8 decode speeds measured in this run, plus the
environment's time spread over the 8 workers.

    PYTHONPATH=src .venv/bin/python bench/eval_throughput.py [--quick] [--tasks N] [--engines hf,kv] [--threads N] [--workers N]

With `--engines kv --workers 64 --tasks 64` it reports the caches' memory with 64 concurrent episodes.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

import oec  # noqa: E402
from oec.rollout.collect import CollectConfig, Collector  # noqa: E402
from oec.core.protocols import Episode  # noqa: E402
from oec.rollout.loop import LoopConfig  # noqa: E402
from oec.tasks.toy import ToyConfig, generate  # noqa: E402
from oec.tasks.io import write_tasks  # noqa: E402

STUDENT = Path(oec.__file__).parent / "assets/warm-student"
KNOBS = {"hops": 0, "direct_test_prob": 1.0, "modules": 2, "functions_per_module": 2}
OPTIONS = "temperature=0&max_new_tokens=160"


def evaluate(engine: str, tasks_file: Path, tasks: list, out: Path, workers: int, threads: int | None) -> dict:
    options = OPTIONS + (f"&threads={threads}" if threads else "")
    cfg = CollectConfig(tasks=str(tasks_file), out=str(out), mode="student", workers=workers,
                        student=f"local:{STUDENT}?{options}&engine={engine}", loop=LoopConfig(step_limit=12))
    collector = Collector(cfg)
    policy = collector.policies["student"]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        trajs = list(pool.map(lambda t: collector.run_episode(t, 0), tasks))
    wall = time.perf_counter() - t0
    steps = [s for t in trajs for s in t.steps]
    prompt = sum(s.completion.prompt_tokens for s in steps)
    written = sum(s.completion.completion_tokens for s in steps)
    row = {"engine": engine, "wall": wall, "eps": len(trajs) / wall, "resolved": sum(t.resolved for t in trajs),
           "n": len(trajs), "turns": len(steps), "written": written,
           "env_s": sum(t.timings["env_s"] + t.timings["verify_s"] for t in trajs),
           # what an episode must compute once: its last prompt (which holds every earlier turn) and its last reply
           "unique": sum(t.steps[-1].completion.prompt_tokens + t.steps[-1].completion.completion_tokens
                         for t in trajs if t.steps),
           "errors": sum(t.exit_status == "error" for t in trajs)}
    if engine == "hf":
        row["encoded"] = prompt + written
    else:
        row["encoded"] = policy.stats["read"] + policy.stats["decoded"]
        row["stats"] = dict(policy.stats)
    row["policy"] = policy
    return row


def speeds(policy, tasks: list) -> tuple[float, float]:
    """engine=kv's prompt-reading speed (tokens/s, 8 first turns read together) and its decode step time with 8
    sequences (s): the rates the physical floor is computed with. Measured on fresh episodes, after the evaluation."""
    def round_of(seed: int, max_new: int) -> tuple[float, int, int]:
        policy.config.max_new_tokens = max_new  # the engine is idle between rounds: nothing reads it meanwhile
        read, steps = policy.stats["read"], sum(policy.batch_sizes.values())
        t0 = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: policy.act(policy.format.render(tasks[i], []),
                                               Episode(tasks[i], None, [], random.Random(seed + i), "student")),
                          range(8)))
        return time.perf_counter() - t0, policy.stats["read"] - read, sum(policy.batch_sizes.values()) - steps

    keep = policy.config.max_new_tokens
    read_s, read, read_steps = round_of(1000, 1)  # reading only: one token each
    total_s, _, steps = round_of(2000, 64)
    policy.config.max_new_tokens = keep
    return read / read_s, max(total_s - read_s, 1e-6) / max(steps - read_steps, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=None, help="held-out tasks [100; --quick: 16]")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--engines", default="hf,kv")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (on a shared, loaded machine 1 "
                    "avoids oversubscription, which slows transformers' generate far more than engine=kv)")
    args = ap.parse_args()
    print(f"eval_throughput  {machine()}")
    args.tasks = args.tasks or (16 if args.quick else 100)
    tasks = generate("heldout", args.tasks, 21, ToyConfig(**KNOBS))
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tasks_file = write_tasks(tasks, Path(d) / "heldout.jsonl")
        for engine in args.engines.split(","):
            rows.append(evaluate(engine, tasks_file, tasks, Path(d) / engine, args.workers, args.threads))
            r = rows[-1]
            print(f"  {engine}: {r['n']} episodes in {r['wall']:.1f} s = {r['eps']:.3f} ep/s; resolved {r['resolved']}"
                  f"/{r['n']}; {r['turns']} turns; tokens encoded/episode {r['encoded'] / r['n']:,.0f} "
                  f"(written {r['written'] / r['n']:,.0f}); env+verify {r['env_s'] / r['n']:.2f} s/episode; "
                  f"errors {r['errors']}; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB"
                  + (f"; {r['stats']}" if "stats" in r else ""), flush=True)
        kv = next((r for r in rows if r["engine"] == "kv"), None)
        if kv:
            prefill, step = speeds(kv["policy"], tasks)
            n = kv["n"]
            model_s = (kv["unique"] - kv["written"]) / prefill + kv["written"] / 8 * step
            floor = model_s + kv["env_s"] / args.workers
            print(f"  kv speeds: reading {prefill:,.0f} tok/s (8 prompts together), decode step with 8 sequences "
                  f"{step * 1000:.1f} ms; unique tokens/episode {kv['unique'] / n:,.0f}")
            print(f"  physical floor: {floor:.1f} s for {n} episodes = {n / floor:.3f} ep/s (model {model_s:.1f} s + "
                  f"environment {kv['env_s'] / args.workers:.1f} s); kv reaches {kv['eps'] / (n / floor):.0%} of it")
        for r in rows:
            r["policy"].close()
    if len(rows) == 2:
        hf, kv = rows
        ratio = kv["eps"] / hf["eps"]
        same = abs(kv["resolved"] - hf["resolved"]) <= max(1, kv["n"] // 100)
        print(f"  RATIO kv/hf episodes/s {ratio:.2f}x (goal >= 4x: {'MET' if ratio >= 4 else 'NOT MET'}); tokens "
              f"encoded/episode {kv['encoded'] / kv['n']:,.0f} vs {hf['encoded'] / hf['n']:,.0f} "
              f"({hf['encoded'] / max(kv['encoded'], 1):.1f}x fewer); resolved {kv['resolved']} vs {hf['resolved']} "
              f"(within 1/100: {'MET' if same else 'NOT MET'})")


if __name__ == "__main__":
    main()
