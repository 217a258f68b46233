"""engine=kv, the default `local:` engine: per-episode KV caches, continuous batching, stop at the action, seeds.

Most tests use the shipped warm-start student (src/oec/assets/warm-student): a trained model's greedy choices are
not near ties, so replies can be compared exactly across engines and cache paths (an untrained model's can flip on
float order alone).
"""

import gc
import json
import random
import threading
import time
from pathlib import Path

import pytest
from transformers import AutoTokenizer

import oec
from oec.core.errors import PolicySpecError
from oec.core.protocols import Episode
from oec.formats.text import ACTION_END
from oec.rollout.collect import CollectConfig, collect
from oec.rollout.loop import LoopConfig
from oec.rollout.policies import make_policy
from oec.rollout.policies.engine import KVPolicy
from oec.rollout.policies.local import LocalPolicy
from oec.tasks.io import write_tasks
from oec.tasks.toy import ToyConfig, generate

# needs the system tools `make test` installs (bubblewrap, podman or chromium): not in `make test-fast`
pytestmark = pytest.mark.tools

WARM = Path(oec.__file__).parent / "assets/warm-student"
KNOBS = ToyConfig(hops=0, direct_test_prob=1.0, modules=2, functions_per_module=2)


@pytest.fixture(scope="module")
def heldout():
    return generate("heldout", 8, 21, KNOBS)


@pytest.fixture(scope="module")
def greedy():
    kv = make_policy(f"local:{WARM}?temperature=0&max_new_tokens=48")
    hf = make_policy(f"local:{WARM}?temperature=0&max_new_tokens=48&engine=hf&max_batch=1")
    yield kv, hf
    kv.close()
    hf.close()


def _episode(task, seed=0):
    return Episode(task, None, [], random.Random(seed), "student")


def test_engine_is_chosen_by_the_spec(tmp_path):
    assert isinstance(make_policy(f"local:{WARM}?max_new_tokens=4"), KVPolicy)
    assert isinstance(make_policy(f"local:{WARM}?max_new_tokens=4&engine=hf"), LocalPolicy)
    with pytest.raises(PolicySpecError, match="engine"):
        make_policy(f"local:{WARM}?engine=vllm")


def test_threads_are_set_while_the_model_generates_and_given_back_on_close():
    """torch's thread count is the process's: an experiment trains after its evaluations, in the same process."""
    import torch

    before = torch.get_num_threads()
    threads = 2 if before == 1 else 1  # another count than the process's (tests run with OMP_NUM_THREADS=1)
    for engine in ("kv", "hf"):
        policy = make_policy(f"local:{WARM}?max_new_tokens=4&threads={threads}&engine={engine}")
        assert torch.get_num_threads() == threads
        policy.close()
        assert torch.get_num_threads() == before


def test_turns_read_only_new_tokens_of_exactly_the_chat_template_prompt(greedy, heldout):
    kv, hf = greedy
    tok = AutoTokenizer.from_pretrained(WARM)
    task, ep = heldout[0], _episode(heldout[0])
    msgs = kv.format.render(task, [])
    first = kv.act(msgs, ep)
    assert first.text == hf.act(msgs, _episode(task)).text
    msgs += [{"role": "assistant", "content": first.text}, {"role": "user", "content": "FAILED test_x.py::test_a"}]
    read = kv.stats["read"]
    second = kv.act(msgs, ep)
    want = list(tok.apply_chat_template(msgs, add_generation_prompt=True, return_dict=False))
    held = kv.cached_tokens(ep)
    # the cache holds the prompt the template gives, then the reply (its last token is sampled, never read)
    assert held[: len(want)] == want and len(held) == len(want) + second.completion_tokens - 1
    # only the reply's end, the observation and the generation prompt were read for the second turn
    assert kv.stats["read"] - read < len(want) // 4
    assert second.text == hf.act(msgs, _episode(task)).text


def test_a_windowed_history_rebuilds_the_cache_and_matches_a_fresh_encode(greedy, heldout):
    """Past the context, fit_to_context drops old turns and notes it in the problem statement: the prompt is no
    longer an extension of what the cache holds, which is cut back to the common prefix and read again from there."""
    kv, hf = greedy
    task, ep = heldout[1], _episode(heldout[1])
    msgs = kv.format.render(task, [])
    for i in range(60):
        msgs += [{"role": "assistant", "content": f"THOUGHT: look {i}\n\n```bash\ncat f{i}.py\n```"},
                 {"role": "user", "content": f"def f{i}(x):\n    return x + {i}\n" * 3}]
    short = msgs[:12]
    kv.act(short, ep)
    assert len(kv._encode(msgs)) > kv.context  # the whole history does not fit
    cuts = kv.stats["cut"]
    reply = kv.act(msgs, ep)
    fitted = kv.prompt(msgs)
    assert kv.stats["cut"] == cuts + 1 and kv.cached_tokens(ep)[: len(fitted)] == fitted
    assert "earlier turns left out" in kv.tokenizer.decode(fitted)
    fresh = kv.act(msgs, _episode(task, seed=1))  # another episode: no cache, the whole prompt read at once
    assert reply.text == fresh.text == hf.act(msgs, _episode(task)).text


def test_generation_stops_at_the_end_of_the_action():
    """The closing fence's line is the end of the action; the parser reads the text up to there as the block."""
    assert ACTION_END.search("THOUGHT: x\n\n```bash\nls\n```\n")
    assert not ACTION_END.search("THOUGHT: x\n\n```bash\nls\n```")  # the next token could make it ```bash
    assert not ACTION_END.search("```bash\nedit a.py <<'EOF'\n```python\n")  # not a closing fence line


def test_a_model_that_writes_on_after_its_action_is_stopped_there(heldout):
    """The warm student always ends its turn after the block, so its end-of-turn id is taken away here (a stand-in
    for a model that writes on): it must stop at the fence rather than at max_new_tokens."""
    kv = make_policy(f"local:{WARM}?temperature=0&max_new_tokens=120")
    kv.eos = -1
    try:
        task = heldout[2]
        done = kv.act(kv.format.render(task, []), _episode(task))
        assert done.completion_tokens < 120
        match = ACTION_END.search(done.text)
        assert match and done.text[match.end():].strip() == ""
        _, action = kv.format.parse(done)
        assert action.kind == "bash" and action.command
    finally:
        kv.close()


def test_an_episodes_cache_is_freed_when_it_ends_and_idle_caches_are_bounded(heldout):
    kv = make_policy(f"local:{WARM}?temperature=0&max_new_tokens=4&cache_episodes=3")
    try:
        rngs = [random.Random(i) for i in range(5)]
        threads = [threading.Thread(target=kv.act, args=(kv.format.render(heldout[i], []),
                                                         Episode(heldout[i], None, [], rngs[i], "student")))
                   for i in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert max(kv.batch_sizes) > 1 and len(kv.caches) == 3  # 5 episodes alive, 3 idle caches kept
        del rngs, threads
        gc.collect()
        deadline = time.monotonic() + 10
        while kv.caches and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not kv.caches  # the episodes are over: every cache freed
    finally:
        kv.close()


def test_the_same_seed_gives_the_same_trajectories_for_any_number_of_workers(tmp_path, heldout):
    """Sampled (temperature 0.7) student episodes in real sandboxes: each draws from its own episode's RNG, so
    which episodes share the engine's steps (1 worker: none; 8: all) does not change a single token. (engine=hf, whose
    batches hash their episodes' seeds together, fails this: 3 of these 6 episodes differed when tried.)"""
    tasks = write_tasks(heldout[:6], tmp_path / "tasks.jsonl")
    runs = {}
    for workers in (1, 8):
        out = tmp_path / f"w{workers}"
        collect(CollectConfig(tasks=str(tasks), out=str(out), mode="student", workers=workers, seed=5,
                              student=f"local:{WARM}?temperature=0.7&max_new_tokens=48",
                              loop=LoopConfig(step_limit=3)), progress=False)
        trajs = sorted((json.loads(line) for line in (out / "trajectories.jsonl").read_text().splitlines()),
                       key=lambda t: t["task_id"])
        runs[workers] = [(t["task_id"], t["exit_status"], [(s["output"], s["observation"]) for s in t["steps"]])
                         for t in trajs]
    assert len(runs[1]) == 6 and sum(len(steps) for *_, steps in runs[1]) >= 6
    assert runs[1] == runs[8]


def test_engine_hf_greedy_replies_do_not_depend_on_their_batch_mates(tiny_model, train_tasks):
    """engine=hf left-pads a batch, and padding changes the float sums: a greedy reply is generated alone and
    unpadded (the batch-1 reference), whatever else is pending. Sampled replies are still batched."""
    spec = f"local:{tiny_model}?engine=hf&temperature=0&max_new_tokens=24&batch_wait_ms=300"
    pol = make_policy(spec)
    try:
        prompts = [pol.format.render(t, []) for t in train_tasks[:6]]
        alone = pol.act(prompts[0], Episode(train_tasks[0], None, [], random.Random(0), "student")).text
        results = [None] * 6

        def go(i):
            results[i] = pol.act(prompts[i], Episode(train_tasks[i], None, [], random.Random(i), "student")).text

        threads = [threading.Thread(target=go, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results[0] == alone and set(pol.batch_sizes) == {1}
    finally:
        pol.close()
    sampled = make_policy(spec.replace("temperature=0", "temperature=1"))
    try:
        threads = [threading.Thread(target=sampled.act, args=(prompts[i], Episode(train_tasks[i], None, [],
                                                                                 random.Random(i), "student")))
                   for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert max(sampled.batch_sizes) > 1
    finally:
        sampled.close()


def test_engine_kv_greedy_replies_do_not_depend_on_their_batch_mates(tiny_model, train_tasks):
    """engine=kv packs every running sequence into one row, with per-sequence attention and a prompt budget shared
    with its batch mates; an untrained model's near-tie logits would show any float difference that brings. Each
    greedy reply equals the one the same prompt gets alone."""
    pol = make_policy(f"local:{tiny_model}?temperature=0&max_new_tokens=32")
    try:
        prompts = [pol.format.render(t, []) for t in train_tasks[:6]]
        alone = [pol.act(p, Episode(t, None, [], random.Random(i), "student")).text
                 for i, (p, t) in enumerate(zip(prompts, train_tasks))]
        results = [None] * 6

        def go(i):  # new episodes (other RNG objects): no cache of the solo runs is reused
            results[i] = pol.act(prompts[i], Episode(train_tasks[i], None, [], random.Random(10 + i), "student")).text

        threads = [threading.Thread(target=go, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert max(pol.batch_sizes) > 1 and results == alone
    finally:
        pol.close()
