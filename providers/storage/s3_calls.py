"""How one S3 call runs: within one deadline, its retries included, on S3's own worker threads.

``Budget`` is an operation's deadline and what its requests met; botocore's events (``watch``) count
its attempts and send no retry past the deadline.

boto3 blocks, so each call runs in a worker thread, one of ``THREADS`` that S3 has to itself (per
event loop), never of anyio's default limiter: those 40 are shared by the whole process, and a
hung endpoint held them all until each call's deadline. A call answered at its deadline is
abandoned, and its thread goes on waiting on the store until its socket timeout: it keeps its slot
until it returns, so a hung store holds at most ``THREADS`` threads, and a call that finds them all
held says so when its time runs out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
from anyio.lowlevel import RunVar, current_token

T = TypeVar("T")
#: worker threads of S3's own (per event loop): a hung store holds at most these
THREADS = 16
#: what a store says when it asks us to slow down (with HTTP 503)
THROTTLED = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "429", "TooManyRequests"}


class Budget:
    """One operation's deadline and what its requests met, shared with the worker thread running it."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.started = time.monotonic()
        self.deadline = self.started + timeout_s
        self.attempts = 0
        self.last = ""  # what the newest failed attempt met other than silence ("HTTP 503 SlowDown")
        self.throttled = False  # whether that was the store asking us to slow down
        self.no_thread = ""  # why the call never got a worker thread, where it did not

    def said(self) -> str:
        return f"{self.attempts} attempt{'' if self.attempts == 1 else 's'} in {time.monotonic() - self.started:.1f} s"


class OutOfTime(Exception):
    """A retry botocore would have sent past the operation's deadline: not sent (not retryable itself)."""


class _CallerLeft(Exception):
    """A call whose thread started after its caller had stopped waiting: not run (and never seen)."""


#: the budget of the operation this worker thread runs (botocore's events carry no context of ours)
_running = threading.local()


def _before_send(**_: Any) -> None:
    """Each request of an operation: counted, and a retry past its deadline is not sent."""
    budget: Budget | None = getattr(_running, "budget", None)
    if budget is None:
        return
    if budget.attempts and time.monotonic() >= budget.deadline:
        raise OutOfTime
    budget.attempts += 1


def _needs_retry(response: Any = None, caught_exception: BaseException | None = None, **_: Any) -> None:
    """What each failed attempt met other than silence, for the error said when the time runs out."""
    from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

    budget: Budget | None = getattr(_running, "budget", None)
    if budget is None or isinstance(caught_exception, ConnectTimeoutError | ReadTimeoutError | OutOfTime):
        return
    if caught_exception is not None:
        budget.last, budget.throttled = type(caught_exception).__name__, False
    elif response is not None and (status := response[0].status_code) >= 300:
        code = str(response[1].get("Error", {}).get("Code", ""))
        budget.last = f"HTTP {status} {code}".strip()
        budget.throttled = bool({code, str(status)} & THROTTLED) or status == 503


def watch(client: Any) -> Any:
    """``client`` with the budget's event handlers registered once (before botocore's retry handler)."""
    client.meta.events.register_first("before-send.s3", _before_send, unique_id="swarm-s3-budget-send")
    client.meta.events.register_first("needs-retry.s3", _needs_retry, unique_id="swarm-s3-budget-retry")
    return client


class _Threads:
    """S3's worker-thread slots in one event loop, and how many are held by abandoned calls."""

    def __init__(self) -> None:
        self.limiter = anyio.CapacityLimiter(THREADS)
        self.abandoned = 0

    def release_abandoned(self, slot: _Slot) -> None:
        """In the event loop, once an abandoned call's thread has returned."""
        self.abandoned -= 1
        self.limiter.release_on_behalf_of(slot)

    def said(self) -> str:
        return (f"all {self.limiter.borrowed_tokens} of S3's worker threads were held by calls that had not"
                f" returned ({self.abandoned} of them past their deadline, still waiting on the store)")


_threads: RunVar[_Threads] = RunVar("swarm_s3_threads")


def _current_threads() -> _Threads:
    try:
        return _threads.get()
    except LookupError:
        threads = _Threads()
        _threads.set(threads)
        return threads


class _Slot:
    """One call's slot: given back by whichever of its caller and its thread is done last."""

    def __init__(self, threads: _Threads) -> None:
        self.threads = threads
        self._token = current_token()
        self._lock = threading.Lock()
        self._running = False
        self._left = False

    def start(self) -> bool:
        """In the thread: whether to run the call (not when its caller has already left)."""
        with self._lock:
            self._running = not self._left
            return self._running

    def returned(self) -> None:
        """In the thread, when the call returns: the slot goes back now if its caller has left."""
        with self._lock:
            self._running = False
            give_back = self._left
        if give_back:
            try:
                self._token.backend_class.run_sync_soon(
                    self.threads.release_abandoned, (self,), self._token.native_token)
            except anyio.RunFinishedError:  # the event loop is closed, and its slots with it
                pass

    def left(self) -> None:
        """In the event loop, when the caller stops waiting (answered or abandoned)."""
        with self._lock:
            self._left = True
            abandoned = self._running
        if abandoned:
            self.threads.abandoned += 1
        else:
            self.threads.limiter.release_on_behalf_of(self)


async def in_thread(body: Callable[[], T], budget: Budget) -> T:
    """``body()`` on one of S3's worker threads; cancelled, it is abandoned (see the module's doc)."""
    threads = _current_threads()
    slot = _Slot(threads)
    try:
        await threads.limiter.acquire_on_behalf_of(slot)
    except anyio.get_cancelled_exc_class():
        budget.no_thread = threads.said()
        raise

    def run() -> T:
        if not slot.start():
            raise _CallerLeft
        _running.budget = budget
        try:
            return body()
        finally:
            _running.budget = None
            slot.returned()

    try:  # the slot above is the admission: a limiter of one token for this call alone
        return await anyio.to_thread.run_sync(run, abandon_on_cancel=True, limiter=anyio.CapacityLimiter(1))
    finally:
        slot.left()
