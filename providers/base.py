"""Provider Protocols and the result types they exchange.

The four contracts are the design's, verbatim: ``LLMProvider.complete(messages, config)``,
``LLMProvider.health_check()``, ``SearchProvider.search(query, max_results)``,
``ImageProvider.process(image, action, config)``, plus ``StorageProvider``. Graphs talk to
these Protocols only; which backend stands behind them is decided by config.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from core.rules import Tier

Role = Literal["system", "user", "assistant"]
Outcome = Literal["ok", "error", "skipped"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Message(_Frozen):
    """One chat message."""

    role: Role
    content: str


class TraceStep(_Frozen):
    """One observable step: a provider attempt, a skip, or a graph node.

    Every attempt, failures and skips included, becomes one of these; a job's trace is the
    ordered list of them.
    """

    step: str = Field(description="graph node or operation that made the call")
    kind: str = Field(default="llm", description="llm | search | image | storage | node")
    provider: str = ""
    model: str | None = None
    attempt: int = 1
    latency_ms: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    outcome: Outcome = "ok"
    error_class: str | None = None
    detail: str | None = None
    at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))


class LLMConfig(_Frozen):
    """Per-call choices. Unset fields fall back to config (tier, model defaults)."""

    tier: Tier | None = None
    prefer: str | None = Field(
        default=None, description="a family (deepseek, claude, ...) or model name to try first"
    )
    temperature: float = 0.2
    max_tokens: int | None = None
    json_schema: dict[str, Any] | None = Field(
        default=None, description="ask for JSON that matches this schema (constrained where supported)"
    )
    step: str = "llm"


AttemptEvent = Literal["calling", "failed"]
#: ``(event, model, detail)``: a chain is about to call ``model`` (detail: what it skipped to get
#: there) or ``model`` just failed (detail: the error class).
AttemptListener = Callable[[AttemptEvent, str, str], None]
_attempt_listener: contextvars.ContextVar[AttemptListener | None] = contextvars.ContextVar(
    "attempt_listener", default=None
)


@contextlib.contextmanager
def listen_to_attempts(listener: AttemptListener) -> Iterator[None]:
    """Within this block, an LLM chain tells ``listener`` which model it calls as it goes, so
    progress names the model really tried or answering, not the one the route asked for."""
    token = _attempt_listener.set(listener)
    try:
        yield
    finally:
        _attempt_listener.reset(token)


def notify_attempt(event: AttemptEvent, model: str, detail: str = "") -> None:
    """Called by LLM chains (the router); a no-op when nobody listens."""
    listener = _attempt_listener.get()
    if listener is not None:
        listener(event, model, detail)


class LLMResponse(_Frozen):
    """What a model answered, with the attempts it took to get there."""

    text: str
    model: str
    provider: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    latency_ms: float = 0.0
    finish_reason: str | None = None
    attempts: tuple[TraceStep, ...] = ()


class SearchResult(_Frozen):
    """One hit: where it lives, what it is called, and the text around the match."""

    url: str
    title: str
    snippet: str
    source: str = Field(default="", description="backend that found it")
    score: float | None = None
    retrieved_at: str = Field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds")
    )


class ImageAction(enum.StrEnum):
    """What an ImageProvider is asked to do."""

    UPSCALE = "upscale"
    REMOVE_BACKGROUND = "remove_background"
    PIPELINE = "pipeline"


class ImageConfig(_Frozen):
    """Per-call image options; unset ones come from ``providers.image`` in config."""

    model: str | None = None
    scale: int | None = None
    tile: int | None = None
    alpha_matting: bool = False
    only_mask: bool = False
    background_color: tuple[int, int, int, int] | None = None
    output_format: Literal["png", "webp", "jpeg"] = "png"


class StoredObject(_Frozen):
    """Metadata of one object in storage."""

    key: str
    size: int
    content_type: str | None = None
    url: str | None = Field(default=None, description="a fetchable URL where the backend has one")


@runtime_checkable
class LLMProvider(Protocol):
    """A chat model (or a router over several)."""

    async def complete(self, messages: list[Message], config: LLMConfig) -> LLMResponse: ...

    async def health_check(self) -> bool: ...


@runtime_checkable
class SearchProvider(Protocol):
    """A search backend (or a fallback chain of them)."""

    async def search(self, query: str, max_results: int = 10) -> list[SearchResult]: ...


@runtime_checkable
class ImageProvider(Protocol):
    """An image model: bytes in, bytes out."""

    async def process(self, image: bytes, action: ImageAction, config: ImageConfig) -> bytes: ...


@runtime_checkable
class StorageProvider(Protocol):
    """A key-value blob store confined to its root/bucket/prefix."""

    async def put(
        self, key: str, data: bytes, content_type: str | None = None, *, overwrite: bool = True
    ) -> StoredObject: ...

    async def get(self, key: str) -> bytes: ...

    async def exists(self, key: str) -> bool: ...

    async def delete(self, key: str) -> None: ...

    async def list(self, prefix: str = "") -> list[StoredObject]: ...

    async def url(self, key: str, expires_s: int = 3600) -> str: ...
