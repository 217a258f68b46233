"""`oec train`: supervised fine-tuning of the student on a built dataset, through TRL's SFTTrainer.

The dataset is pre-tokenized (`input_ids` + `assistant_masks`), so TRL uses it as is and the masks reach the loss:
only the trained turns count. Examples were already split to fit the student's context by `oec build`, so nothing is
truncated here. Batching is padding-free (no pad tokens computed) where attention can use it, i.e. flash attention on
a GPU; elsewhere SDPA would attend over the whole flattened batch under a block mask, which measured 0.65x the speed
of plain padding on our CPUs (bench/sft_throughput.py), so batches are padded there. `trl.KEY=VALUE` overrides go to
`SFTConfig` unchanged. The result is an ordinary model directory that `local:` policies load (LoRA adapters are merged).

`context_loss=W` adds W x the mean loss on the context tokens (the task, the observations: never an assistant turn, so
a student turn that OEC leaves untrained stays untrained). A tiny student learns to copy names from its context much
sooner when it also predicts them where the environment prints them (bench/RESULTS.md §8).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from oec.core.atomic import check_output, partial_path
from oec.core.errors import InputError
from oec.core.stage import BUILD_INFO, TRAIN_INFO, completed, fingerprint, making

DEFAULTS = {  # sized for a tiny student on a CPU; every key can be overridden with trl.KEY=VALUE
    "per_device_train_batch_size": 8, "learning_rate": 1e-3, "num_train_epochs": 1.0, "lr_scheduler_type": "cosine",
    "warmup_steps": 0.05, "logging_steps": 10, "save_strategy": "no", "report_to": "none",
    "max_length": None, "dataloader_num_workers": 0,  # assistant_masks always reach the labels (TRL builds them)
}


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data: str = Field(description="dataset directory written by `oec build --format hf`")
    model: str = Field(description="model directory to start from")
    out: str = Field(description="checkpoint directory to write")
    lora: bool = Field(False, description="train LoRA adapters (PEFT) and merge them into the saved model")
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(32, ge=1)
    seed: int = 0
    context_loss: float = Field(0.0, ge=0, description="weight of the auxiliary loss on context (non-assistant) tokens")
    trl: dict[str, Any] = Field(default_factory=dict, description="SFTConfig fields, e.g. learning_rate, max_steps")


def check_trl(overrides: dict[str, Any], where: str = "trl") -> None:
    """Each `trl.KEY=VALUE` names a field of SFTConfig and has its type, checked before any model is loaded (a bad
    value would otherwise fail deep inside the Trainer, minutes later)."""
    import dataclasses

    from trl import SFTConfig

    fields = {f.name: f for f in dataclasses.fields(SFTConfig)}
    for key, value in overrides.items():
        if key not in fields:
            raise InputError(f"{where}.{key}: not a field of trl.SFTConfig (check its spelling)")
        try:
            adapter = TypeAdapter(fields[key].type)
        except Exception:  # noqa: BLE001 (a type pydantic cannot check: left to SFTConfig)
            continue
        try:
            adapter.validate_python(value)
        except ValidationError as e:
            raise InputError(f"{where}.{key}={value!r}: {e.errors()[0]['msg']} (trl.SFTConfig.{key} is "
                             f"{fields[key].type})") from None


def check_inputs(cfg: TrainConfig) -> None:
    """What can be checked before torch, the model or the data are loaded."""
    check_launch(dict(os.environ))
    if not (Path(cfg.model) / "config.json").is_file():
        raise InputError(f"--model {cfg.model}: no model directory there (no config.json); give one written by "
                         "`oec student init` or `oec train`, or a Hugging Face model directory")
    if not Path(cfg.data).is_dir():
        raise InputError(f"--data {cfg.data}: no such dataset directory (make one with `oec build --format hf`)")
    check_output(cfg.out, "dir", marker=TRAIN_INFO)
    check_trl(cfg.trl)


def check_tokenizer(data: Path, tokenizer) -> None:
    """The dataset's token ids mean something only under the tokenizer that made them."""
    built = data / "tokenizer"
    if not built.is_dir():
        raise InputError(f"{data}: no tokenizer/ beside the dataset; was it written by `oec build --format hf`?")
    from transformers import AutoTokenizer

    theirs = AutoTokenizer.from_pretrained(built)
    if theirs.get_vocab() != tokenizer.get_vocab() or theirs.chat_template != tokenizer.chat_template:
        raise InputError(f"{data} was tokenized with another tokenizer than the model's (vocabulary or chat template "
                         "differ); rebuild it with `oec build ... --student MODEL_DIR` for this model")


def check_launch(env: dict) -> None:
    """`accelerate launch --cpu --num_processes N` starts ONE process unless MPI runs it; say so instead of training
    on one process while the user believes it is N."""
    asked = env.get("ACCELERATE_USE_CPU", "").lower() == "true" and "MASTER_ADDR" in env
    started = any(k in env for k in ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK"))
    if asked and not started:
        raise InputError("`accelerate launch --cpu --num_processes N` starts a single process unless it runs under "
                         "MPI (--mpirun_hostfile). For N processes on CPUs (gloo), use `accelerate launch --multi_gpu "
                         "--num_processes N -m oec train ...`; on a machine without GPUs it runs on the CPU.")


def examples_seen(steps: int, examples: int, batch: int, accumulation: int = 1) -> int:
    """Examples an optimizer run of STEPS sees on a dataset of EXAMPLES, at BATCH examples per micro-batch (over all
    processes) and ACCUMULATION micro-batches per step: whole epochs, then the start of the next (the Trainer's
    dataloader keeps the short last batch, and an epoch has at least one step)."""
    per_epoch = max(math.ceil(examples / batch) // accumulation, 1)
    epochs, rest = divmod(steps, per_epoch)
    return epochs * examples + min(rest * accumulation * batch, examples)


def trained_tokens(steps: int, examples: int, trainable: int, batch: int, accumulation: int = 1) -> int:
    """Trained (loss-bearing) tokens of such a run: the dataset's TRAINABLE tokens once per epoch seen. Exact for whole
    epochs; within an epoch it is the expectation over the shuffle (examples differ in length)."""
    return round(trainable * examples_seen(steps, examples, batch, accumulation) / max(examples, 1))


def steps_for_tokens(target: int, examples: int, trainable: int, batch: int, accumulation: int = 1) -> int:
    """The fewest optimizer steps whose trained_tokens reach TARGET (the token-matched arms of `oec experiment`)."""
    per_epoch = max(math.ceil(examples / batch) // accumulation, 1)
    epochs, rest = divmod(target, max(trainable, 1))
    per_step = trainable / max(examples, 1) * accumulation * batch
    return max(1, epochs * per_epoch + min(math.ceil(rest / per_step), per_epoch))


def matched_steps(data: Path, trl: dict, target: int) -> int:
    """Steps that train about TARGET trained tokens on DATA (a dataset of `oec build`) with TRL's batch settings."""
    stats = json.loads((Path(data) / BUILD_INFO).read_text())["stats"]
    batch = {**DEFAULTS, **trl}
    return steps_for_tokens(target, stats["examples"], stats["trainable_tokens"], batch["per_device_train_batch_size"],
                            batch.get("gradient_accumulation_steps", 1))


def train_key(cfg: TrainConfig) -> dict:
    """What a checkpoint is made from: its config, the dataset (by its build record) and the starting model."""
    # the paths are left out (their contents are in the fingerprint), so an experiment moved elsewhere resumes
    return {"config": cfg.model_dump(exclude={"out", "data", "model"}),
            "inputs": fingerprint(Path(cfg.data) / BUILD_INFO, cfg.model)}


def train(cfg: TrainConfig, progress: bool = True) -> dict:
    """Train; a complete checkpoint made from the same config, data and model is kept as it is (`reused`: true)."""
    check_inputs(cfg)

    import torch
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback
    from transformers.utils import is_flash_attn_2_available
    from trl import SFTConfig, SFTTrainer

    key = train_key(cfg)
    if (done := completed(cfg.out, TRAIN_INFO, key)) is not None:
        return {**done, "reused": True}
    data, out = Path(cfg.data), Path(cfg.out)
    if not (data / "dataset_info.json").exists():
        raise InputError(f"{data}: not a dataset written by `oec build --format hf`")
    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    check_tokenizer(data, tokenizer)
    dataset = _dataset(load_from_disk(str(data)), cfg.context_loss, data)
    gpu = torch.cuda.is_available()
    flash = gpu and is_flash_attn_2_available()
    model = AutoModelForCausalLM.from_pretrained(cfg.model, attn_implementation="flash_attention_2" if flash else None)
    model.tie_weights()
    empty = [name for name, p in model.named_parameters() if p.is_meta]
    if empty:  # a model whose weights never materialised would fail deep inside the Trainer
        raise InputError(f"{cfg.model}: parameters {empty[:3]} were not loaded (still on the meta device; torch's "
                         f"default device is {torch.get_default_device()}); is the checkpoint complete?")
    peft_config = None
    if cfg.lora:
        from peft import LoraConfig

        peft_config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules="all-linear",
                                 task_type="CAUSAL_LM")
    # Activation checkpointing (TRL's default) trades ~30% more compute for memory: right for a 7B model on a GPU,
    # pure loss for the small models that are trained on a CPU.
    # bf16 autocast (TRL's default) on a CPU without bf16 units made every step ~20x slower (40 s against 2 s for 5k
    # tokens of the shipped student): mixed precision only where there is a GPU.
    fields = {**DEFAULTS, "use_cpu": not gpu, "activation_checkpointing": gpu, "padding_free": flash,
              "bf16": gpu, "disable_tqdm": not progress, **cfg.trl}
    try:  # anything the Trainer itself writes goes to the temporary name; the model is saved below, whole
        args = SFTConfig(output_dir=str(partial_path(out)), seed=cfg.seed, **fields)
    except TypeError as e:
        raise InputError(f"trl overrides: {e} (see trl.SFTConfig for the fields)") from None
    kind = _context_trainer(SFTTrainer, cfg.context_loss) if cfg.context_loss else SFTTrainer
    trainer = kind(model=model, args=args, train_dataset=dataset, processing_class=tokenizer, peft_config=peft_config)
    if not progress:  # without a progress bar the Trainer prints every log dict instead; the log file has them
        trainer.remove_callback(PrinterCallback)
    result = trainer.train()
    log = trainer.state.log_history
    built = data / BUILD_INFO  # the dataset's own count of trained tokens, else counted from its masks
    trainable = (json.loads(built.read_text())["stats"]["trainable_tokens"] if built.exists()
                 else sum(map(sum, load_from_disk(str(data))["assistant_masks"])))
    tokens = trained_tokens(trainer.state.global_step, len(dataset), trainable,
                            args.per_device_train_batch_size * args.world_size, args.gradient_accumulation_steps)
    info = {"config": cfg.model_dump(), "examples": len(dataset), "steps": trainer.state.global_step,
            "trained_tokens": tokens,
            "processes": trainer.args.world_size, "main_process": trainer.is_world_process_zero(),
            "backend": torch.distributed.get_backend() if torch.distributed.is_initialized() else None,
            "train_loss": result.training_loss,
            "seconds": result.metrics.get("train_runtime"), "losses": [r["loss"] for r in log if "loss" in r]}
    if trainer.is_world_process_zero():  # under `accelerate launch` every process gets here; one writes
        trained = trainer.model.merge_and_unload() if cfg.lora else trainer.model
        with making(out, TRAIN_INFO, key) as (tmp, record):
            trained.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            (tmp / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
            record.update(info)
    return info


def _dataset(dataset, context_loss: float, data: Path):
    if not context_loss:
        return dataset.select_columns(["input_ids", "assistant_masks"])
    if "context_masks" not in dataset.column_names:
        raise InputError(f"{data}: context_loss needs the context_masks column, which `oec build` writes since this "
                         "version; rebuild the dataset")
    # labels built here, so TRL leaves them as they are and the context mask survives its preparation
    return dataset.select_columns(["input_ids", "assistant_masks", "context_masks"]).map(
        lambda ex: {"labels": [t if m else -100 for t, m in zip(ex["input_ids"], ex["assistant_masks"])]},
        remove_columns=["assistant_masks"], keep_in_memory=True)  # no cache file written into the user's dataset


def _context_trainer(base, weight: float):
    """BASE (TRL's SFTTrainer) with loss = mean over trained tokens + WEIGHT x mean over context tokens."""
    import torch
    import torch.nn.functional as F

    class ContextLossTrainer(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            inner = self.data_collator

            def collate(examples):
                out = inner([{k: v for k, v in e.items() if k != "context_masks"} for e in examples])
                masks = [torch.tensor(e["context_masks"]) for e in examples]
                if "attention_mask" in out:  # padded to the right, like the input ids
                    out["context_masks"] = torch.nn.utils.rnn.pad_sequence(masks, batch_first=True)
                else:  # padding-free: one flattened row
                    out["context_masks"] = torch.cat(masks)[None]
                return out

            self.data_collator = collate

        def _set_signature_columns_if_needed(self):
            super()._set_signature_columns_if_needed()
            self._signature_columns = [*self._signature_columns, "context_masks"]

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            context, labels = inputs.pop("context_masks"), inputs.pop("labels")
            outputs = model(**inputs, use_cache=False)
            logits, targets = outputs.logits[:, :-1].float(), inputs["input_ids"][:, 1:]
            ce = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
            own = (labels[:, 1:] != -100).float()
            ctx = context[:, 1:].float()
            if "position_ids" in inputs:  # padding-free: no target across a sequence boundary
                ctx = ctx * (inputs["position_ids"][:, 1:] != 0)
            loss = (ce * own).sum() / own.sum().clamp(min=1) + weight * (ce * ctx).sum() / ctx.sum().clamp(min=1)
            if num_items_in_batch is not None:  # then the Trainer leaves gradient accumulation to the loss
                loss = loss / self.current_gradient_accumulation_steps
            return (loss, outputs) if return_outputs else loss

    return ContextLossTrainer
