"""Greedy equivalence: engine=kv's replies against engine=hf's at batch size 1, turn by turn, on held-out episodes.

Goal (issue: student inference that re-reads nothing): on >= 200 turns of the shipped student's held-out episodes,
>= 99% of engine=kv's greedy replies token-identical to engine=hf's. The episodes are engine=kv's own (8 workers, so
its replies come from reused caches and shared packed steps, as in an evaluation); every turn's history is then
rendered again and given to engine=hf alone (max_batch=1). engine=hf does not stop at the end of the action, so its
reply is cut where engine=kv's rule (ACTION_END) would have stopped before comparing. The replies are compared as
token ids (the tokenizer's encoding of each reply's text, which is the sampled ids unless the text re-tokenizes
differently; then both sides are encoded the same way). For each turn that differs, the script prints the margin
between engine=hf's two best logits at the first differing token: a margin near float precision means float order
(the packed, cached computation sums in another order), not a different prompt.

    PYTHONPATH=src .venv/bin/python bench/greedy_equivalence.py [--quick] [--tasks N] [--threads N]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine  # noqa: E402
from eval_throughput import KNOBS, OPTIONS, STUDENT  # noqa: E402

from oec.core.protocols import Episode  # noqa: E402
from oec.formats.text import ACTION_END  # noqa: E402
from oec.rollout.collect import CollectConfig
from oec.rollout.episodes import Collector  # noqa: E402
from oec.rollout.loop import LoopConfig  # noqa: E402
from oec.tasks.io import write_tasks  # noqa: E402
from oec.tasks.toy import ToyConfig, generate  # noqa: E402


def cut_at_action(text: str) -> str:
    match = ACTION_END.search(text)
    return text[: match.end()] if match else text


def margin(hf, messages, common: list[int]) -> float:
    """engine=hf's gap between its two best logits after the prompt and the replies' common first tokens."""
    torch = hf.torch
    ids = torch.tensor([hf.prompt(messages) + common], device=hf.device)
    with torch.inference_mode():
        top = hf.model(input_ids=ids).logits[0, -1].float().topk(2).values
    return float(top[0] - top[1])


def student_episodes(n: int, options: str) -> tuple[list, list]:
    """N held-out tasks and the shipped student's episodes of them by engine=kv (8 workers, 12 steps, OPTIONS)."""
    tasks = generate("heldout", n, 21, ToyConfig(**KNOBS))
    with tempfile.TemporaryDirectory() as d:
        tasks_file = write_tasks(tasks, Path(d) / "heldout.jsonl")
        collector = Collector(CollectConfig(tasks=str(tasks_file), out=d, mode="student", workers=8,
                                            student=f"local:{STUDENT}?{options}", loop=LoopConfig(step_limit=12)))
        with ThreadPoolExecutor(8) as pool:
            trajs = list(pool.map(lambda t: collector.run_episode(t, 0), tasks))
        collector.close()
    return tasks, trajs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=None, help="held-out episodes [30, ~220 turns; --quick: 6]")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    print(f"greedy_equivalence  {machine()}")
    options = OPTIONS + (f"&threads={args.threads}" if args.threads else "")
    args.tasks = args.tasks or (6 if args.quick else 30)
    tasks, trajs = student_episodes(args.tasks, options)
    from oec.rollout.policies import make_policy

    hf = make_policy(f"local:{STUDENT}?{options}&engine=hf&max_batch=1")
    tok, fmt = hf.tokenizer, hf.format
    same = total = 0
    for task, traj in zip(tasks, trajs):
        for i, step in enumerate(traj.steps):
            messages = fmt.render(task, traj.steps[:i])
            ref = cut_at_action(hf.act(messages, Episode(task, None, [], random.Random(0), "student")).text)
            a, b = tok.encode(step.output), tok.encode(ref)
            total += 1
            if a == b:
                same += 1
                continue
            k = next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            print(f"  differs: {task.task_id} turn {i}: at token {k} of {len(a)}/{len(b)}, engine=hf's top-2 logit "
                  f"margin there {margin(hf, messages, a[:k]):.2e}; kv {tok.decode(a[k:k + 6])!r} vs hf "
                  f"{tok.decode(b[k:k + 6])!r}")
    hf.close()
    share = same / max(total, 1)
    print(f"  {same}/{total} turns token-identical = {share:.1%} (goal >= 99% on >= 200 turns: "
          f"{'MET' if share >= 0.99 and total >= 200 else 'NOT MET'})")


if __name__ == "__main__":
    main()
