"""`local:PATH`: a transformers model in this process, with concurrent episodes' requests batched together.

Two engines. The default (`engine=kv`, engine.py) keeps each episode's KV cache across its turns and batches
continuously. `engine=hf` is transformers' `generate`, kept so the two can be compared side by side: episodes run in
threads; each `act` puts its prompt on a queue and waits. One generation thread takes whatever is pending (up to
`max_batch`, waiting at most `batch_wait_ms` for more), left-pads it into one batch and generates with the KV cache
of that call. On a CPU, eight prompts in one batch cost little more than one, so throughput grows with the number of
workers. Greedy replies (temperature 0) are generated one prompt at a time, unpadded: the batch-1 reference.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections import Counter
from concurrent.futures import Future
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from oec.core.errors import PolicyError, PolicySpecError
from oec.core.protocols import Episode, Format, Message
from oec.core.types import Completion
from oec.formats import TextFormat
from oec.formats.base import fit_to_context


class LocalConfig(BaseModel):
    """Sampling and batching of a local model."""

    model_config = ConfigDict(extra="forbid")
    engine: Literal["kv", "hf"] = Field("kv", description="kv: per-episode KV caches and continuous batching "
                                        "(engine.py); hf: transformers' generate, re-reading the history each turn")
    temperature: float = Field(0.7, ge=0, description="0 = greedy")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling: keep the smallest set of tokens this likely")
    max_new_tokens: int = Field(256, ge=1, description="tokens one reply may have at most")
    max_batch: int = Field(16, ge=1, description="sequences generated together at most")
    batch_wait_ms: float = Field(5.0, ge=0, description="engine=hf: how long to wait for more prompts "
                                 "before generating")
    step_tokens: int = Field(512, ge=1, description="engine=kv: prompt tokens read per step at most, over all "
                             "sequences (a long prompt is read in chunks, so decoding sequences are not held up)")
    cache_episodes: int = Field(128, ge=1, description="engine=kv: episode caches kept at most; the least recently "
                                "used idle one is dropped beyond that (its next turn is read in full)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads while this model generates (default: "
                                   "torch's choice; 1 is faster for a tiny student beside busy sandboxes)")


class LocalModel:
    """What both engines share: the checks of the spec, the model and tokenizer, and the prompt of a history."""

    def __init__(self, spec: str, path: str, config: LocalConfig | None, format: Format | None,
                 attn_implementation: str | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # one bar per model load would interleave with the collection's

        self.spec, self.config, self.format = spec, config or LocalConfig(), format or TextFormat()
        if self.format.tools:
            raise PolicySpecError(f"policy {spec!r}: local models use the text format "
                                  "(native tool calls need a server)")
        if not Path(path, "config.json").is_file():
            raise PolicySpecError(f"policy {spec!r}: {path} is not a model directory (no config.json); "
                             "make one with `oec student init` or pass a transformers model path")
        # torch's thread count is the process's: set for this model's generation, given back by close() (a training
        # in the same process, e.g. an experiment's next stage, wants every core again)
        self._threads_before = torch.get_num_threads()
        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.tokenizer.padding_side = "left"
        # `act` counts tokens of over-long histories before fit_to_context drops turns; the tokenizer's own warning
        # ("longer than the specified maximum sequence length") would only alarm the user about what we handle
        self.tokenizer.model_max_length = 10**9
        # The device is chosen here, not by the user: the same spec runs on a laptop and on a GPU node.
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
        self.model = AutoModelForCausalLM.from_pretrained(path, **extra).eval().to(self.device)
        self.context = int(getattr(self.model.config, "max_position_embeddings", 2048))
        self.batch_sizes: Counter = Counter()  # sequences per generate() call / decode step (for benchmarks/tests)
        self._queue: queue.Queue = queue.Queue()
        self.thread_name = f"oec-generate-{Path(path).name}"

    def close(self) -> None:
        """Ends the generation thread after the requests already queued; the model (and engine=kv's caches) are then
        released: each collection loads its own, so a long experiment would otherwise keep every one it ever loaded."""
        self._queue.put(None)
        if self.config.threads:
            self.torch.set_num_threads(self._threads_before)

    def _encode(self, messages: list[Message]) -> list[int]:
        return list(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=False))

    def prompt(self, messages: list[Message]) -> list[int]:
        """The token ids the model conditions on: the history, its oldest turns dropped if it does not fit."""
        budget = self.context - self.config.max_new_tokens
        return self._encode(fit_to_context(messages, lambda m: len(self._encode(m)), budget))


class LocalPolicy(LocalModel):
    """engine=hf: transformers' generate on batches of whole prompts."""

    def __init__(self, spec: str, path: str, config: LocalConfig | None = None, format: Format | None = None):
        super().__init__(spec, path, config, format)
        self.thread = threading.Thread(target=self._loop, daemon=True, name=self.thread_name)
        self.thread.start()

    def act(self, messages: list[Message], episode: Episode) -> Completion:
        t0 = time.monotonic()
        ids = self.prompt(messages)
        fut: Future = Future()
        self._queue.put((ids, episode.rng.getrandbits(63), fut))
        text, n_new = fut.result()
        return Completion(text=text, prompt_tokens=len(ids), completion_tokens=n_new, latency_s=time.monotonic() - t0,
                          finish_reason="length" if n_new >= self.config.max_new_tokens else "stop")

    def _loop(self) -> None:
        closing = False
        while not closing:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            deadline = time.monotonic() + self.config.batch_wait_ms / 1000
            while len(batch) < self.config.max_batch:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    closing = True
                    break
                batch.append(item)
            try:
                results = self._generate([ids for ids, _, _ in batch], [seed for _, seed, _ in batch])
            except Exception as e:  # handed to every waiting episode, which ends with status `error`
                for _, _, fut in batch:
                    fut.set_exception(PolicyError(f"generation failed: {e.__class__.__name__}: {e}"))
                continue
            for (_, _, fut), result in zip(batch, results):
                fut.set_result(result)
        self.model = None

    def _generate(self, prompts: list[list[int]], seeds: list[int]) -> list[tuple[str, int]]:
        torch, tok, cfg = self.torch, self.tokenizer, self.config
        if cfg.temperature == 0 and len(prompts) > 1:
            # greedy replies are the reference a paired comparison rests on: each prompt alone and unpadded, since
            # padding a batch changes the float sums and so, now and then, the argmax (batched engine=hf and
            # engine=kv once resolved 18 vs 15 of the same 40 tasks). Sampled replies stay batched.
            return [r for p, s in zip(prompts, seeds) for r in self._generate([p], [s])]
        self.batch_sizes[len(prompts)] += 1
        width = max(map(len, prompts))
        pad = tok.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=self.device)
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=self.device)
        # Sampling is seeded by the episodes' own RNGs: the same batch of the same episodes samples the same text.
        torch.manual_seed(int.from_bytes(hashlib.sha256(repr(seeds).encode()).digest()[:8], "big"))
        sample = cfg.temperature > 0
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids, attention_mask=attention, max_new_tokens=cfg.max_new_tokens,
                do_sample=sample, temperature=cfg.temperature if sample else None, top_p=cfg.top_p if sample else None,
                top_k=None, pad_token_id=pad, eos_token_id=tok.eos_token_id,
            )
        results = []
        for row in out[:, width:].tolist():
            n = row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row)
            results.append((tok.decode(row[:n], skip_special_tokens=True), n))
        return results
