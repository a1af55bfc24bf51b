"""A SQLite checkpoint saver that runs its SQL on the event loop's own thread, group-committed.

langgraph-checkpoint-sqlite's ``AsyncSqliteSaver`` sends every read and write through one
aiosqlite worker thread behind one ``asyncio.Lock``: each of a job's ~9 checkpoint operations
costs a queue put, a thread switch and a loop wake-up, and with hundreds of concurrent jobs they
all wait in one line for that thread. Yet the SQL itself is cheap here: in WAL mode with
``synchronous=NORMAL`` a commit writes the WAL without an fsync (~30-80 us on this machine) and
an indexed read is ~5 us, less than the hop to the thread costs.

``LoopSqliteSaver`` is upstream's synchronous ``SqliteSaver`` (same schema, same SQL, same
serialisation: its own ``put``/``put_writes``/``delete_thread`` build the statements) with
async methods that run them on the loop's thread:

- reads run at once;
- writes are group-committed: the statements of every write issued in one loop iteration run in
  one transaction at the start of the next, and each ``aput``/``aput_writes`` returns only after
  that ``COMMIT``. Durability is unchanged: a checkpoint that ``aput`` returned for survives a
  killed process, exactly as with the upstream savers; a batch costs one commit, not one per job.
- a task's pending writes (``aput_writes``) wait up to ``WRITES_LINGER_S`` for the checkpoint
  LangGraph puts right after them at the end of the step, and commit in its transaction: one
  commit per step instead of two (9 -> 5 per delegation job). The window in which a killed
  process loses a finished task's writes is unchanged (the step's checkpoint follows at once);
  a write no checkpoint follows (a failed step) commits alone when the linger ends.
- WAL checkpoints (copying the log back into the database file, with an fsync) run on a thread of
  their own, never inside a job's commit: SQLite's automatic one fell on every ~1000th page
  written and cost ~40-80 us per commit on average here (``wal_autocheckpoint=0`` on the loop's
  connection; a passive checkpoint every ``WAL_CHECKPOINT_COMMITS`` commits on a second one).

The loop must never wait on another process's write lock, so the connection's busy timeout is
zero and a ``database is locked`` answer is retried after a growing pause (every statement is
an idempotent ``INSERT OR REPLACE``, ``INSERT OR IGNORE`` or ``DELETE``), up to
``busy_timeout_s`` per operation, which is sqlite3's own default wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
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
#: how long a task's writes wait for the step's checkpoint to share its commit
WRITES_LINGER_S = 0.002
#: commits between two background WAL checkpoints (a job commits ~5 times; ~4 pages each)
WAL_CHECKPOINT_COMMITS = 200
_FIRST_RETRY_S = 0.001
_MAX_RETRY_S = 0.05


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc)
    return "database is locked" in text or "database is busy" in text


Statement = tuple[str, list[Any]]  # SQL and its parameter rows (for executemany)


class _Recorder:
    """Stands in for a cursor: keeps the statements upstream's write methods would run."""

    def __init__(self) -> None:
        self.statements: list[Statement] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.statements.append((sql, [params]))

    def executemany(self, sql: str, rows: Any) -> None:
        self.statements.append((sql, list(rows)))


@dataclass
class _Write:
    statements: list[Statement]
    future: asyncio.Future[None]
    deadline: float


class LoopSqliteSaver(SqliteSaver):
    """``SqliteSaver`` whose async methods run its SQL on the loop's thread, writes group-committed.

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
        self._local = threading.local()  # .recorder while a write method is being recorded
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[_Write] = []
        self._flush_handle: asyncio.Handle | None = None
        self._lingering = False  # the flush handle is a linger timer, not a call_soon
        self._retry_s = _FIRST_RETRY_S
        #: commits and statements run by group commit (for benches and tests)
        self.commits = 0
        self.writes = 0
        self.wal: _WalCheckpointer | None = None  # set by ``open``: checkpoints the WAL off the loop

    @classmethod
    @contextlib.contextmanager
    def open(cls, path: str, *, busy_timeout_s: float = BUSY_TIMEOUT_S) -> Iterator[LoopSqliteSaver]:
        """Open ``path`` (created if missing) in WAL mode with ``synchronous=NORMAL`` and set it up.

        WAL + NORMAL: a commit survives a killed process (the crash we guard against); only an OS
        crash may lose the last commits. FULL would fsync on every graph step.
        """
        conn = sqlite3.connect(path, check_same_thread=False, timeout=0)
        saver = cls(conn, busy_timeout_s=busy_timeout_s)
        try:
            saver._retry_sync(saver.setup)  # switches the file to WAL
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA wal_autocheckpoint=0")  # _WalCheckpointer does it, off the loop
            saver.wal = _WalCheckpointer(path)
            yield saver
        finally:
            saver._drain()
            if saver.wal is not None:
                saver.wal.close()
            conn.close()

    @contextlib.contextmanager
    def cursor(self, transaction: bool = True) -> Iterator[Any]:
        recorder = getattr(self._local, "recorder", None)
        if recorder is not None and transaction:
            yield recorder
            return
        with super().cursor(transaction) as cur:
            yield cur

    def _record(self, fn: Callable[..., T], *args: Any) -> tuple[list[Statement], T]:
        """The statements upstream's write method ``fn`` would run, and what it returns."""
        self._local.recorder = recorder = _Recorder()
        try:
            result = fn(*args)
        finally:
            self._local.recorder = None
        return recorder.statements, result

    # --- group commit --------------------------------------------------------------------

    async def _write(self, fn: Callable[..., T], *args: Any, linger: bool = False) -> T:
        """Run upstream's write method ``fn`` in the next group commit; return once committed.

        ``linger``: the commit may wait up to ``WRITES_LINGER_S`` for a write without it.
        """
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        if loop is not self._loop:  # a second loop: no batching across loops, write alone
            return await self._run(fn, *args)
        statements, result = self._record(fn, *args)
        write = _Write(statements, loop.create_future(), time.monotonic() + self.busy_timeout_s)
        self._pending.append(write)
        if self._flush_handle is None:
            self._lingering = linger
            self._flush_handle = loop.call_later(WRITES_LINGER_S, self._flush) if linger else loop.call_soon(self._flush)
        elif self._lingering and not linger:  # the checkpoint the writes waited for: commit both now
            self._flush_handle.cancel()
            self._lingering = False
            self._flush_handle = loop.call_soon(self._flush)
        await write.future
        return result

    def _flush(self, schedule: bool = True) -> None:
        """Run every pending write in one transaction; settle their futures."""
        self._flush_handle = None
        self._lingering = False
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            self._commit(batch)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                self._one_by_one(batch)
                return
            self._retry_later(batch, exc, schedule)
            return
        except Exception:  # isolate the bad write: every other one still commits
            self._one_by_one(batch)
            return
        self._retry_s = _FIRST_RETRY_S
        for write in batch:
            _settle(write.future, None)

    def _commit(self, batch: list[_Write]) -> None:
        with self.lock:
            try:
                for write in batch:
                    for sql, rows in write.statements:
                        self.conn.executemany(sql, rows)
                self.conn.commit()
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.rollback()
                raise
        self.commits += 1
        self.writes += len(batch)
        if self.wal is not None and self.commits % WAL_CHECKPOINT_COMMITS == 0:
            self.wal.start()

    def _one_by_one(self, batch: list[_Write]) -> None:
        """After a batch failed for another reason than a lock: each write alone, errors to its own caller."""
        retry: list[_Write] = []
        for write in batch:
            try:
                self._commit([write])
            except sqlite3.OperationalError as exc:
                if _is_busy(exc):
                    retry.append(write)
                else:
                    _settle(write.future, exc)
            except Exception as exc:  # handed to the caller that issued the write
                _settle(write.future, exc)
            else:
                _settle(write.future, None)
        if retry:
            self._retry_later(retry, sqlite3.OperationalError("database is locked"), True)

    def _retry_later(self, batch: list[_Write], exc: Exception, schedule: bool) -> None:
        now = time.monotonic()
        for write in batch:
            if now >= write.deadline:
                _settle(write.future, exc)
        self._pending[:0] = [w for w in batch if now < w.deadline]
        if schedule and self._pending and self._flush_handle is None and self._loop is not None:
            self._flush_handle = self._loop.call_later(self._retry_s, self._flush)
            self._retry_s = min(self._retry_s * 2, _MAX_RETRY_S)

    def _drain(self) -> None:
        """On close: commit what is still pending (blocking; no loop may be left to wait on)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        while self._pending:
            self._flush(schedule=False)
            if self._pending:
                time.sleep(_MAX_RETRY_S)

    # --- direct calls, retried while another process holds the lock ----------------------

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
        return await self._write(self.put, config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        await self._write(self.put_writes, config, writes, task_id, task_path, linger=True)

    async def adelete_thread(self, thread_id: str) -> None:
        await self._write(self.delete_thread, thread_id)

    async def aget_delta_channel_history(
        self, *, config: RunnableConfig, channels: Sequence[str]
    ) -> Mapping[str, DeltaChannelHistory]:
        return await self._run(self.get_delta_channel_history, config=config, channels=channels)


def _settle(future: asyncio.Future[None], outcome: BaseException | None) -> None:
    if future.done():  # its caller was cancelled; the write itself still ran
        return
    if outcome is None:
        future.set_result(None)
    else:
        future.set_exception(outcome)


class _WalCheckpointer:
    """Passive WAL checkpoints of one database file, each on a short-lived thread.

    A passive checkpoint never waits for readers or writers (other processes included), so jobs
    keep committing meanwhile; sqlite3 releases the GIL while it copies and syncs. Closing the
    last connection checkpoints whatever is left, as SQLite always does.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.runs = 0
        self.failures = 0
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start a checkpoint unless one is still running."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._checkpoint, name="sqlite-wal-checkpoint", daemon=True)
        self._thread.start()

    def _checkpoint(self) -> None:
        try:
            with contextlib.closing(sqlite3.connect(self.path, timeout=0)) as conn:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self.runs += 1
        except sqlite3.Error:  # a busy or locked file: the next run (or the close) catches up
            self.failures += 1

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join()
