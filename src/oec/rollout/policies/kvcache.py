"""Per-episode KV caches and the attention that reads them, for the `local:` engine (engine.py).

The engine runs the transformers model on one packed row: the new tokens of every running sequence side by side (one
token for a sequence that is decoding, a chunk of its new turn for one that is reading its prompt), each with its own
positions. transformers calls the attention function registered here (its documented AttentionInterface) once per
layer with that row's projected, rotated queries, keys and values; the function appends each sequence's new keys and
values to that sequence's own cache and attends over that cache alone. A custom attention implementation makes
transformers skip its mask creation, so no padding and no (batch x length x length) mask is ever built: a decode
step costs the same whether its neighbours have 100 or 2,000 tokens of history.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

ATTENTION = "oec_packed"
GROW = 256  # tokens a cache grows by at least: few reallocations per episode, little memory left unused


class SeqCache:
    """One episode's keys and values, per layer a (kv_heads, capacity, head_dim) buffer. `tokens` are the ids whose
    keys are stored, in order: a new prompt is compared with them before any of it is reused."""

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.keys: dict[int, torch.Tensor] = {}
        self.values: dict[int, torch.Tensor] = {}

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (*self.keys.values(), *self.values.values()))

    def write(self, layer: int, past: int, key: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store KEY/VALUE (kv_heads, n, head_dim) at positions PAST.. of LAYER; return the layer's keys and values
        up to the last of them. Positions past PAST are overwritten: a cache cut back to a common prefix reuses its
        buffer."""
        end = past + key.shape[1]
        buf = self.keys.get(layer)
        if buf is None or buf.shape[1] < end:
            cap = max(end, 2 * (0 if buf is None else buf.shape[1]), GROW)
            for store, new in ((self.keys, key), (self.values, value)):
                grown = new.new_empty((new.shape[0], cap, new.shape[2]))
                if buf is not None:
                    grown[:, :past] = store[layer][:, :past]
                store[layer] = grown
        self.keys[layer][:, past:end] = key
        self.values[layer][:, past:end] = value
        return self.keys[layer][:, :end], self.values[layer][:, :end]


class Segment:
    """The tokens of one sequence in the packed row: row[start:start+n], at positions past..past+n-1."""

    __slots__ = ("cache", "mask", "n", "past", "start")

    def __init__(self, cache: SeqCache, start: int, n: int, past: int, device: torch.device):
        self.cache, self.start, self.n, self.past = cache, start, n, past
        # a chunk read after earlier tokens attends to all of them and causally within itself; SDPA's is_causal
        # aligns the triangle to the top-left, which is only right without a past, hence the explicit mask
        self.mask = None if n == 1 or past == 0 else torch.ones(n, past + n, dtype=torch.bool, device=device).tril(past)


def packed_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, oec_segments=None,
                     **kwargs):
    """transformers' attention signature: QUERY (1, heads, T, d), KEY/VALUE (1, kv_heads, T, d) for the packed row;
    returns (1, T, heads, d) and no weights. ATTENTION_MASK is None (no mask is built for custom attention)."""
    out = torch.empty_like(query)
    gqa = query.shape[1] != key.shape[1]
    for seg in oec_segments:
        s, e = seg.start, seg.start + seg.n
        k, v = seg.cache.write(module.layer_idx, seg.past, key[0, :, s:e], value[0, :, s:e])
        out[:, :, s:e] = F.scaled_dot_product_attention(
            query[:, :, s:e], k[None], v[None], attn_mask=seg.mask, is_causal=seg.n > 1 and seg.past == 0,
            scale=scaling, enable_gqa=gqa)
    return out.transpose(1, 2), None


AttentionInterface.register(ATTENTION, packed_attention)
