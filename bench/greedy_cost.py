"""The cost of batch-invariant greedy decoding: engine=hf answering each greedy prompt alone and unpadded (what it
does since greedy evaluation must not depend on batch mates) against the padded batches it used before, and
engine=kv, on the same prompts in one run.

The prompts are every turn's history of the shipped student's greedy episodes of held-out tasks (engine=kv,
`max_new_tokens=160`, 12 steps), asked again by 8 threads at once as 8 evaluation workers would. The padded batches
are transformers' `generate` on left-padded batches of 8, as engine=hf ran greedy batches before; the script also
counts the replies that padding changed.

    PYTHONPATH=src .venv/bin/python bench/greedy_cost.py [--tasks N] [--threads N]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402
from eval_throughput import OPTIONS, STUDENT  # noqa: E402
from greedy_equivalence import cut_at_action, student_episodes  # noqa: E402

from oec.core.protocols import Episode  # noqa: E402
from oec.rollout.policies import make_policy  # noqa: E402

WORKERS = 8


def concurrent(policy, prompts: list[list[dict]], tasks) -> tuple[float, list[str]]:
    """Seconds to answer PROMPTS from WORKERS threads at once, and the replies."""
    def one(i: int) -> str:
        return policy.act(prompts[i], Episode(tasks[i], None, [], random.Random(i), "student")).text

    t0 = time.perf_counter()
    with ThreadPoolExecutor(WORKERS) as pool:
        replies = list(pool.map(one, range(len(prompts))))
    return time.perf_counter() - t0, replies


def padded(hf, prompts: list[list[dict]]) -> tuple[float, list[str]]:
    """Seconds for transformers' generate on left-padded batches of WORKERS prompts (engine=hf's greedy before)."""
    torch, tok = hf.torch, hf.tokenizer
    replies = []
    t0 = time.perf_counter()
    for at in range(0, len(prompts), WORKERS):
        ids = [hf.prompt(m) for m in prompts[at:at + WORKERS]]
        width = max(map(len, ids))
        pad = tok.pad_token_id
        with torch.inference_mode():
            out = hf.model.generate(
                input_ids=torch.tensor([[pad] * (width - len(p)) + p for p in ids], device=hf.device),
                attention_mask=torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in ids], device=hf.device),
                max_new_tokens=hf.config.max_new_tokens, do_sample=False, top_k=None, temperature=None, top_p=None,
                pad_token_id=pad, eos_token_id=tok.eos_token_id)
        for row in out[:, width:].tolist():
            n = row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row)
            replies.append(tok.decode(row[:n], skip_special_tokens=True))
    return time.perf_counter() - t0, replies


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=24, help="held-out episodes whose turns are the prompts")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: the configs' setting)")
    args = ap.parse_args()
    print(f"greedy_cost  {machine()}")
    options = f"{OPTIONS}&threads={args.threads}"
    episodes, trajs = student_episodes(args.tasks, options)
    hf = make_policy(f"local:{STUDENT}?{options}&engine=hf")
    turns = [(task, traj.steps[:i]) for task, traj in zip(episodes, trajs) for i in range(len(traj.steps))]
    tasks = [task for task, _ in turns]
    prompts = [hf.format.render(task, steps) for task, steps in turns]
    kv = make_policy(f"local:{STUDENT}?{options}&engine=kv")
    concurrent(kv, prompts[:WORKERS], tasks)  # warm-up: the first calls pay for lazy imports and allocation
    times, replies = {}, {}
    times["kv"], replies["kv"] = concurrent(kv, prompts, tasks)
    times["hf alone"], replies["hf alone"] = concurrent(hf, prompts, tasks)
    times["hf padded"], replies["hf padded"] = padded(hf, prompts)
    hf.close()
    kv.close()
    # the batch-1 unpadded reference; engine=hf writes on past the action, where engine=kv stops: compare up to there
    replies = {name: [cut_at_action(r) for r in rs] for name, rs in replies.items()}
    ref = replies["hf alone"]
    print(f"{len(prompts)} turns of {args.tasks} held-out episodes, greedy, max_new_tokens=160, {WORKERS} at once, "
          f"{args.threads} thread(s)")
    for name in ("hf padded", "hf alone", "kv"):
        same = sum(a == b for a, b in zip(replies[name], ref))
        print(f"  {name:10s} {times[name]:7.1f} s  {times[name] / times['hf padded']:5.2f}x padded's time  "
              f"{same}/{len(ref)} replies equal to the batch-1 reference")


if __name__ == "__main__":
    main()
