"""Local policy: generated tokens/s with 8 concurrent episodes batched together vs the same requests one at a time.

Goal (issue: LM policies): batched >= 3x sequential, same model, same run. The model is the default tiny student
(`oec student init` sizes: hidden 256, 4 layers, BPE 2048) built offline from toy tasks; prompts are the real text
format renderings of 8 toy tasks (system prompt + problem). Rounds alternate sequential and batched so both see the
same machine noise.

    .venv/bin/python bench/local_batching.py [--quick] [--rounds N] [--tokens N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, toy_tasks  # noqa: E402

from oec.rollout.policies import make_policy  # noqa: E402
from oec.core.protocols import Episode  # noqa: E402
from oec.train.student import StudentConfig, init_student  # noqa: E402


def run(policy, tasks, concurrent: bool) -> tuple[int, float]:
    """Generate one reply per task; return (completion tokens, seconds)."""
    out = [None] * len(tasks)

    def one(i):
        ep = Episode(tasks[i], None, [], random.Random(i), "student")
        out[i] = policy.act(policy.format.render(tasks[i], []), ep)

    t0 = time.perf_counter()
    if concurrent:
        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(tasks))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        for i in range(len(tasks)):
            one(i)
    return sum(c.completion_tokens for c in out), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--tokens", type=int, default=None, help="max new tokens per reply")
    args = ap.parse_args()
    rounds = args.rounds or (2 if args.quick else 4)
    tokens = args.tokens or (48 if args.quick else 128)
    print(f"local_batching  {machine()}")
    tasks = toy_tasks(8, seed=3)
    with tempfile.TemporaryDirectory() as d:
        path = init_student(toy_tasks(100), Path(d) / "tiny", StudentConfig())
        # engine=hf: the request queue + generate this benchmark was written for (§4); engine=kv is eval_throughput's
        spec = f"local:{path}?max_new_tokens={tokens}&temperature=0.7&engine=hf"
        batched = make_policy(spec + "&max_batch=8&batch_wait_ms=20")
        sequential = make_policy(spec + "&max_batch=1&batch_wait_ms=0")
        run(batched, tasks[:2], True)  # warm-up: first calls pay one-off allocation costs
        run(sequential, tasks[:2], False)
        rates = {"sequential": [], "batched": []}
        for r in range(rounds):
            for name, pol, conc in (("sequential", sequential, False), ("batched", batched, True))[:: 1 if r % 2 == 0 else -1]:
                n, secs = run(pol, tasks, conc)
                rates[name].append(n / secs)
                print(f"  round {r}: {name:10s} {n:5d} tokens in {secs:6.2f} s = {n / secs:7.1f} tok/s")
        print(f"  batch sizes used by the batched policy: {dict(sorted(batched.batch_sizes.items()))}")
    seq, bat = statistics.median(rates["sequential"]), statistics.median(rates["batched"])
    ratio = bat / seq
    print(f"  MEDIAN sequential {seq:.1f} tok/s | batched x8 {bat:.1f} tok/s | RATIO {ratio:.2f}x "
          f"(goal >= 3x: {'MET' if ratio >= 3 else 'NOT MET'})")


if __name__ == "__main__":
    main()
