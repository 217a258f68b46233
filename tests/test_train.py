"""`oec train` through TRL on a real (tiny) model, and `oec eval` on the result."""

import json
import subprocess
import sys

import pytest

from oec.core.errors import InputError
from oec.data.build import BuildConfig, build
from oec.rollout.collect import CollectConfig, collect
from oec.tasks.io import write_tasks

# needs the system tools `make test` installs (bubblewrap, podman or chromium): not in `make test-fast`
pytestmark = pytest.mark.tools


@pytest.fixture(scope="module")
def data(tmp_path_factory, train_tasks, tiny_model):
    root = tmp_path_factory.mktemp("train")
    tasks = write_tasks(train_tasks[:4], root / "tasks.jsonl")
    collect(CollectConfig(tasks=str(tasks), out=str(root / "bc"), mode="expert", workers=4), progress=False)
    build(BuildConfig(runs=[str(root / "bc")], student=str(tiny_model), out=str(root / "data"), max_tokens=512))
    return root


def test_training_changes_the_weights_and_the_checkpoint_loads(data, tiny_model):
    import torch
    from transformers import AutoModelForCausalLM

    from oec.train.sft import TrainConfig, train

    info = train(TrainConfig(data=str(data / "data"), model=str(tiny_model), out=str(data / "ckpt"),
                             trl={"max_steps": 3, "logging_steps": 1, "per_device_train_batch_size": 4}),
                 progress=False)
    assert info["steps"] == 3 and len(info["losses"]) == 3
    before = AutoModelForCausalLM.from_pretrained(tiny_model).state_dict()
    after = AutoModelForCausalLM.from_pretrained(data / "ckpt").state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert (data / "ckpt/train_log.jsonl").exists()
    r = subprocess.run([sys.executable, "-m", "oec", "eval", "--model", str(data / "ckpt"), "--tasks",
                        str(data / "tasks.jsonl"), "--out", str(data / "eval"), "--json", "loop.step_limit=2"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "loop.step_limit" in r.stderr  # eval takes no overrides
    r = subprocess.run([sys.executable, "-m", "oec", "eval", "--model", str(data / "ckpt"), "--tasks",
                        str(data / "tasks.jsonl"), "--out", str(data / "eval"), "--json"], capture_output=True,
                       text=True, check=True)
    summary = json.loads(r.stdout)
    assert summary["n"] == 4 and len(summary["resolve_rate_ci95"]) == 2


def test_context_loss_also_teaches_the_context(data, tiny_model):
    """`context_loss`: from the same weights and steps, the loss on the context tokens (task, observations) falls far
    more with it than without, while the trained turns still learn."""
    import torch
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM

    from oec.train.sft import TrainConfig, train

    rows = load_from_disk(str(data / "data"))

    def mean_loss(model_dir, column):
        model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
        total = count = 0.0
        with torch.no_grad():
            for row in rows:
                ids = torch.tensor([row["input_ids"]])
                ce = torch.nn.functional.cross_entropy(model(ids).logits[0, :-1], ids[0, 1:], reduction="none")
                mask = torch.tensor(row[column][1:], dtype=torch.float)
                total, count = total + (ce * mask).sum().item(), count + mask.sum().item()
        return total / count

    trl = {"max_steps": 6, "per_device_train_batch_size": 2, "learning_rate": 3e-3}
    for name, weight in (("plain", 0.0), ("context", 1.0)):
        train(TrainConfig(data=str(data / "data"), model=str(tiny_model), out=str(data / name), context_loss=weight,
                          trl=trl), progress=False)
    start = mean_loss(tiny_model, "context_masks")
    plain, context = mean_loss(data / "plain", "context_masks"), mean_loss(data / "context", "context_masks")
    assert context < plain and start - context > 1.5 * (start - plain), (start, plain, context)
    assert mean_loss(data / "context", "assistant_masks") < mean_loss(tiny_model, "assistant_masks")


def test_lora_trains_and_merges(data, tiny_model):
    from safetensors.torch import load_file

    from oec.train.sft import TrainConfig, train

    info = train(TrainConfig(data=str(data / "data"), model=str(tiny_model), out=str(data / "lora"), lora=True,
                             lora_r=4, trl={"max_steps": 2, "logging_steps": 1}), progress=False)
    assert info["steps"] == 2 and (data / "lora/model.safetensors").exists()
    # merged, not merely saved: the same tensor names as a plain model (no adapter left), the linear layers LoRA
    # adapted changed, and what it does not adapt (the embeddings) did not
    base, merged = load_file(tiny_model / "model.safetensors"), load_file(data / "lora/model.safetensors")
    assert set(merged) == set(base)
    linear = [k for k in base if k.endswith(("q_proj.weight", "v_proj.weight", "down_proj.weight"))]
    assert linear and all(not merged[k].equal(base[k]) for k in linear)
    assert all(merged[k].equal(base[k]) for k in base if "embed_tokens" in k or "norm" in k)


def test_a_dataset_from_another_tokenizer_is_refused(data, tmp_path, train_tasks):
    from oec.train.sft import TrainConfig, train
    from oec.train.student import StudentConfig, init_student

    other = init_student(train_tasks[:3], tmp_path / "other", StudentConfig(hidden_size=32, layers=1, heads=2,
                                                                             vocab_size=700, context=512))
    with pytest.raises(InputError, match="tokenized with another tokenizer"):
        train(TrainConfig(data=str(data / "data"), model=str(other), out=str(tmp_path / "x")), progress=False)


@pytest.mark.slow
def test_two_processes_through_accelerate_launch(data, tiny_model, tmp_path):
    """`accelerate launch` with two CPU processes (gloo): the data is sharded, one process writes the checkpoint."""
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2"]
    train = ["-m", "oec", "train", "--data", str(data / "data"), "--model", str(tiny_model), "--out",
             str(tmp_path / "ddp"), "trl.max_steps=2", "trl.per_device_train_batch_size=2", "trl.logging_steps=1"]
    r = subprocess.run(launch + ["--multi_gpu", "--main_process_port", "29517"] + train, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads((tmp_path / "ddp/oec_train.json").read_text())
    assert info["processes"] == 2 and info["backend"] == "gloo" and info["steps"] == 2
    assert r.stdout.count("wrote ") == 1 and "in 2 process(es)" in r.stdout
    # `--cpu --num_processes 2` would silently train on one process (accelerate needs MPI for that): refused
    r = subprocess.run(launch + ["--cpu", "--main_process_port", "29518"] + train, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode != 0 and "--multi_gpu" in r.stderr
