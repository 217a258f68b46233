"""`oec student init`: a tiny from-scratch student — an offline BPE tokenizer and a small Llama, untrained.

Nothing is downloaded: the tokenizer is trained on the tasks' own text (problem statements, repository files) and on
the commands and thoughts the scripted expert writes for them, so identifiers and tool syntax become few tokens (copying
names is the first wall for a tiny model: bench/RESULTS.md §8). The output is an ordinary HF model
directory that `AutoTokenizer` and `AutoModelForCausalLM` load, so a real user's model path works the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from pydantic import BaseModel, ConfigDict, Field

from oec.core.atomic import atomic_output, check_output
from oec.formats import TextFormat, ToolCallFormat, text_reply
from oec.rollout.policies.scripted import base_texts, make_plan
from oec.core.types import Action, Task

STUDENT_INFO = "oec_student.json"
SPECIAL = ["<|pad|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]

# `{% generation %}` marks the tokens the model is trained on, so `return_assistant_tokens_mask` finds them.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "<|assistant|>\n{% generation %}{{ message['content'] }}<|end|>{% endgeneration %}\n"
    "{%- else -%}"
    "<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n"
    "{%- endif -%}"
    "{%- endfor -%}"
    # `{% endif` without `-`: a `-` there would also strip the newline, and the prompt would stop one token short
    # of where the trained reply starts (a token the model never learns to produce)
    "{%- if add_generation_prompt -%}<|assistant|>\n{% endif -%}"
)


class StudentConfig(BaseModel):
    """Size of the tiny student. The defaults train at a few thousand tokens/s on 2 CPU cores."""

    model_config = ConfigDict(extra="forbid")
    vocab_size: int = Field(2048, ge=300, description="BPE vocabulary size, special tokens included")
    hidden_size: int = Field(256, ge=16)
    layers: int = Field(4, ge=1)
    heads: int = Field(4, ge=1)
    kv_heads: int | None = Field(None, description="grouped-query attention heads (default: heads)")
    intermediate_size: int | None = Field(None, description="MLP width (default: 8/3 x hidden, rounded to 64)")
    context: int = Field(2048, ge=128, description="max positions: the longest prompt + reply the student sees")
    seed: int = 0


def corpus(tasks: list[Task]) -> Iterator[str]:
    """Text the student will read and write: prompts, code, and the expert's own replies to these tasks."""
    yield TextFormat().system
    yield ToolCallFormat().system
    for task in tasks:
        yield task.problem_statement
        yield from (text for text in base_texts(task).values() if text is not None)
        yield "\n".join(f"FAILED {t} - assert" for t in task.FAIL_TO_PASS)
        try:
            plan = make_plan(task)
        except ValueError:  # no gold patch: nothing scripted to imitate
            continue
        for thought, command in plan.explore:
            yield text_reply(thought, Action(kind="bash", command=command))
        for edit in plan.edits:
            yield text_reply("The bug is here; let me fix it.", Action(kind="bash", command=edit.command()))
        yield text_reply("The tests pass; the fix is done.", Action(kind="submit"))


def init_student(tasks: list[Task], out: str | Path, config: StudentConfig | None = None) -> Path:
    config = config or StudentConfig()
    out = check_output(out, "dir", marker=STUDENT_INFO)
    with atomic_output(out) as tmp:  # complete (tokenizer, weights, oec_student.json) or absent
        tmp.mkdir()
        _write_student(tasks, tmp, config)
    return out


def _write_student(tasks: list[Task], out: Path, config: StudentConfig) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=config.vocab_size, special_tokens=SPECIAL, min_frequency=2,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(corpus(tasks), trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|end|>", pad_token="<|pad|>",
                                        model_max_length=config.context, padding_side="left")
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out)

    inter = config.intermediate_size or max(64, round(config.hidden_size * 8 / 3 / 64) * 64)
    llama = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=config.hidden_size, intermediate_size=inter,
        num_hidden_layers=config.layers, num_attention_heads=config.heads,
        num_key_value_heads=config.kv_heads or config.heads, max_position_embeddings=config.context,
        tie_word_embeddings=True, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(config.seed)
    model = LlamaForCausalLM(llama)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    (out / STUDENT_INFO).write_text(json.dumps(
        {"config": config.model_dump(), "parameters": params, "tasks": len(tasks)}, indent=2) + "\n")
