"""The storage fallback chain: ``providers.storage.default``, then each of ``fallback_chain``.

A write goes to the first store that takes it: a store that fails (unreachable, denied, throttled,
timed out: any ``ProviderError``) counts against its circuit and the next is tried, so an S3 outage
at the moment a finished image is written leaves the image on the next store (the local folder)
instead of losing it. A store whose circuit is open is passed over at once. Bad input (a key that
leads outside the store, ``overwrite`` off on an existing key) is the caller's and is raised as is.

A create-only write (``overwrite=False``) does not fall over: while the default cannot say whether
the key exists, another store taking it would break the promise; the error lists the attempts.

Reads follow the writes: a key this chain wrote is read from the store that took it; any other
key is looked for in chain order. A key no store holds is the usual "no object" ``InputError``,
unless a store that could hold it did not answer: then ``AllProvidersFailed`` lists every attempt,
because the object may well exist there. What this chain remembers is its own (this process,
this config version): a key rewritten on the fallback while an older copy sits on the default (a
job id run again during an outage) is read from the default by a process started later, as
``list`` names the default's copy. Image keys are per job and step, so that older copy is the same
job's own earlier output.

A store the config names as a fallback that cannot be built (``s3`` without a bucket) is passed over
with the reason (``Unbuilt``), so the default store still serves every job.

Every attempt that did not simply succeed on the first store is told to a listener
(``providers.base.listen_to_storage``) as a trace step, which the image graph adds to the job's trace: a job whose
image went to the fallback says so, with why the first store failed.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from core.errors import AllProvidersFailed, InputError, ProviderError
from core.redact import redact
from providers.base import BoundedStorage, StorageProvider, StoredObject, TraceStep, notify_storage

if TYPE_CHECKING:
    from providers.circuit import CircuitBoard

T = TypeVar("T")
#: keys this chain wrote, remembered with the store that took them (the newest so many)
PLACED_KEYS = 10_000


def _missing(exc: InputError) -> bool:
    """Whether ``exc`` says the object is not in that store (every store says "no object ...")."""
    said = str(exc)
    return (said.removeprefix(f"{exc.field}: ") if exc.field else said).startswith("no object ")


class _Unanswered(Exception):
    """A store that did not answer (failed, or passed over): its step says why."""

    def __init__(self, step: TraceStep) -> None:
        super().__init__(step.detail)
        self.step = step


class StorageChain:
    """A ``StorageProvider`` over several stores, tried in order.

    Args:
        stores: ``(name, store)`` pairs in the order to try them (the default first).
        circuits: a circuit board shared across config versions (None: no circuit breaking).
    """

    def __init__(self, stores: Sequence[tuple[str, StorageProvider]], *, circuits: CircuitBoard | None = None) -> None:
        if not stores:
            raise ValueError("a storage chain needs at least one store")
        self.stores = list(stores)
        self.circuits = circuits
        self.name = "+".join(name for name, _ in self.stores)
        self._placed: OrderedDict[str, str] = OrderedDict()

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.stores]

    def holder(self, key: str) -> str | None:
        """The store this chain last wrote ``key`` to, if it remembers one."""
        return self._placed.get(key)

    def _place(self, key: str, name: str) -> None:
        self._placed[key] = name
        self._placed.move_to_end(key)
        while len(self._placed) > PLACED_KEYS:
            self._placed.popitem(last=False)

    def _order(self, key: str | None) -> list[tuple[str, StorageProvider]]:
        """The stores to ask for ``key``: the one that took it first, where known."""
        placed = self._placed.get(key) if key is not None else None
        if placed is None:
            return self.stores
        return sorted(self.stores, key=lambda pair: pair[0] != placed)

    async def _attempt(self, name: str, store: StorageProvider, op: str,
                       call: Callable[[StorageProvider], Awaitable[T]]) -> T:
        """``call`` on ``store``; raises ``_Unanswered`` when the store is passed over or fails
        (``ProviderError``), ``InputError`` as the store raised it."""
        started = time.perf_counter()
        blocked = self.circuits.acquire(f"storage:{name}") if self.circuits is not None else None
        if blocked:
            raise _Unanswered(_step(name, op, started, "skipped", detail=blocked))
        try:
            answer = await call(store)
        except ProviderError as exc:
            if self.circuits is not None:
                self.circuits.record_failure(f"storage:{name}", type(exc).__name__)
            raise _Unanswered(_step(name, op, started, "error", error=exc)) from None
        except InputError:  # the store answered ("no object", a bad key): it works
            if self.circuits is not None:
                self.circuits.record_success(f"storage:{name}")
            raise
        except BaseException:
            if self.circuits is not None:
                self.circuits.release(f"storage:{name}")
            raise
        if self.circuits is not None:
            self.circuits.record_success(f"storage:{name}")
        return answer

    # --- writes -----------------------------------------------------------------------------

    async def put(self, key: str, data: bytes, content_type: str | None = None, *, overwrite: bool = True) -> StoredObject:
        """Store ``data`` in the first store that takes it."""
        failed: list[TraceStep] = []
        for name, store in self.stores:
            started = time.perf_counter()
            try:
                stored = await self._attempt(name, store, "put", lambda s: s.put(
                    key, data, content_type, overwrite=overwrite))
            except _Unanswered as exc:
                failed.append(exc.step)
                if not overwrite:  # create-only: another store cannot tell whether this one holds it
                    break
                continue
            self._place(key, name)
            if failed:
                for step in failed:
                    notify_storage(step)
                notify_storage(_step(name, "put", started, "ok", detail=f"{key} stored on {name}"
                            f" ({', '.join(s.provider for s in failed)} did not take it)"))
            return stored
        raise AllProvidersFailed("storage", failed)  # the attempts are the error's

    async def delete(self, key: str) -> None:
        """Remove ``key`` from every store (a missing key is not an error). Raises when a store
        that may hold it did not answer: the object may still be there."""
        failed: list[TraceStep] = []
        for name, store in self.stores:
            try:
                await self._attempt(name, store, "delete", lambda s: s.delete(key))
            except _Unanswered as exc:
                failed.append(exc.step)
        if failed:
            raise AllProvidersFailed("storage", failed)
        self._placed.pop(key, None)

    # --- reads ------------------------------------------------------------------------------

    async def _find(self, key: str, op: str, read: Callable[[StorageProvider], Awaitable[T]]) -> T:
        """``read`` on the first store that holds ``key``."""
        failed: list[TraceStep] = []
        missing: InputError | None = None
        for name, store in self._order(key):
            started = time.perf_counter()
            try:
                answer = await self._attempt(name, store, op, read)
            except _Unanswered as exc:
                failed.append(exc.step)
                continue
            except InputError as exc:
                if not _missing(exc):
                    raise
                missing = missing or exc
                continue
            if failed:
                for step in failed:
                    notify_storage(step)
                notify_storage(_step(name, op, started, "ok", detail=f"{key} read from {name}"))
            return answer
        if failed:  # a store that did not answer may hold it (the attempts are the error's)
            raise AllProvidersFailed("storage", failed)
        assert missing is not None
        raise missing

    async def get(self, key: str) -> bytes:
        return await self._find(key, "get", lambda s: s.get(key))

    async def get_at_most(self, key: str, max_bytes: int) -> bytes:
        """``get``, each store refusing an object over ``max_bytes`` before reading it where it can."""

        async def read(store: StorageProvider) -> bytes:
            if isinstance(store, BoundedStorage):
                return await store.get_at_most(key, max_bytes)
            return await store.get(key)

        return await self._find(key, "get", read)

    async def exists(self, key: str) -> bool:
        async def held(store: StorageProvider) -> bool:
            if not await store.exists(key):
                raise InputError(f"no object {key!r} in storage", field="key")
            return True

        try:
            return await self._find(key, "exists", held)
        except InputError as exc:
            if _missing(exc):
                return False
            raise

    async def url(self, key: str, expires_s: int = 3600) -> str:
        """The url of ``key`` in the store that holds it (the first store's when none does)."""

        async def link(store: StorageProvider) -> str:
            if not await store.exists(key):
                raise InputError(f"no object {key!r} in storage", field="key")
            return await store.url(key, expires_s)

        placed = self._placed.get(key)
        if placed is not None:
            for name, store in self.stores:
                if name == placed:
                    with contextlib.suppress(ProviderError):
                        return await store.url(key, expires_s)
        try:
            return await self._find(key, "url", link)
        except InputError as exc:
            if not _missing(exc):
                raise
            return await self.stores[0][1].url(key, expires_s)

    async def list(self, prefix: str = "") -> list[StoredObject]:
        """Objects under ``prefix`` in every store that answers (a key in two stores once, from
        the first). Raises ``AllProvidersFailed`` only when no store answers."""
        answers = await asyncio.gather(*(self._listed(name, store, prefix) for name, store in self.stores))
        if all(isinstance(a, TraceStep) for a in answers):
            raise AllProvidersFailed("storage", [a for a in answers if isinstance(a, TraceStep)])
        seen: dict[str, StoredObject] = {}
        for answer in answers:
            if isinstance(answer, TraceStep):
                notify_storage(answer)
                continue
            for obj in answer:
                seen.setdefault(obj.key, obj)
        return [seen[key] for key in sorted(seen)]

    async def _listed(self, name: str, store: StorageProvider, prefix: str) -> builtins.list[StoredObject] | TraceStep:
        try:
            return await self._attempt(name, store, "list", lambda s: s.list(prefix))
        except _Unanswered as exc:
            return exc.step


def _step(name: str, op: str, started: float, outcome: str, *, error: Exception | None = None,
          detail: str = "") -> TraceStep:
    return TraceStep(
        step=f"storage.{op}",
        kind="storage",
        provider=name,
        latency_ms=(time.perf_counter() - started) * 1000,
        outcome=outcome,  # type: ignore[arg-type]
        error_class=type(error).__name__ if error else None,
        detail=redact(detail or (str(error) if error else ""))[:300] or None,
    )


class Unbuilt:
    """A fallback store the config names but that could not be built (its settings are missing):
    every call is ``ProviderUnavailable`` with the reason, which the chain traces and passes over."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason

    def _fail(self) -> ProviderError:
        from core.errors import ProviderUnavailable

        return ProviderUnavailable(self.name, f"not configured: {self.reason}")

    async def put(self, key: str, data: bytes, content_type: str | None = None, *, overwrite: bool = True) -> StoredObject:
        raise self._fail()

    async def get(self, key: str) -> bytes:
        raise self._fail()

    async def exists(self, key: str) -> bool:
        raise self._fail()

    async def delete(self, key: str) -> None:
        raise self._fail()

    async def list(self, prefix: str = "") -> builtins.list[StoredObject]:
        raise self._fail()

    async def url(self, key: str, expires_s: int = 3600) -> str:
        raise self._fail()
