"""`oec student init` and the local policy, with a real (tiny, untrained) transformers model."""

import random
import threading

import pytest

from oec.core.errors import PolicyError, PolicySpecError
from oec.core.protocols import Episode
from oec.formats.base import fit_to_context
from oec.rollout.policies import make_policy


def test_student_dir_loads_with_auto_classes(tiny_model, train_tasks):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert model.config.vocab_size == len(tok) <= 1024 and model.config.max_position_embeddings == 1024
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "p"},
            {"role": "assistant", "content": "THOUGHT: a\n\n```bash\nls\n```"}, {"role": "user", "content": "o"}]
    enc = tok.apply_chat_template(msgs, return_dict=True, return_assistant_tokens_mask=True)
    trained = [i for i, m in zip(enc["input_ids"], enc["assistant_masks"]) if m]
    assert tok.decode(trained) == "THOUGHT: a\n\n```bash\nls\n```<|end|>"
    # the BPE learned the suite's identifiers: a function name is a few tokens, not one per character
    name = train_tasks[0].meta["chain"][0]
    assert len(tok(name)["input_ids"]) <= len(name) // 2


def test_local_policy_batches_concurrent_episodes(tiny_model, train_tasks):
    pol = make_policy(f"local:{tiny_model}?max_new_tokens=8&batch_wait_ms=200")
    task = train_tasks[0]
    msgs = pol.format.render(task, [])
    results = [None] * 6

    def go(i):
        results[i] = pol.act(msgs, Episode(task, None, [], random.Random(i), "student"))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(pol.batch_sizes) > 1  # prompts that arrived together were generated together
    assert all(r.prompt_tokens > 10 and 1 <= r.completion_tokens <= 8 for r in results)


def test_greedy_local_policy_is_deterministic(tiny_model, train_tasks):
    """One intra-op thread: an untrained model's logits are near ties, and multi-threaded float reductions (whose
    order can vary with what else the process runs) may flip an argmax; that is float noise, not the policy."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pol = make_policy(f"local:{tiny_model}?temperature=0&max_new_tokens=12")
        msgs = pol.format.render(train_tasks[1], [])
        ep = Episode(train_tasks[1], None, [], random.Random(0), "student")
        assert pol.act(msgs, ep).text == pol.act(msgs, ep).text
    finally:
        torch.set_num_threads(threads)


def test_fit_to_context_drops_oldest_turns_and_says_so():
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "problem"}]
    for i in range(5):
        msgs += [{"role": "assistant", "content": f"a{i}" * 10}, {"role": "user", "content": f"o{i}" * 10}]
    count = lambda m: sum(len(x["content"]) for x in m)  # noqa: E731
    fitted = fit_to_context(msgs, count, 100)
    assert count(fitted) <= 100 and fitted[0] == msgs[0] and fitted[-1] == msgs[-1]
    assert "earlier turns left out" in fitted[1]["content"]
    with pytest.raises(PolicyError, match="only 5 fit"):
        fit_to_context(msgs, count, 5)


def test_a_history_longer_than_the_context_is_fitted_without_a_tokenizer_warning(tiny_model, train_tasks, caplog):
    """The policy drops old turns itself; transformers' "longer than the specified maximum sequence length" warning
    (printed when the whole history is counted first) alarmed users of `oec dagger` about nothing."""
    pol = make_policy(f"local:{tiny_model}?temperature=0&max_new_tokens=4")
    task = train_tasks[0]
    msgs = pol.format.render(task, [])
    for i in range(40):  # ~40 x 60 tokens: well past the tiny model's 1024
        msgs += [{"role": "assistant", "content": f"THOUGHT: look {i}\n\n```bash\ncat f{i}.py\n```"},
                 {"role": "user", "content": " ".join(task.meta["chain"] * 10)}]
    assert len(pol._encode(msgs)) > 1024
    done = pol.act(msgs, Episode(task, None, [], random.Random(0), "student"))
    assert done.prompt_tokens <= 1024 - 4
    assert "maximum sequence length" not in caplog.text


def test_local_spec_errors(tmp_path):
    with pytest.raises(PolicySpecError, match="not a model directory"):
        make_policy(f"local:{tmp_path}")
    with pytest.raises(PolicySpecError, match="temprature"):
        make_policy(f"local:{tmp_path}?temprature=1")
