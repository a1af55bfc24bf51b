"""Provider Protocols and the result types they exchange.

The four contracts are the design's, verbatim: ``LLMProvider.complete(messages, config)``,
``LLMProvider.health_check()``, ``SearchProvider.search(query, max_results)``,
``ImageProvider.process(image, action, config)``, plus ``StorageProvider``. Graphs talk to
these Protocols only; which backend stands behind them is decided by config.

What some providers can do beyond their contract is declared here too, as ``runtime_checkable``
Protocols a caller tests with ``isinstance`` (never ``hasattr``): ``TracedImageProvider``,
``BatchImageProvider``, ``TracedSearch``, ``SelectableSearch``, ``DocumentReader``,
``Configurable``, ``Warmable``, ``PlansAttempts`` and ``PreflightsAttempts``. The job-scoped hooks
an LLM chain consults as it goes live in ``providers.attempts`` and are re-exported here.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from core.errors import SwarmError
from core.rules import Tier
from providers.attempts import AttemptEvent as AttemptEvent
from providers.attempts import AttemptListener as AttemptListener
from providers.attempts import AttemptPreflight as AttemptPreflight
from providers.attempts import Billed as Billed
from providers.attempts import PlannedAttempt as PlannedAttempt
from providers.attempts import job_memory as job_memory
from providers.attempts import listen_to_attempts as listen_to_attempts
from providers.attempts import notify_attempt as notify_attempt
from providers.attempts import preflight as preflight
from providers.attempts import preflight_active as preflight_active
from providers.attempts import preflight_attempts as preflight_attempts
from providers.attempts import remember_timeout as remember_timeout
from providers.attempts import timed_out_in_job as timed_out_in_job

Role = Literal["system", "user", "assistant"]
Outcome = Literal["ok", "error", "skipped"]
#: why a ``skipped`` step's model was passed over, for a caller to act on (its ``detail`` says it to a
#: person): ``"stopped"``, the call's chain ended before it (``LLMConfig.stop_before``); the setup:
#: ``"key_unset"`` (its key variable), ``"not_built"`` (no provider for it); a failure:
#: ``"circuit_open"`` (or its probe in flight), ``"timed_out"`` (earlier in the same job); the job's
#: budget: ``"over_budget"``, what this model may write (its own cap, at its price) would pass it
SkipKind = Literal["stopped", "key_unset", "not_built", "circuit_open", "timed_out", "over_budget"]


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
    skip: SkipKind | None = Field(default=None, description="of a skipped step: why, as a caller reads it")
    at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds"))


class LLMConfig(_Frozen):
    """Per-call choices. Unset fields fall back to config (tier, model defaults)."""

    tier: Tier | None = None
    prefer: str | None = Field(
        default=None, description="a family (deepseek, claude, ...) or model name to try first"
    )
    avoid: str | None = Field(
        default=None, description="a family to try last (a review: the drafter's), after every other"
    )
    temperature: float = 0.2
    max_tokens: int | None = None
    json_schema: dict[str, Any] | None = Field(
        default=None, description="ask for JSON that matches this schema (constrained where supported)"
    )
    step: str = "llm"
    #: ``(family, why)``: the chain ends before its first model of ``family``, traced as skipped
    #: (``TraceStep.skip`` "stopped", detail "not asked: why"): a caller with no use for that model's
    #: answer (auto research quotes its sources rather than keep a local model's report); ``None``:
    #: the whole chain
    stop_before: tuple[str, str] | None = None
    #: the caller's check of an answer: why it cannot be used (a review with no JSON verdict), or
    #: ``None``. An answer it refuses is a failed attempt (billed) and the chain goes on; when no
    #: model gives a usable one, the first refused answer is returned (the caller says it is unusable)
    accept: Callable[[str], str | None] | None = Field(default=None, exclude=True, repr=False)


#: who hears a storage chain's attempts worth a trace step (``listen_to_storage``)
_storage_listener: contextvars.ContextVar[Callable[[TraceStep], None] | None] = contextvars.ContextVar(
    "storage_listener", default=None)


@contextlib.contextmanager
def listen_to_storage(listener: Callable[[TraceStep], None]) -> Iterator[None]:
    """Within this block, a storage chain (``providers.storage.chain``) tells ``listener`` each
    attempt worth a trace step: a store that failed or was passed over, and the one that then
    answered. A single store tells nothing."""
    token = _storage_listener.set(listener)
    try:
        yield
    finally:
        _storage_listener.reset(token)


def notify_storage(step: TraceStep) -> None:
    """Called by storage chains; a no-op when nobody listens."""
    listener = _storage_listener.get()
    if listener is not None:
        listener(step)


class LLMResponse(_Frozen):
    """What a model answered, with the attempts it took to get there.

    Its usage (model, provider, tokens, cost, latency) is that of the attempt that answered:
    build one with ``from_step`` so the two never disagree.
    """

    text: str
    model: str
    provider: str
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    latency_ms: float = 0.0
    finish_reason: str | None = None
    attempts: tuple[TraceStep, ...] = ()

    @classmethod
    def from_step(cls, text: str, step: TraceStep, *, finish_reason: str | None = None) -> LLMResponse:
        """The answer of one call whose trace step is ``step``; the usage is the step's."""
        return cls(
            text=text,
            model=step.model or "",
            provider=step.provider,
            input_tokens=step.input_tokens,
            output_tokens=step.output_tokens,
            cost_usd=step.cost_usd,
            latency_ms=step.latency_ms,
            finish_reason=finish_reason,
            attempts=(step,),
        )


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


@dataclass(frozen=True)
class BatchItem:
    """One image of a batch: the output bytes, or the error that image met."""

    index: int
    data: bytes | None = None
    error: SwarmError | None = None


@dataclass(frozen=True)
class BatchOutcome:
    """``items`` in input order; ``steps``: model skips first, then one step per image."""

    items: list[BatchItem]
    steps: list[TraceStep]


class StoredObject(_Frozen):
    """Metadata of one object in storage."""

    key: str
    size: int
    content_type: str | None = None
    url: str | None = Field(default=None, description="a fetchable URL where the backend has one")
    #: when it was last written (Unix time), where a listing says (retention prunes by it)
    modified: float | None = None


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


# --- optional capabilities ---------------------------------------------------------------------


@runtime_checkable
class Configurable(Protocol):
    """A backend that can say, without a network call, why it cannot be tried at all."""

    def unconfigured_reason(self) -> str | None: ...


@runtime_checkable
class PlansAttempts(Protocol):
    """A model that can say, before a call, what it will send: the ``max_tokens`` really asked for
    (a model that always thinks sends its own cap, not the caller's) and what that costs at its price."""

    def plan_attempt(self, messages: list[Message], config: LLMConfig) -> PlannedAttempt: ...


@runtime_checkable
class PreflightsAttempts(Protocol):
    """An LLM chain that asks the job's preflight (``providers.attempts.preflight``) before each
    model it calls, with that model's plan: a caller that installs one leaves the call's own
    estimate to it (only the chain knows which model it calls, and with what cap)."""

    def preflights_attempts(self) -> bool: ...


@runtime_checkable
class BoundedStorage(Protocol):
    """A store that can refuse an object over a size before reading it: a 800 MiB object given
    as an image ``key`` was read whole (905 MB of memory) only to be refused for its size."""

    async def get_at_most(self, key: str, max_bytes: int) -> bytes:
        """The bytes under ``key``, or ``InputError`` (field ``key``) naming its size when it is
        over ``max_bytes``, before any of it is read."""
        ...


@runtime_checkable
class Warmable(Protocol):
    """A backend that can load its default model (and make its one-off choices) ahead of the
    first job: the RunPod worker calls ``warm`` at start for the kinds ``worker.warm`` lists."""

    async def warm(self) -> None:
        """Load what the first job would load; a job arriving meanwhile waits, never fails."""
        ...


@runtime_checkable
class TracedSearch(SearchProvider, Protocol):
    """A search provider that also reports its attempts (a chain: one step per backend)."""

    async def search_traced(
        self, query: str, max_results: int = 10, *, step: str = "search"
    ) -> tuple[list[SearchResult], list[TraceStep]]: ...


@runtime_checkable
class SelectableSearch(SearchProvider, Protocol):
    """A search provider that can be narrowed to some of its named backends."""

    def only(self, names: Sequence[str]) -> SearchProvider: ...


@runtime_checkable
class DocumentReader(Protocol):
    """Reads the full text of a document it holds locally (the local index)."""

    async def read_document(self, url: str) -> tuple[str, str] | None:
        """``(title, text)`` of the document at ``url``, or ``None`` when it holds none there."""
        ...


@runtime_checkable
class TracedImageProvider(ImageProvider, Protocol):
    """An image provider that also reports its trace steps (model, device, skips, ms)."""

    async def process_traced(
        self, image: bytes, action: ImageAction, config: ImageConfig
    ) -> tuple[bytes, list[TraceStep]]: ...


@runtime_checkable
class BatchImageProvider(ImageProvider, Protocol):
    """An image provider that takes many images in one call, each with its own result."""

    async def process_batch(
        self,
        images: Sequence[bytes],
        action: ImageAction,
        config: ImageConfig,
        *,
        indices: Sequence[int] | None = None,
    ) -> BatchOutcome: ...
