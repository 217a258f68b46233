"""engine=kv, the default of `local:`: a decode loop that re-reads nothing.

- Each episode's KV cache is kept across its turns (kvcache.py). A new turn's prompt, the exact ids
  `apply_chat_template` gives for the history, is compared token by token with the ids whose keys the cache holds;
  only what follows their common prefix is read. Between turns the history only grows, so that is the new
  observation and the generation prompt. Where it does not (fit_to_context dropped turns, a format re-rendered
  earlier text, a reply whose text tokenizes differently from how it was sampled) the cache is cut back to the
  common prefix and the rest is read again: a cache is never reused past the first differing token.
- Continuous batching: every step runs one forward over the running sequences, each contributing its next token or
  a chunk of its prompt; a request joins at the next step and leaves as soon as it is done.
- A reply ends at the end-of-turn token, at `max_new_tokens`, or at the end of the action (ACTION_END: the closing
  fence of the bash block), with the text up to there kept as the parser reads it.
- Sampling draws from a torch generator seeded from the episode's own RNG, one per request, so an episode's text
  does not depend on which episodes shared its steps.
- An episode's cache is freed when the episode ends (its RNG, one object per episode and actor, is collected);
  at most `cache_episodes` idle caches are kept besides the running ones.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
import weakref
from collections import Counter, OrderedDict, deque
from concurrent.futures import Future

from oec.core.errors import PolicyError
from oec.core.protocols import Episode, Format, Message
from oec.core.types import Completion
from oec.formats.text import ACTION_END
from oec.rollout.policies.kvcache import ATTENTION, Segment, SeqCache
from oec.rollout.policies.local import LocalConfig, LocalModel


class Request:
    """One reply being generated: its prompt, what of it is still to be read, and the tokens written so far."""

    def __init__(self, ids: list[int], key: int, seed: int):
        self.ids, self.key, self.seed = ids, key, seed
        self.future: Future = Future()
        self.cache = SeqCache()
        self.pending: list[int] = []  # to feed next: the unread part of the prompt, then each sampled token
        self.out: list[int] = []
        self.generator = None


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class KVPolicy(LocalModel):
    def __init__(self, spec: str, path: str, config: LocalConfig | None = None, format: Format | None = None):
        super().__init__(spec, path, config, format, attn_implementation=ATTENTION)
        self.caches: OrderedDict[int, SeqCache] = OrderedDict()  # idle episodes' caches, least recently used first
        # tokens read from prompts, reused from caches, decoded; caches cut back (a turn that was not append-only);
        # cache bytes now and at most (engine thread only: read them when no request is running)
        self.stats: Counter = Counter()
        self.eos = self.tokenizer.eos_token_id
        self._keys: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._numbers = itertools.count()  # never reused: a freed episode's number stays with it
        self._newline: dict[int, bool] = {}  # token id -> whether its text has a newline (only then can an action end)
        self.thread = threading.Thread(target=self._loop, daemon=True, name=self.thread_name)
        self.thread.start()

    def act(self, messages: list[Message], episode: Episode) -> Completion:
        t0 = time.monotonic()
        ids = self.prompt(messages)
        # drawn for greedy replies too, as engine=hf does, so both leave the episode's RNG in the same state
        request = Request(ids, self._episode_key(episode), episode.rng.getrandbits(63))
        self._queue.put(request)
        text, n_new = request.future.result()
        return Completion(text=text, prompt_tokens=len(ids), completion_tokens=n_new, latency_s=time.monotonic() - t0,
                          finish_reason="length" if n_new >= self.config.max_new_tokens else "stop")

    def cached_tokens(self, episode: Episode) -> list[int]:
        """The ids whose keys the episode's cache holds (for tests; call it between the episode's turns)."""
        cache = self.caches.get(self._episode_key(episode))
        return list(cache.tokens) if cache else []

    def _episode_key(self, episode: Episode) -> int:
        """A number per episode: the rollout makes one RNG per episode and actor and keeps it to the end, so its
        lifetime is the episode's. When it is collected, the engine is told to free the cache."""
        with self._lock:
            key = self._keys.get(episode.rng)
            if key is None:
                key = self._keys[episode.rng] = next(self._numbers)
                weakref.finalize(episode.rng, self._queue.put, ("free", key)).atexit = False
            return key

    def _loop(self) -> None:
        waiting: deque[Request] = deque()
        running: list[Request] = []
        closing = False
        while not (closing and not running and not waiting):
            block = not running and not waiting
            while True:  # take everything queued; wait only when there is nothing else to do
                try:
                    item = self._queue.get(block=block)
                except queue.Empty:
                    break
                block = False
                if item is None:
                    closing = True
                elif isinstance(item, tuple):
                    self.caches.pop(item[1], None)
                else:
                    waiting.append(item)
            while waiting and len(running) < self.config.max_batch:
                running.append(self._admit(waiting.popleft()))
            if not running:
                continue
            try:
                self._step(running)
            except Exception as e:  # handed to every running episode, which ends with status `error`
                for r in running:
                    r.future.set_exception(PolicyError(f"generation failed: {e.__class__.__name__}: {e}"))
            if any(r.future.done() for r in running):
                running = [r for r in running if not r.future.done()]
                held = sum(c.nbytes for c in (*self.caches.values(), *(r.cache for r in running)))
                self.stats["cache_bytes"] = held
                self.stats["cache_bytes_peak"] = max(self.stats["cache_bytes_peak"], held)
        self.caches.clear()
        self.model = None

    def _admit(self, r: Request) -> Request:
        """Attach the episode's cache, cut back to what the new prompt shares with it."""
        if r.key in self.caches:  # taken out while in use, so that no eviction can drop it
            r.cache = self.caches.pop(r.key)
        held = len(r.cache.tokens)
        # the prompt's last token is read even when cached: its logits give the first new token
        keep = min(common_prefix(r.cache.tokens, r.ids), len(r.ids) - 1)
        if keep < held:
            self.stats["cut"] += 1
        del r.cache.tokens[keep:]
        r.pending = r.ids[keep:]
        self.stats["reused"] += keep
        if self.config.temperature > 0:
            r.generator = self.torch.Generator(device=self.device).manual_seed(r.seed)
        return r

    def _step(self, running: list[Request]) -> None:
        """One forward over every running sequence: decoders feed their last token, readers a chunk of their
        prompt (within step_tokens), and those whose prompt is read sample their next token."""
        torch = self.torch
        ids: list[int] = []
        positions: list[int] = []
        segments: list[Segment] = []
        fed: list[tuple[Request, int]] = []
        budget = self.config.step_tokens
        for r in sorted(running, key=lambda r: not r.out):  # decoders first: a long prompt never holds them up
            n = 1 if r.out else min(len(r.pending), budget)
            if n <= 0:
                continue
            budget -= n
            past = len(r.cache.tokens)
            segments.append(Segment(r.cache, len(ids), n, past, self.device))
            ids += r.pending[:n]
            positions += range(past, past + n)
            fed.append((r, n))
            self.stats["decoded" if r.out else "read"] += n
        self.batch_sizes[len(fed)] += 1
        with torch.inference_mode():
            logits = self.model(
                input_ids=torch.tensor([ids], device=self.device),
                position_ids=torch.tensor([positions], device=self.device),
                logits_to_keep=torch.tensor([s.start + s.n - 1 for s in segments], device=self.device),
                use_cache=False, oec_segments=segments,
            ).logits[0]
        ready = []
        for i, (r, n) in enumerate(fed):
            r.cache.tokens += r.pending[:n]
            r.pending = r.pending[n:]
            if not r.pending:
                ready.append((r, i))
        if not ready:
            return
        rows = logits[[i for _, i in ready]].float()
        if self.config.temperature == 0:
            tokens = rows.argmax(-1).tolist()
        else:
            tokens = [self._sample(row, r.generator) for row, (r, _) in zip(rows, ready)]
        for (r, _), token in zip(ready, tokens):
            r.out.append(token)
            if (token == self.eos or len(r.out) >= self.config.max_new_tokens
                    or len(r.cache.tokens) + 1 >= self.context or self._action_ended(r.out, token)):
                self._finish(r)
            else:
                r.pending = [token]

    def _sample(self, row, generator) -> int:
        """One token from ROW's logits with temperature and nucleus (top-p) filtering, as transformers' warpers."""
        torch = self.torch
        scores = row / self.config.temperature
        if self.config.top_p < 1:
            ordered, index = scores.sort()
            drop = ordered.softmax(-1).cumsum(-1) <= 1 - self.config.top_p
            drop[-1] = False  # the most likely token always stays
            scores[index[drop]] = -float("inf")
        return int(torch.multinomial(scores.softmax(-1), 1, generator=generator))

    def _action_ended(self, out: list[int], token: int) -> bool:
        if token not in self._newline:
            self._newline[token] = "\n" in self.tokenizer.decode([token])
        return self._newline[token] and \
            ACTION_END.search(self.tokenizer.decode(out, skip_special_tokens=True)) is not None

    def _finish(self, r: Request) -> None:
        """Hand the reply over and keep the cache for the episode's next turn."""
        self.caches[r.key] = r.cache
        while len(self.caches) > self.config.cache_episodes:
            self.caches.popitem(last=False)
        r.future.set_result((self.tokenizer.decode(r.out, skip_special_tokens=True), len(r.out)))
