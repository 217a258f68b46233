"""`openai:MODEL@BASE_URL`: any OpenAI-compatible chat-completions server (vLLM, SGLang, `transformers serve`,
hosted APIs), through the official `openai` client.

Transient failures (429, 5xx, timeouts, dropped connections, unparseable bodies) are retried with exponential backoff
and full jitter; anything else (a bad request, a wrong key, an unknown model) raises PolicyError at once, which ends
that episode with status `error` and never the collection.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from contextlib import AbstractContextManager

import openai
from pydantic import BaseModel, ConfigDict, Field

from oec.formats import TextFormat
from oec.protocols import Episode, Format, Message, PolicyError
from oec.types import Completion, ToolCall

class EmptyResponse(Exception):
    """A 200 answer without choices (seen from overloaded servers): treated like a 5xx."""


RETRYABLE = (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError, openai.APIConnectionError,
             openai.APIResponseValidationError, json.JSONDecodeError, EmptyResponse)


class OpenAIConfig(BaseModel):
    """Client settings of an OpenAI-compatible policy."""

    model_config = ConfigDict(extra="forbid")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key (may be unset "
                             "for local servers)")
    temperature: float | None = Field(None, ge=0, description="None: the server's default")
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int = Field(1024, ge=1, description="max completion tokens per call")
    timeout: float = Field(120.0, gt=0, description="seconds per call")
    max_retries: int = Field(6, ge=0, description="retries of transient failures")
    backoff: float = Field(1.0, ge=0, description="first backoff in seconds; doubles each retry (full jitter)")
    backoff_max: float = Field(60.0, ge=0)
    price_in: float = Field(0.0, ge=0, description="USD per 1M prompt tokens")
    price_out: float = Field(0.0, ge=0, description="USD per 1M completion tokens")
    max_concurrency: int | None = Field(None, ge=1, description="calls in flight at once (the API's rate limits)")


class OpenAIPolicy:
    def __init__(self, spec: str, model: str, base_url: str, config: OpenAIConfig | None = None,
                 format: Format | None = None):
        self.spec, self.model, self.config, self.format = spec, model, config or OpenAIConfig(), format or TextFormat()
        key = os.environ.get(self.config.api_key_env) or "EMPTY"  # local servers accept any key
        self.client = openai.OpenAI(base_url=base_url, api_key=key, timeout=self.config.timeout, max_retries=0)
        self._slots = threading.BoundedSemaphore(self.config.max_concurrency) if self.config.max_concurrency else None
        self._jitter = random.Random()  # sleeping is not part of what --seed reproduces

    def close(self) -> None:
        self.client.close()

    def limit_calls_with(self, slots: AbstractContextManager) -> None:
        """Hold SLOTS around each HTTP call instead of this process's own semaphore: how a backend that runs policies
        in many processes (Ray) enforces `max_concurrency` across all of them."""
        self._slots = slots

    def _request(self, messages: list[Message]) -> dict:
        req = {"model": self.model, "messages": messages, "max_tokens": self.config.max_tokens}
        if self.format.tools:
            req["tools"] = self.format.tools
        if self.config.temperature is not None:
            req["temperature"] = self.config.temperature
        if self.config.top_p is not None:
            req["top_p"] = self.config.top_p
        return req

    def act(self, messages: list[Message], episode: Episode) -> Completion:
        t0 = time.monotonic()
        req = self._request(messages)
        failures = []
        for attempt in range(self.config.max_retries + 1):
            if attempt:
                cap = min(self.config.backoff_max, self.config.backoff * 2 ** (attempt - 1))
                time.sleep(self._jitter.uniform(0, cap))
            try:
                if self._slots:
                    with self._slots:
                        resp = self.client.chat.completions.create(**req)
                else:
                    resp = self.client.chat.completions.create(**req)
                if not resp.choices:
                    raise EmptyResponse("the response has no choices")
            except RETRYABLE as e:
                failures.append(f"{e.__class__.__name__}: {str(e)[:120]}")
                continue
            except openai.APIStatusError as e:
                raise PolicyError(f"{self.spec}: HTTP {e.status_code}, not retried: {str(e)[:300]}") from None
            return self._completion(resp, time.monotonic() - t0, attempt)
        raise PolicyError(f"{self.spec}: gave up after {len(failures)} attempts; last: {failures[-1]}")

    def _completion(self, resp, latency: float, retries: int) -> Completion:
        msg = resp.choices[0].message
        calls = [ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments or "{}")
                 for c in (msg.tool_calls or [])]
        usage = resp.usage
        pin, pout = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
        cost = (pin * self.config.price_in + pout * self.config.price_out) / 1e6
        return Completion(text=msg.content or "", tool_calls=calls, prompt_tokens=pin, completion_tokens=pout,
                          cost=cost, latency_s=latency, retries=retries)
