"""Covariate-shift analysis costs: embedding throughput, bootstrap time, and a re-run over cached embeddings.

Goals (issue: covariate shift): report texts/s embedding 1000 histories on 2 cores with the packaged MiniLM; time
500 bootstrap replicates over 20 turns; with the cache warm, re-running `analyze` takes < 10% of the first run.

    .venv/bin/python bench/shift_cost.py [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402

from oec.core.store import read_trajectories  # noqa: E402
from oec.rollout.collect import CollectConfig, collect  # noqa: E402
from oec.shift.analyze import analyze  # noqa: E402
from oec.shift.config import ShiftConfig
from oec.shift.embed import history_text, make_embedder  # noqa: E402
from oec.shift.stats import compare  # noqa: E402
from oec.tasks.io import generate_tasks, load_tasks, write_tasks  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    n_tasks, n_texts, reps = (24, 200, 100) if args.quick else (64, 1000, 500)
    print(f"shift_cost  {machine()}")
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        tasks = write_tasks(generate_tasks("toy", "train", n_tasks, seed=11), d / "tasks.jsonl")
        for name, opts in (("bc", {"mode": "expert"}), ("s0", {"mode": "student", "student": "scripted:noisy"})):
            collect(CollectConfig(tasks=str(tasks), out=str(d / name), workers=4, **opts), progress=False)

        # 1. embedding throughput on distinct histories, model already loaded, nothing cached
        problems = {t.task_id: t.problem_statement for t in load_tasks(tasks)}
        texts = [history_text(t.steps[:k], problems[t.task_id]) for run in ("s0", "bc")
                 for t in read_trajectories(d / run) for k in range(len(t.steps))]
        texts = (texts * (n_texts // len(texts) + 1))[:n_texts]
        texts = [f"{i} {t}" for i, t in enumerate(texts)]  # distinct, so the cache cannot help
        emb = make_embedder("minilm", d / "emb-cache")
        emb.embed(["warm-up: loads the model"])
        t0 = time.perf_counter()
        emb.embed(texts)
        secs = time.perf_counter() - t0
        print(f"  embedding: {len(texts)} histories in {secs:.1f} s = {len(texts) / secs:.1f} texts/s "
              f"(all-MiniLM-L6-v2, window {emb.window}, batch 64, CPU)")

        # 1b. the same histories in batches of about one length (what embed() does) against batches in hash order
        # (what it did): a batch is padded to its longest text
        fitted = [emb.fit_window(t) for t in texts]
        by_hash = sorted(fitted, key=lambda t: hashlib.sha256(f"{emb.key}\0{t}".encode()).hexdigest())  # its cache key
        by_length = sorted(fitted, key=len, reverse=True)
        timed = {}
        for name, order in (("hash order", by_hash), ("length order", by_length)):
            t0 = time.perf_counter()
            for i in range(0, len(order), 64):
                emb._embed(order[i : i + 64])
            timed[name] = time.perf_counter() - t0
        print(f"  batching: hash order {timed['hash order']:.1f} s, length order {timed['length order']:.1f} s "
              f"= {timed['length order'] / timed['hash order']:.2f}x the time")

        # 2. bootstrap: 500 replicates per turn over 20 turns, 32 trajectories a side, 384-d embeddings
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        for turn in range(20):
            compare(rng.normal(size=(32, 384)), rng.normal(size=(32, 384)) + 0.05 * turn, 16, reps,
                    np.random.default_rng(turn))
        print(f"  bootstrap: {reps} replicates x 20 turns (one pair) in {time.perf_counter() - t0:.1f} s")

        # 3. analyze from an empty cache, then again with it warm (same process: only the statistics repeat)
        cfg = ShiftConfig(cache=str(d / "cache"), bootstrap=200)
        pops = {"student": str(d / "s0"), "expert": str(d / "bc")}
        t0 = time.perf_counter()
        analyze(pops, d / "out1", cfg, progress=False)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        analyze(pops, d / "out2", cfg, progress=False)
        again = time.perf_counter() - t0
        same = (d / "out1/per_turn.csv").read_text() == (d / "out2/per_turn.csv").read_text()
        ratio = again / first
        print(f"  analyze: first run {first:.1f} s, cached re-run {again:.1f} s = {ratio:.1%} of the first "
              f"(goal < 10%: {'MET' if ratio < 0.1 else 'NOT MET'}); identical per_turn.csv: {same}")


if __name__ == "__main__":
    main()
