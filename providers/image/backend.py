"""What the image backends share: one action each, run in a worker thread, traced.

A backend subclasses ``SingleActionBackend``, names its ``action`` and ``name`` and implements
``_process_sync``; ``process`` (the ``ImageProvider`` contract), ``process_traced`` (the
``TracedImageProvider`` capability) and ``warm`` (``Warmable``: ``_warm_sync`` in a worker
thread; a backend with nothing to load ahead keeps the no-op) are this one implementation.

Work that runs in steps (the upscaler's tiles) calls ``checkpoint(done, total)`` between them: it
stops the work once the caller of ``process_traced`` was cancelled (a worker thread cannot be
killed, and it holds the model's lock), and reports progress to the listener a caller set with
``listen_to_progress``. Work that is not counting steps says what it does with ``report(text)``
(measuring the precision, waiting for the model): the same caller hears it as a message. A job
waiting for the model another job holds (``ReportingLock``, ``acquire_reporting``) reports the
wait, and stops waiting once cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar, TypeVar

import anyio

from core.errors import InputError
from providers.base import ImageAction, ImageConfig, TraceStep

T = TypeVar("T")
#: ``(done, total)``: ``done`` of the ``total`` steps of one image's work are finished
ProgressListener = Callable[[int, int], None]
#: one line of what the work is doing between steps ("measuring ...", "waiting for ...")
MessageListener = Callable[[str], None]
_progress_listener: contextvars.ContextVar[ProgressListener | None] = contextvars.ContextVar(
    "image_progress_listener", default=None
)
_message_listener: contextvars.ContextVar[MessageListener | None] = contextvars.ContextVar(
    "image_message_listener", default=None
)
#: how often a job waiting for the model says so again
WAIT_REPORT_EVERY_S = 5.0
#: set when the coroutine waiting for this worker thread's result was cancelled
_stop: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar("image_work_stop", default=None)


class WorkCancelled(Exception):
    """Raised in the worker thread by ``checkpoint`` once its caller was cancelled; nobody awaits
    the result any more, so this only unwinds the work (and releases its locks)."""


@contextlib.contextmanager
def listen_to_progress(listener: ProgressListener | None = None, messages: MessageListener | None = None
                       ) -> Iterator[None]:
    """Within this block, image work tells ``listener`` how far it is (``done`` of ``total``
    steps) and ``messages`` what it is doing between steps. Both are called on the backend's
    worker thread: they must be thread-safe (``graphs.progress.emit`` is)."""
    token = _progress_listener.set(listener)
    message_token = _message_listener.set(messages)
    try:
        yield
    finally:
        _message_listener.reset(message_token)
        _progress_listener.reset(token)


def report(message: str) -> None:
    """Tell the message listener, if any, what the work is doing ("measuring ...")."""
    listener = _message_listener.get()
    if listener is not None:
        listener(message)


def _raise_if_cancelled(where: str) -> None:
    stop = _stop.get()
    if stop is not None and stop.is_set():
        raise WorkCancelled(f"cancelled {where}")


def acquire_reporting(acquire: Callable[[float], bool], what: Callable[[], str], *, first_after_s: float = 0.0,
                      every_s: float | None = None, clock: Callable[[], float] = time.monotonic) -> float:
    """Take a lock or a slot with ``acquire(timeout)``; while it is held elsewhere, ``report``
    "waiting for <what()> to finish (N s)" once ``first_after_s`` has passed and every
    ``every_s`` (``WAIT_REPORT_EVERY_S``) after that, and raise ``WorkCancelled`` once the
    caller is cancelled. Returns the seconds waited (0.0 when it was free)."""
    if acquire(0):
        return 0.0
    every = WAIT_REPORT_EVERY_S if every_s is None else every_s
    started = clock()
    next_report = started + first_after_s
    while True:
        _raise_if_cancelled(f"while waiting for {what()}")
        now = clock()
        if now >= next_report:
            report(f"waiting for {what()} to finish ({now - started:.0f} s)")
            next_report = now + every
        if acquire(max(0.01, min(0.25, next_report - now))):
            return clock() - started


class ReportingLock:
    """One holder at a time (the model and the cores it runs on); a job that waits for it says
    what it waits for (``acquire_reporting``): what ``hold(doing)`` named."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._doing = "another job"

    @contextlib.contextmanager
    def hold(self, doing: str) -> Iterator[float]:
        """Hold the lock; ``doing`` (e.g. "another upscale") is what waiters report they wait
        for. Yields the seconds this caller waited."""
        waited = acquire_reporting(lambda timeout: self._lock.acquire(timeout=timeout), lambda: self._doing,
                                   clock=self._clock)
        self._doing = doing
        try:
            yield waited
        finally:
            self._lock.release()


def checkpoint(done: int, total: int) -> None:
    """Between two steps of the work, on its worker thread: raise ``WorkCancelled`` when the
    caller was cancelled, else report ``done`` of ``total`` to the progress listener, if any."""
    stop = _stop.get()
    if stop is not None and stop.is_set():
        raise WorkCancelled(f"cancelled after step {done} of {total}")
    listener = _progress_listener.get()
    if listener is not None:
        listener(done, total)


async def run_stoppable(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a worker thread that stops at its next ``checkpoint`` (or ``stop_flag``
    test) once the awaiting coroutine is cancelled: a thread cannot be killed, and it holds the
    model's lock and the cores."""
    stop = threading.Event()
    token = _stop.set(stop)  # the worker thread runs in a copy of this context: it sees ``stop``
    try:
        return await anyio.to_thread.run_sync(fn, *args)
    except asyncio.CancelledError:
        stop.set()
        raise
    finally:
        _stop.reset(token)


def stop_flag() -> threading.Event | None:
    """In ``run_stoppable``'s worker thread: the event set when its caller was cancelled, for
    threads of its own (a batch's pool) that do not inherit the context."""
    return _stop.get()


class SingleActionBackend:
    """Base of an ``ImageProvider`` that does exactly one ``ImageAction``."""

    #: the one action this backend does
    action: ClassVar[ImageAction]
    #: the provider name in errors and trace steps
    name: ClassVar[str]

    def check_action(self, action: ImageAction | str) -> None:
        """Raise ``InputError`` (field ``action``) unless ``action`` is this backend's."""
        if ImageAction(action) is not self.action:
            raise InputError(f"{self.name} only does {self.action}, not {action}", field="action")

    async def process(self, image: bytes, action: ImageAction, config: ImageConfig) -> bytes:
        """Run the action on ``image`` (PNG/JPEG/WebP/GIF/BMP bytes); returns encoded bytes."""
        data, _ = await self.process_traced(image, action, config)
        return data

    async def process_traced(
        self, image: bytes, action: ImageAction, config: ImageConfig
    ) -> tuple[bytes, list[TraceStep]]:
        """Like ``process``, plus its trace steps (one per model tried, skips and failures included)."""
        self.check_action(action)
        return await run_stoppable(self._process_sync, image, config)

    async def warm(self) -> None:
        """Load the configured model and make its one-off choices (``Warmable``), off the event
        loop, so the first job finds them done; a job arriving meanwhile waits on the same lock."""
        await anyio.to_thread.run_sync(self._warm_sync)

    def _warm_sync(self) -> None:
        """The warm-up, in a worker thread; nothing by default."""

    def _process_sync(self, image: bytes, config: ImageConfig) -> tuple[bytes, list[TraceStep]]:
        """The work, in a worker thread: encoded output and its trace steps."""
        raise NotImplementedError
