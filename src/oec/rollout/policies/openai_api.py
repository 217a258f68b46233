"""`openai:MODEL@BASE_URL`: any OpenAI-compatible chat-completions server (vLLM, SGLang, `transformers serve`,
hosted APIs), through the official `openai` client.

Transient failures (429, 5xx, timeouts, dropped connections, unparseable or malformed bodies) are retried with
exponential backoff and full jitter; anything else (a bad request, a wrong key, an unknown model, a reply over
`max_reply_bytes`) raises PolicyError at once, which ends that episode with status `error` and never the collection.

Each HTTP call has a total `deadline` (connect and every read together): `timeout` alone bounds each read, so a server
that sends a byte a second would keep a call, and the collection, running forever. The body is read in chunks, so the
deadline and the size cap are checked as it arrives, and a 50 MB reply is never held, let alone stored.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from contextlib import AbstractContextManager

import openai
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from oec.core.errors import DeadlineExceeded, MalformedReply, PolicyError, describe
from oec.core.protocols import Episode, Format, Message
from oec.core.types import Completion, ToolCall
from oec.formats import TextFormat

RETRYABLE = (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError, openai.APIConnectionError,
             openai.APIResponseValidationError, MalformedReply, DeadlineExceeded)


STRICT = ConfigDict(strict=True)  # a number where text belongs is a malformed reply, not text


class _Function(BaseModel):
    model_config = STRICT
    name: str
    arguments: str | None = None


class _Call(BaseModel):
    model_config = STRICT
    id: str
    function: _Function


class _Message(BaseModel):
    model_config = STRICT
    content: str | None = None
    tool_calls: list[_Call] | None = None


class _Choice(BaseModel):
    model_config = STRICT
    message: _Message
    finish_reason: str | None = None


class _Usage(BaseModel):
    model_config = STRICT
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Reply(BaseModel):
    """The part of a chat-completions body that is used (anything else in it is ignored)."""

    model_config = STRICT
    choices: list[_Choice] = Field(min_length=1)
    usage: _Usage | None = None


class OpenAIConfig(BaseModel):
    """Client settings of an OpenAI-compatible policy."""

    model_config = ConfigDict(extra="forbid")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the API key (may be unset "
                             "for local servers)")
    temperature: float | None = Field(None, ge=0, description="None: the server's default")
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int = Field(1024, ge=1, description="max completion tokens per call")
    timeout: float = Field(120.0, gt=0, description="seconds to connect, and to wait for each piece of the reply")
    deadline: float = Field(300.0, gt=0, description="seconds per call in all (connect and every read); past it the "
                            "call is retried like a timeout")
    max_reply_bytes: int = Field(8 << 20, ge=1024, description="a reply larger than this ends the episode with "
                                 "status error (never stored)")
    max_retries: int = Field(6, ge=0, description="retries of transient failures")
    backoff: float = Field(1.0, ge=0, description="first backoff in seconds; doubles each retry (full jitter)")
    backoff_max: float = Field(60.0, ge=0)
    price_in: float = Field(0.0, ge=0, description="USD per 1M prompt tokens")
    price_out: float = Field(0.0, ge=0, description="USD per 1M completion tokens")
    max_concurrency: int | None = Field(None, ge=1, description="calls in flight at once (the API's rate limits)")


def _utf8(text: str) -> str:
    """TEXT without lone surrogates (JSON may escape one, `"\\udcff"`): they cannot be written as UTF-8, so one in a
    reply would fail the trajectory's line when it is stored."""
    return text.encode("utf-8", "replace").decode("utf-8")


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
                        resp = self._call(req)
                else:
                    resp = self._call(req)
            except RETRYABLE as e:
                failures.append(f"{e.__class__.__name__}: {str(e)[:120]}")
                continue
            except openai.APIStatusError as e:
                raise PolicyError(f"{self.spec}: HTTP {e.status_code}, not retried: {str(e)[:300]}") from None
            return self._completion(resp, time.monotonic() - t0, attempt)
        raise PolicyError(f"{self.spec}: gave up after {len(failures)} attempts; last: {failures[-1]}")

    def _call(self, req: dict) -> _Reply:
        """One HTTP call, read within the deadline and the size cap, parsed into a _Reply."""
        t0 = time.monotonic()
        body = bytearray()
        with self.client.chat.completions.with_streaming_response.create(**req) as raw:
            for chunk in raw.iter_bytes():
                body += chunk
                if len(body) > self.config.max_reply_bytes:
                    raise PolicyError(f"{self.spec}: the reply is over max_reply_bytes={self.config.max_reply_bytes} "
                                      "bytes; not stored (raise max_reply_bytes, or lower max_tokens)")
                if time.monotonic() - t0 > self.config.deadline:
                    raise DeadlineExceeded(f"no complete reply within deadline={self.config.deadline} s "
                                           f"({len(body)} bytes so far)")
        if time.monotonic() - t0 > self.config.deadline:
            raise DeadlineExceeded(f"no complete reply within deadline={self.config.deadline} s")
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise MalformedReply(f"the 200 reply is not JSON: {bytes(body[:80])!r}") from None
        try:
            return _Reply.model_validate(data)
        except ValidationError as e:
            raise MalformedReply(f"the 200 reply is not a chat completion: {describe(e)[:200]}") from None

    def _completion(self, resp: _Reply, latency: float, retries: int) -> Completion:
        msg = resp.choices[0].message
        calls = [ToolCall(id=_utf8(c.id), name=_utf8(c.function.name), arguments=_utf8(c.function.arguments or "{}"))
                 for c in (msg.tool_calls or [])]
        usage = resp.usage
        pin, pout = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
        cost = (pin * self.config.price_in + pout * self.config.price_out) / 1e6
        return Completion(text=_utf8(msg.content or ""), tool_calls=calls, prompt_tokens=pin, completion_tokens=pout,
                          cost=cost, latency_s=latency, retries=retries, finish_reason=resp.choices[0].finish_reason)
