"""What a provider chain tells, and asks, the job it runs in, through job-scoped hooks.

Each hook is a context variable a caller sets around its calls (a job, a graph node) and a chain
(the LLM router) consults as it goes; outside such a block each is a no-op:

- ``listen_to_attempts`` / ``notify_attempt``: which model an LLM chain calls or saw fail (progress);
- ``preflight_attempts`` / ``preflight``: asked before each model an LLM chain calls, with what that
  call will send (``PlannedAttempt``): why it would pass the job's budget, or ``None``;
- ``job_memory`` / ``timed_out_in_job`` / ``remember_timeout``: the models that timed out in the job;
- ``shared_work`` / ``said_as_shared``: work (or a record) that serves every job, run in a context of
  its own, outside any job's: no hook above, no job id, no MCP client's log (the application
  layer's ``swarm.logs.own_work``, which providers may not import; an empty context is the same).

``providers.base`` re-exports them all; this module imports nothing of the project (``base``
imports it), so a call's attempts are read through ``Billed``, which ``TraceStep`` is.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

T = TypeVar("T")

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


@dataclass(frozen=True, slots=True)
class PlannedAttempt:
    """What one model's call will send, as a budget reads it before the call is made."""

    model: str
    #: the input's tokens, estimated (about four characters a token) from the messages it sends
    input_tokens: int
    #: the ``max_tokens`` it sends (a model that always thinks: its own cap, not the caller's); 0: none
    max_tokens: int
    #: what ``input_tokens`` cost at the model's price in config; ``None``: it has no price
    input_cost_usd: float | None = None
    #: what ``max_tokens`` of output cost at that price; ``None``: it has no price
    output_cost_usd: float | None = None


class Billed(Protocol):
    """What a preflight reads of each earlier attempt of a call (a ``TraceStep``): what it was billed."""

    @property
    def input_tokens(self) -> int: ...

    @property
    def output_tokens(self) -> int: ...

    @property
    def cost_usd(self) -> float | None: ...


#: asked before a chain calls each model of one call: ``(planned attempt, the call's attempts so
#: far)`` -> why that model would take the job past its budget (the chain passes it over, traced as
#: skipped, ``TraceStep.skip`` "over_budget"), or ``None`` (ask it). Set by ``graphs.budget``.
AttemptPreflight = Callable[[PlannedAttempt, Sequence[Billed]], str | None]
_preflight: contextvars.ContextVar[AttemptPreflight | None] = contextvars.ContextVar("attempt_preflight", default=None)


@contextlib.contextmanager
def preflight_attempts(check: AttemptPreflight) -> Iterator[None]:
    """Within this block, an LLM chain asks ``check`` before each model it calls."""
    token = _preflight.set(check)
    try:
        yield
    finally:
        _preflight.reset(token)


def preflight_active() -> bool:
    """Whether a chain must plan its attempts (``preflight``): planning one may read a model list."""
    return _preflight.get() is not None


def preflight(plan: PlannedAttempt, attempts: Sequence[Billed]) -> str | None:
    """Called by LLM chains before asking ``plan.model``: why not to (its budget), else ``None``."""
    check = _preflight.get()
    return None if check is None else check(plan, attempts)


#: the models that gave no answer in time earlier in the running job, each with the reason said
#: when it is passed over (``job_memory``; ``None`` outside a job)
_timed_out: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("job_timed_out", default=None)


@contextlib.contextmanager
def job_memory() -> Iterator[dict[str, str]]:
    """Within this block (one job), a model that times out is remembered, so that the job's later
    steps go to the next model of their chain at once instead of waiting out the same timeout again
    (a hung provider cost a delegation 60 s at the draft and 60 s more at the review)."""
    token = _timed_out.set({})
    try:
        yield _timed_out.get() or {}
    finally:
        _timed_out.reset(token)


def timed_out_in_job(model: str) -> str | None:
    """Why ``model`` is not asked again in the running job (it timed out in it), else ``None``."""
    memory = _timed_out.get()
    return None if memory is None else memory.get(model)


def remember_timeout(model: str, reason: str) -> None:
    """Record that ``model`` timed out in the running job (a no-op outside one)."""
    memory = _timed_out.get()
    if memory is not None:
        memory.setdefault(model, reason)


async def shared_work(work: Coroutine[Any, Any, T]) -> T:
    """Await ``work`` as what serves every job (starting a shared server, syncing the index every job
    searches), not as the work of the job that happens to ask first: its records reach the
    operator's log only. Its error is raised to the caller, and a cancel of the caller cancels it."""
    return await asyncio.get_running_loop().create_task(work, context=contextvars.Context())


def said_as_shared(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` (a logger's method, a blocking sync) outside any job's context, as ``shared_work``."""
    return contextvars.Context().run(fn, *args)
