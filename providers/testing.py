"""Test doubles shipped with the code: they honour the Protocols exactly.

``FakeLLM`` answers from a script, ``FunctionLLM`` from a function, ``FakeSearch`` from a
fixed list, ``MemoryStorage`` keeps blobs in a dict. Each records its calls so tests can
assert on what a graph asked for.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from core.errors import InputError, ProviderError, ProviderUnavailable
from providers.base import (
    LLMConfig,
    LLMResponse,
    Message,
    SearchResult,
    StoredObject,
    TraceStep,
)

Responder = Callable[[list[Message], LLMConfig], "str | dict[str, Any] | LLMResponse | Awaitable[str | dict[str, Any] | LLMResponse]"]


def _response(text: str, model: str, config: LLMConfig, messages: list[Message], started: float,
              provider: str = "fake") -> LLMResponse:
    latency = (time.perf_counter() - started) * 1000
    in_tokens = sum(len(m.content.split()) for m in messages)
    out_tokens = len(text.split())
    step = TraceStep(
        step=config.step,
        provider=provider,
        model=model,
        latency_ms=latency,
        input_tokens=in_tokens,
        output_tokens=out_tokens,
        cost_usd=0.0,
    )
    return LLMResponse.from_step(text, step, finish_reason="stop")


class FunctionLLM:
    """An LLMProvider whose answer is computed by ``fn(messages, config)``.

    ``fn`` may return text, a dict (sent back as JSON text), a whole ``LLMResponse``, or raise a
    ``ProviderError`` to simulate an upstream failure. It may be sync or async.
    """

    def __init__(self, fn: Responder, *, model: str = "function", provider: str = "fake") -> None:
        self.fn = fn
        self.model = model
        #: what its answers name as their provider: a backend's family ("local", "deepseek"), as litellm's do
        self.provider = provider
        self.calls: list[tuple[list[Message], LLMConfig]] = []

    async def complete(self, messages: list[Message], config: LLMConfig) -> LLMResponse:
        started = time.perf_counter()
        self.calls.append((list(messages), config))
        answer = self.fn(list(messages), config)
        if isinstance(answer, Awaitable):
            answer = await answer
        if isinstance(answer, LLMResponse):  # made whole by ``fn`` (a finish reason of its own)
            return answer
        text = json.dumps(answer) if isinstance(answer, dict) else str(answer)
        return _response(text, self.model, config, messages, started, self.provider)

    async def health_check(self) -> bool:
        return True


class FakeLLM(FunctionLLM):
    """Answers with the scripted replies in order, then repeats the last one.

    A scripted item that is a ``ProviderError`` instance is raised instead of answered.
    """

    def __init__(self, replies: Sequence[str | dict[str, Any] | ProviderError] = ("ok",), *, model: str = "fake") -> None:
        self.replies = list(replies)
        self._next = 0
        super().__init__(self._reply, model=model)

    def _reply(self, messages: list[Message], config: LLMConfig) -> str | dict[str, Any]:
        item = self.replies[min(self._next, len(self.replies) - 1)]
        self._next += 1
        if isinstance(item, ProviderError):
            raise item
        return item


class DownLLM(FunctionLLM):
    """Always unavailable: for fallback tests."""

    def __init__(self, *, model: str = "down") -> None:
        def fail(messages: list[Message], config: LLMConfig) -> str:
            raise ProviderUnavailable("fake", "connection refused", model=model)

        super().__init__(fail, model=model)

    async def health_check(self) -> bool:
        return False


class FakeSearch:
    """A SearchProvider returning fixed results (filtered by a word of the query when asked)."""

    def __init__(self, results: Iterable[SearchResult], *, match_query: bool = False) -> None:
        self.results = list(results)
        self.match_query = match_query
        self.queries: list[str] = []

    async def search(self, query: str, max_results: int = 10) -> list[SearchResult]:
        self.queries.append(query)
        hits = self.results
        if self.match_query:
            words = {w.lower() for w in query.split()}
            hits = [r for r in hits if words & set(f"{r.title} {r.snippet}".lower().split())]
        return hits[:max_results]


class MemoryStorage:
    """A StorageProvider in a dict, with the same key rules as the real backends."""

    def __init__(self) -> None:
        self.blobs: dict[str, tuple[bytes, str | None]] = {}

    @staticmethod
    def _check(key: str) -> str:
        if not key or key.startswith("/") or "\x00" in key or ".." in key.split("/") or key != key.strip():
            raise InputError(f"invalid storage key {key!r}: must be a relative path without '..'", field="key")
        return key

    async def put(self, key: str, data: bytes, content_type: str | None = None, *, overwrite: bool = True) -> StoredObject:
        self._check(key)
        if not overwrite and key in self.blobs:
            raise InputError(f"{key!r} already exists and overwrite is off", field="key")
        self.blobs[key] = (bytes(data), content_type)
        return StoredObject(key=key, size=len(data), content_type=content_type, url=f"memory://{key}")

    async def get(self, key: str) -> bytes:
        self._check(key)
        if key not in self.blobs:
            raise InputError(f"no object {key!r} in storage", field="key")
        return self.blobs[key][0]

    async def exists(self, key: str) -> bool:
        return self._check(key) in self.blobs

    async def delete(self, key: str) -> None:
        self.blobs.pop(self._check(key), None)

    async def list(self, prefix: str = "") -> list[StoredObject]:
        return [
            StoredObject(key=k, size=len(v[0]), content_type=v[1])
            for k, v in sorted(self.blobs.items())
            if k.startswith(prefix)
        ]

    async def url(self, key: str, expires_s: int = 3600) -> str:
        self._check(key)
        return f"memory://{key}"
