"""A SQLite checkpoint saver that runs its SQL on the event loop's own thread.

langgraph-checkpoint-sqlite's ``AsyncSqliteSaver`` sends every read and write through one
aiosqlite worker thread behind one ``asyncio.Lock``: each of a job's ~9 checkpoint operations
costs a queue put, a thread switch and a loop wake-up, and with hundreds of concurrent jobs they
all wait in one line for that thread. Yet the SQL itself is cheap here: in WAL mode with
``synchronous=NORMAL`` a commit writes the WAL without an fsync (~30 us on this machine) and an
indexed read is ~5 us, less than the hop to the thread costs.

``LoopSqliteSaver`` is upstream's synchronous ``SqliteSaver`` (same schema, same SQL, same
serialisation) with async methods that call it directly. Durability is unchanged: ``aput`` and
``aput_writes`` return only after their own ``COMMIT``, so a checkpoint that ``aput`` returned
for survives a killed process, exactly as with the upstream savers.

The loop must never wait on another process's write lock, so the connection's busy timeout is
zero and a ``database is locked`` answer is retried after an ``asyncio.sleep`` (every statement
is an idempotent ``INSERT OR REPLACE``, ``INSERT OR IGNORE`` or ``DELETE``), up to
``busy_timeout_s`` in all, which is sqlite3's own default wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    DeltaChannelHistory,
    SerializerProtocol,
)
from langgraph.checkpoint.sqlite import SqliteSaver

T = TypeVar("T")

#: total time one operation keeps retrying while another process holds the write lock
BUSY_TIMEOUT_S = 5.0
_FIRST_RETRY_S = 0.001
_MAX_RETRY_S = 0.05


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "database is locked" in text or "database is busy" in text


class LoopSqliteSaver(SqliteSaver):
    """``SqliteSaver`` with async methods that run its SQL inline on the calling thread.

    The sync methods stay usable from other threads (upstream's ``threading.Lock`` guards the
    connection), so one saver serves a graph's ``ainvoke`` and ``invoke`` alike.

    Args:
        conn: a ``sqlite3`` connection opened with ``check_same_thread=False`` and ``timeout=0``
            (``LoopSqliteSaver.open`` does both).
        serde: the serializer; upstream's default when ``None``.
        busy_timeout_s: how long one operation retries while another process writes.
    """

    def __init__(
        self, conn: sqlite3.Connection, *, serde: SerializerProtocol | None = None, busy_timeout_s: float = BUSY_TIMEOUT_S
    ) -> None:
        super().__init__(conn, serde=serde)
        self.busy_timeout_s = busy_timeout_s

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: str, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> Iterator[LoopSqliteSaver]:
        """Open ``path`` (created if missing) in WAL mode with ``synchronous=NORMAL`` and set it up.

        WAL + NORMAL: a commit survives a killed process (the crash we guard against); only an OS
        crash may lose the last commits. FULL would fsync on every graph step.
        """
        conn = sqlite3.connect(path, check_same_thread=False, timeout=0)
        try:
            saver = cls(conn, busy_timeout_s=busy_timeout_s)
            saver._retry_sync(saver.setup)  # switches the file to WAL
            conn.execute("PRAGMA synchronous=NORMAL")
            yield saver
        finally:
            conn.close()

    # --- retry while another process holds the lock -------------------------------------

    def _attempt(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                with self.lock:
                    if self.conn.in_transaction:  # a failed write must not leave one open
                        self.conn.rollback()
            raise

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args)`` now; on a busy database, again after a growing ``asyncio.sleep``."""
        delay = _FIRST_RETRY_S
        deadline = None
        while True:
            try:
                return self._attempt(fn, *args, **kwargs)
            except sqlite3.OperationalError as exc:
                now = time.monotonic()
                deadline = deadline if deadline is not None else now + self.busy_timeout_s
                if not _is_busy(exc) or now >= deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_RETRY_S)

    def _retry_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """The blocking twin of ``_run``, for opening (no loop to yield to yet)."""
        deadline = time.monotonic() + self.busy_timeout_s
        delay = _FIRST_RETRY_S
        while True:
            try:
                return self._attempt(fn, *args)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, _MAX_RETRY_S)

    # --- the async interface LangGraph calls ---------------------------------------------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._run(self.get_tuple, config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        # Read in full before yielding: upstream's generator holds the connection lock between
        # items, and a consumer that awaits between them would stall every other job.
        def read() -> list[CheckpointTuple]:
            return list(self.list(config, filter=filter, before=before, limit=limit))

        for item in await self._run(read):
            yield item

    async def aput(
        self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata, new_versions: ChannelVersions
    ) -> RunnableConfig:
        return await self._run(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        await self._run(self.put_writes, config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._run(self.delete_thread, thread_id)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return await self._run(self.get_delta_channel_history, config=config, channels=channels)
