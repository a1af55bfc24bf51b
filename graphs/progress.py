"""Progress events from inside a graph run: one writer for every graph's nodes.

``run_graph`` opens a ``relay`` around the run: ``emit`` hands each event to it through a
context variable (node tasks inherit it), and the relay passes the events on to the job's progress
callback (CLI lines, MCP progress notifications) in order, on one task of the job's event loop,
while the nodes keep running. This costs LangGraph nothing: its own ``custom`` stream mode
would make it start a waiter task on every tick of every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from providers.base import AttemptEvent, AttemptListener

log = logging.getLogger("graphs.progress")

Event = tuple[str, str, "float | None"]
ProgressCallback = Callable[[str, str, "float | None"], Awaitable[None]]

_relay: contextvars.ContextVar[_Relay | None] = contextvars.ContextVar("swarm_progress_relay", default=None)
#: who hears the trace of a job's finished steps as its graph runs (``listen_to_steps``)
StepsListener = Callable[[list[dict[str, Any]]], None]
_steps: contextvars.ContextVar[StepsListener | None] = contextvars.ContextVar("swarm_steps_listener", default=None)


@contextlib.contextmanager
def listen_to_steps(listener: StepsListener) -> Iterator[None]:
    """Within this block, ``listener`` gets the trace of the steps each graph run has finished,
    after every step (``run_graph``: the state it already holds; nothing is read or copied): a
    door that reports progress (the RunPod worker) sends them with it."""
    token = _steps.set(listener)
    try:
        yield
    finally:
        _steps.reset(token)


def publish_steps(trace: list[dict[str, Any]]) -> None:
    """Hand ``trace`` (the finished steps, oldest first) to the listener, if any; it must not keep
    a reference it mutates: a graph's state lists are new objects at every step."""
    listener = _steps.get()
    if listener is not None:
        listener(trace)


def emit(stage: str, message: str, fraction: float | None = None) -> None:
    """Send one progress event; a no-op outside a run that listens (nobody would hear it)."""
    relay = _relay.get()
    if relay is not None:
        relay.put((stage, message, fraction))


class _Relay:
    """Delivers events to ``progress`` in the order they were emitted, one at a time."""

    def __init__(self, progress: ProgressCallback) -> None:
        self.progress = progress
        self.loop = asyncio.get_running_loop()
        self.thread = threading.get_ident()
        self.pending: deque[Event] = deque()
        self.task: asyncio.Task[None] | None = None

    def put(self, event: Event) -> None:
        if threading.get_ident() != self.thread:  # a node's code running on a worker thread
            self.loop.call_soon_threadsafe(self.put, event)
            return
        self.pending.append(event)
        if self.task is None or self.task.done():
            self.task = self.loop.create_task(self._deliver())

    async def _deliver(self) -> None:
        while self.pending:
            await self.progress(*self.pending.popleft())

    async def flush(self) -> None:
        """Wait until every event emitted so far has been delivered."""
        while self.task is not None and not self.task.done():
            await self.task
        if self.task is not None:
            self.task.result()  # a failing progress callback fails the job, as it would inline

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()


@contextlib.asynccontextmanager
async def relay(progress: ProgressCallback | None) -> AsyncIterator[None]:
    """Within this block, ``emit`` reaches ``progress`` (``None``: nobody listens, events are dropped).

    Leaving the block normally waits until every event is delivered; leaving it by an error
    delivers what it can first (the error wins), and a cancellation drops what is pending.
    """
    if progress is None:
        yield
        return
    current = _Relay(progress)
    token = _relay.set(current)
    try:
        yield
    except asyncio.CancelledError:
        current.cancel()
        raise
    except BaseException:
        try:
            await current.flush()
        except Exception as exc:  # the job's own error is the one to report
            log.debug("a progress callback failed after the job failed: %r", exc)
        raise
    else:
        await current.flush()
    finally:
        _relay.reset(token)


def model_progress(stage: str, verb: str) -> AttemptListener:
    """A listener for ``providers.base.listen_to_attempts`` that names the model really being
    called ("drafting with local (skipped: deepseek-v3.1-q8, ...)") and each one that fails."""

    def listener(event: AttemptEvent, model: str, detail: str) -> None:
        if event == "calling":
            emit(stage, f"{verb} with {model}" + (f" ({detail})" if detail else ""))
        else:
            emit(stage, f"{model} failed ({detail}); trying the next model")

    return listener
