"""`oec build`: masks checked by decoding them against the trajectories, exports, splitting, mixtures."""

import json
from collections import Counter

import pytest
from conftest import trained_texts as _trained_texts

from oec.core.errors import InputError
from oec.core.store import read_trajectories
from oec.data.build import BuildConfig, build
from oec.data.filter import filter_run
from oec.rollout.collect import CollectConfig, collect

# needs the system tools `make test` installs (bubblewrap, podman or chromium): not in `make test-fast`
pytestmark = pytest.mark.tools


@pytest.fixture(scope="module")
def runs(tmp_path_factory, train_tasks):
    from oec.tasks.io import write_tasks

    root = tmp_path_factory.mktemp("build")
    tasks = write_tasks(train_tasks[:6], root / "tasks.jsonl")
    for name, opts in (("bc", {"mode": "expert"}), ("oec", {"mode": "oec", "student": "scripted:noisy"}),
                       ("dagger", {"mode": "dagger", "student": "scripted:noisy", "beta": 0.3})):
        collect(CollectConfig(tasks=str(tasks), out=str(root / name), workers=4, **opts), progress=False)
    return root


def test_oec_masks_cover_exactly_the_expert_turns(runs, tiny_model, tmp_path):
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    info = build(BuildConfig(runs=[str(runs / "oec")], student=str(tiny_model), out=str(tmp_path / "d")))
    ds = load_from_disk(str(tmp_path / "d"))
    tok = AutoTokenizer.from_pretrained(tmp_path / "d/tokenizer")
    trajs = {t.key: t for t in read_trajectories(runs / "oec")}
    assert {"input_ids", "assistant_masks", "task_id", "sample", "mode", "switch_turn", "turn"} <= set(ds.column_names)
    assert info["stats"]["dropped_tokens"] == 0
    trained = {}  # long trajectories are split into several rows (the tiny model's context is 1024)
    untrained = 0
    for row in ds:
        key = row["task_id"], row["sample"]
        trained.setdefault(key, Counter()).update(_trained_texts(row, tok))
        assert row["switch_turn"] == trajs[key].switch_turn
        # context (for `context_loss`): all but the assistant turns; the student turns are neither context nor trained
        neither = [1 - a - c for a, c in zip(row["assistant_masks"], row["context_masks"])]
        assert min(neither) == 0
        left = _trained_texts({"input_ids": row["input_ids"], "assistant_masks": neither}, tok)
        assert set(left) <= {s.output + "<|end|>" for s in trajs[key].steps}  # split rows: earlier expert turns too
        untrained += len(set(left) & {s.output + "<|end|>" for s in trajs[key].steps if s.actor == "student"})
    assert untrained > 0
    assert set(trained) == {k for k, t in trajs.items() if t.resolved}
    for key, texts in trained.items():
        assert texts == Counter(s.output + "<|end|>" for s in trajs[key].steps if s.actor == "expert")


def test_dagger_trains_the_labels_at_the_states_the_student_reached(runs, tiny_model, tmp_path):
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    build(BuildConfig(runs=[str(runs / "dagger")], student=str(tiny_model), out=str(tmp_path / "d")))
    ds = load_from_disk(str(tmp_path / "d"))
    tok = AutoTokenizer.from_pretrained(tiny_model)
    trajs = {t.key: t for t in read_trajectories(runs / "dagger") if t.resolved}
    labels = sum(1 for t in trajs.values() for s in t.steps if s.label)
    label_rows = [r for r in ds if r["turn"] >= 0 and trajs[r["task_id"], r["sample"]].steps[r["turn"]].label]
    assert len(label_rows) >= labels
    for row in label_rows:
        step = trajs[row["task_id"], row["sample"]].steps[row["turn"]]
        if step.actor == "student":
            assert _trained_texts(row, tok)[-1] == step.label.output + "<|end|>"


def test_text_exports_need_no_tokenizer(runs, tmp_path):
    build(BuildConfig(runs=[str(runs / "oec")], format="openai", out=str(tmp_path / "o.jsonl")))
    build(BuildConfig(runs=[str(runs / "oec")], format="sharegpt", out=str(tmp_path / "s.jsonl")))
    trajs = {t.key: t for t in read_trajectories(runs / "oec")}
    for line in (tmp_path / "o.jsonl").read_text().splitlines():
        rec = json.loads(line)
        traj = trajs[rec["metadata"]["task_id"], rec["metadata"]["sample"]]
        weights = [m["weight"] for m in rec["messages"] if m["role"] == "assistant"]
        assert weights == [int(s.actor == "expert") for s in traj.steps]
    rec = json.loads((tmp_path / "s.jsonl").read_text().splitlines()[0])
    assert {t["from"] for t in rec["conversations"]} <= {"system", "human", "gpt"}
    assert any(t["train"] for t in rec["conversations"]) and not rec["conversations"][0]["train"]


def test_long_trajectories_are_split_not_cut(runs, tiny_model, tmp_path):
    full = build(BuildConfig(runs=[str(runs / "bc")], student=str(tiny_model), out=str(tmp_path / "a")))
    split = build(BuildConfig(runs=[str(runs / "bc")], student=str(tiny_model), out=str(tmp_path / "b"),
                              max_tokens=600))
    assert split["stats"]["examples"] > full["stats"]["examples"]
    assert split["stats"]["dropped_tokens"] == 0
    assert split["stats"]["trainable_tokens"] == full["stats"]["trainable_tokens"]
    from datasets import load_from_disk

    assert max(len(r) for r in load_from_disk(str(tmp_path / "b"))["input_ids"]) <= 600


def test_filters_weights_and_sampling(runs, tiny_model, tmp_path):
    filter_run(runs / "oec")
    one = build(BuildConfig(runs=[str(runs / "bc"), str(runs / "oec")], format="openai", out=str(tmp_path / "1.jsonl")))
    two = build(BuildConfig(runs=[str(runs / "bc"), str(runs / "oec")], format="openai", out=str(tmp_path / "2.jsonl"),
                            weights=[2, 1]))
    assert two["stats"]["trajectories"] == one["stats"]["trajectories"] + 6
    few = build(BuildConfig(runs=[str(runs / "bc")], format="openai", out=str(tmp_path / "3.jsonl"),
                            max_trajectories=4))
    assert few["stats"]["trajectories"] == 4
    with pytest.raises(InputError, match="--weights has 1 values for 2 runs"):
        build(BuildConfig(runs=[str(runs / "bc"), str(runs / "oec")], format="openai", out=str(tmp_path / "x"),
                          weights=[1]))
    with pytest.raises(InputError, match="needs --student"):
        build(BuildConfig(runs=[str(runs / "bc")], out=str(tmp_path / "y")))


def test_a_generation_prompt_that_stops_short_of_the_reply_is_refused(runs, tiny_model, tmp_path):
    """The bug `oec student init` once had: `{%- endif` stripped the newline after `<|assistant|>`, so the prompt at
    inference ended one untrained token before every reply, and BC students wrote garbage first."""
    import shutil

    from transformers import AutoTokenizer

    from oec.train.student import CHAT_TEMPLATE

    model = shutil.copytree(tiny_model, tmp_path / "model")
    tok = AutoTokenizer.from_pretrained(model)
    tok.chat_template = CHAT_TEMPLATE.replace("<|assistant|>\n{% endif -%}", "<|assistant|>\n{%- endif -%}")
    assert tok.chat_template != CHAT_TEMPLATE
    tok.save_pretrained(model)
    with pytest.raises(InputError, match="generation prompt ends before the trained reply"):
        build(BuildConfig(runs=[str(runs / "bc")], student=str(model), out=str(tmp_path / "d"), max_tokens=4096))


def _trl_records(runs, tmp_path, student_format="text") -> list[dict]:
    out = tmp_path / f"trl-{student_format}.jsonl"
    build(BuildConfig(runs=[str(runs / "oec")], format="trl", student_format=student_format, out=str(out)))
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_plain_trl_trains_exactly_the_expert_turns_of_the_trl_export(runs, tiny_model, tmp_path):
    """The export docs/data.md recommends for plain TRL, given to SFTTrainer as a user would (the file as it is, no
    oec code, nothing cut: max_length=None): the tokens TRL trains are the expert turns, each once, and none of the
    student's; as many as oec's own masked dataset trains."""
    from datasets import load_dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    _trl_records(runs, tmp_path)
    ds = load_dataset("json", data_files=str(tmp_path / "trl-text.jsonl"), split="train")
    tok = AutoTokenizer.from_pretrained(tiny_model)
    args = SFTConfig(output_dir=str(tmp_path / "o"), max_length=None, report_to=[], use_cpu=True, bf16=False)
    trainer = SFTTrainer(model=str(tiny_model), args=args, train_dataset=ds, processing_class=tok)
    trained = Counter(tok.decode([i for i in row["labels"] if i != -100]) for row in trainer.train_dataset)
    kept = [t for t in read_trajectories(runs / "oec") if t.resolved]
    assert trained == Counter(s.output + "<|end|>" for t in kept for s in t.steps if s.actor == "expert")
    ours = build(BuildConfig(runs=[str(runs / "oec")], student=str(tiny_model), out=str(tmp_path / "hf")))
    assert sum(i != -100 for row in trainer.train_dataset for i in row["labels"]) == ours["stats"]["trainable_tokens"]


def test_a_tool_call_record_renders_through_a_real_tool_calling_template(runs, tiny_model, tmp_path):
    """TRL's packaged Qwen2.5 template over a toolcalls export: each call once, its arguments a JSON object (not a
    JSON string encoded again), and the tool schemas in the system prompt."""
    from importlib.resources import files

    from transformers import AutoTokenizer

    template = (files("trl") / "chat_templates/qwen2_5.jinja").read_text()
    tok = AutoTokenizer.from_pretrained(tiny_model)
    records = _trl_records(runs, tmp_path, "toolcalls")
    assert records and all(r["tools"] and {t["function"]["name"] for t in r["tools"]} == {"bash", "edit", "submit"}
                           for r in records)
    for rec in records[:10]:
        messages = rec["prompt"] + rec["completion"]
        text = tok.apply_chat_template(messages, tools=rec["tools"], chat_template=template, tokenize=False)
        system = text.split("<|im_end|>")[0]
        assert all(f'"name": "{name}"' in system for name in ("bash", "edit", "submit"))  # the schemas
        for m in messages:
            for call in m.get("tool_calls") or []:
                args = call["function"]["arguments"]
                assert isinstance(args, dict)
                rendered = json.dumps(args, ensure_ascii=False)
                assert text.count(f'"arguments": {rendered}') == sum(
                    c["function"]["arguments"] == args for x in messages for c in x.get("tool_calls") or []), rendered
