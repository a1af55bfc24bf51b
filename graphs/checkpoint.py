"""Checkpointers chosen by config: SQLite (default), Postgres, or memory (tests).

``open_checkpointer(config)`` yields a ready LangGraph saver. The first open of each store in a
process (and again once a day in a long-lived one) prunes threads whose newest checkpoint is
older than ``checkpointer.retention_days``: without that, checkpoint tables grow forever.

A pruned job id leaves a tombstone (its id, when its last step ran, when it was pruned) for
``TOMBSTONE_KEEP_DAYS``: a job given that id again finds no checkpoint and runs from the start,
paying for every step again, and ``graphs.run`` reads the tombstone to say so instead of silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

from core.config import SwarmConfig
from core.errors import ConfigError
from core.redact import redact, register_dsn

log = logging.getLogger("swarm.checkpoint")

POSTGRES_INSTALL = "pip install langgraph-checkpoint-postgres==3.2.0 'psycopg[binary]==3.3.9'"
PRUNE_INTERVAL_S = 24 * 3600.0
POSTGRES_POOL_SIZE = 8
POSTGRES_CONNECT_TIMEOUT_S = 10.0
# 100-ns intervals between the UUID epoch (1582-10-15) and the Unix epoch.
_UUID_EPOCH_OFFSET = 0x01B21DD213814000

#: how long a pruned job id is remembered, so a run of it again says it started over
TOMBSTONE_KEEP_DAYS = 366.0
#: ``JobContext.extras`` key of the note that a given job id's checkpoints were pruned and it
#: ran again from the start (``graphs.run`` sets it, the dispatcher says it)
PRUNED_RESTART = "pruned_restart"

#: store identity -> monotonic time of its last prune in this process
_last_pruned: dict[str, float] = {}
_clock = time.monotonic
#: id of each saver ``open_checkpointer`` holds open -> its store kind (where its tombstones are)
_open_kinds: dict[int, str] = {}
#: id of an open memory saver -> its tombstones: thread id -> (last step, pruned at), Unix time
_memory_tombstones: dict[int, dict[str, tuple[float, float]]] = {}


def checkpoint_id_floor(unix_s: float) -> str:
    """The smallest LangGraph checkpoint id (a UUIDv6) that can be minted at ``unix_s``.

    LangGraph's checkpoint ids are UUIDv6: their text sorts by creation time, so comparing
    ids with this floor finds checkpoints older than a moment with plain SQL on any store.
    """
    stamp = max(0, int(unix_s * 10_000_000) + _UUID_EPOCH_OFFSET)  # before 1582: no id is older
    value = ((stamp >> 12) & 0xFFFFFFFFFFFF) << 80 | 0x6 << 76 | (stamp & 0x0FFF) << 64 | 0b10 << 62
    return str(uuid.UUID(int=value))


def checkpoint_id_time(checkpoint_id: str) -> float:
    """The Unix time a LangGraph checkpoint id (a UUIDv6) was minted at (``checkpoint_id_floor``'s inverse)."""
    value = uuid.UUID(checkpoint_id).int
    stamp = (value >> 80) << 12 | (value >> 64) & 0x0FFF
    return (stamp - _UUID_EPOCH_OFFSET) / 10_000_000


def elapsed_words(seconds: float) -> str:
    """An age as a person reads it: "25 minutes", "5.5 hours", "9.0 days". In days alone, a
    fractional ``retention_days`` (0.01: 14 minutes) made "0.0 days ago" of any age past it."""
    seconds = max(0.0, seconds)
    if seconds < 2 * 3600:
        minutes = round(seconds / 60)
        return f"{minutes} minute{'' if minutes == 1 else 's'}"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} hours"
    return f"{seconds / 86400:.1f} days"


# --- openers -------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _sqlite(config: SwarmConfig) -> AsyncIterator[Any]:
    from graphs.sqlite_saver import LoopSqliteSaver

    path = Path(config.checkpointer.path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Upstream's schema and SQL, run on the loop's thread (no aiosqlite hop): see sqlite_saver.
    with LoopSqliteSaver.open(str(path)) as saver:
        yield saver


@contextlib.asynccontextmanager
async def _memory(config: SwarmConfig) -> AsyncIterator[Any]:
    from langgraph.checkpoint.memory import InMemorySaver

    yield InMemorySaver()


@contextlib.asynccontextmanager
async def _postgres(config: SwarmConfig) -> AsyncIterator[Any]:
    dsn = config.checkpointer.dsn
    if not dsn:
        raise ConfigError(
            "postgres needs a dsn: set SWARM_CHECKPOINTER_DSN (the shipped dsn: \"${SWARM_CHECKPOINTER_DSN}\"),"
            " e.g. postgresql://USER:PASSWORD@HOST:5432/DB",
            key="checkpointer.dsn",
        )
    register_dsn(dsn)  # a DSN may carry a password: never echo it, nor a piece of it
    try:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
        from psycopg.rows import dict_row
        from psycopg_pool import AsyncConnectionPool, PoolTimeout
    except ModuleNotFoundError:
        raise ConfigError(
            f"the postgres checkpointer is not installed: {POSTGRES_INSTALL}", key="checkpointer.kind"
        ) from None
    pool = AsyncConnectionPool(
        dsn,
        min_size=1,
        max_size=POSTGRES_POOL_SIZE,
        open=False,
        # a connection PostgreSQL dropped (a restart) is replaced before a job gets it, and a job
        # waits for a connection as long as the first one may take, not psycopg_pool's 30 s
        check=AsyncConnectionPool.check_connection,
        timeout=POSTGRES_CONNECT_TIMEOUT_S,
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
    )
    try:
        await pool.open(wait=True, timeout=POSTGRES_CONNECT_TIMEOUT_S)
    except PoolTimeout:
        await pool.close()
        raise ConfigError(
            f"cannot connect to PostgreSQL within {POSTGRES_CONNECT_TIMEOUT_S:.0f} s ({await _why_not(dsn)});"
            " check that the server runs and the dsn's host, port, user and database",
            key="checkpointer.dsn",
        ) from None
    from graphs.job_lock import SharedJobLocks

    locks = SharedJobLocks(dsn)
    try:
        saver = AsyncPostgresSaver(conn=pool)  # type: ignore[arg-type]  # the pool's rows are dicts (row_factory)
        await saver.setup()
        saver.swarm_job_locks = locks  # type: ignore[attr-defined]  # job ids held across machines (graphs.run)
        async with pool.connection() as conn:
            await conn.execute(_TOMBSTONES_TABLE)
        yield saver
    finally:
        try:
            await locks.aclose()
        finally:
            await pool.close()


MALFORMED_DSN = ("the dsn is malformed (postgresql://USER:PASSWORD@HOST:PORT/DB; a password with '%', '@', '/'"
                 " or ':' must be percent-encoded)")


def dsn_problem(dsn: str) -> str | None:
    """What is wrong with ``dsn`` before any connection (a driver would quote the wrong part, often
    a piece of the password), or None."""
    netloc = dsn.split("://", 1)[1].split("/", 1)[0] if "://" in dsn else ""
    if netloc.count("@") > 1:
        return "the dsn is malformed: its password holds an '@'; write it as %40"
    return None


async def _why_not(dsn: str) -> str:
    """Why ``dsn`` does not connect (the pool only says it timed out), from one attempt: psycopg's
    words for a server that refuses, a database that is missing, a host that does not resolve; a
    malformed dsn is said without them, as they quote the part that is wrong (often the password)."""
    import psycopg

    if (problem := dsn_problem(dsn)) is not None:
        return problem
    try:
        connection = await psycopg.AsyncConnection.connect(dsn, connect_timeout=max(1, int(POSTGRES_CONNECT_TIMEOUT_S)))
    except psycopg.ProgrammingError:
        return MALFORMED_DSN
    except Exception as exc:  # noqa: BLE001 - any other reason is the answer
        return redact(" ".join(str(exc).split()))[:300] or type(exc).__name__
    await connection.close()
    return "it connects now; it did not in time"


_OPENERS = {"sqlite": _sqlite, "memory": _memory, "postgres": _postgres}


@contextlib.asynccontextmanager
async def _open(config: SwarmConfig, *, prune: bool) -> AsyncIterator[Any]:
    kind = config.checkpointer.kind
    async with _OPENERS[kind](config) as saver:
        _open_kinds[id(saver)] = kind
        try:
            if prune:
                await _prune_if_due(config, saver)
            yield saver
        finally:
            _open_kinds.pop(id(saver), None)
            _memory_tombstones.pop(id(saver), None)


def open_checkpointer(config: SwarmConfig, *, prune: bool = True) -> contextlib.AbstractAsyncContextManager[Any]:
    """An async context manager yielding the configured LangGraph saver.

    With ``prune`` (the default) the first open of a store in this process, and any open a day
    or more after the last prune, deletes threads past ``checkpointer.retention_days``.
    """
    return _open(config, prune=prune)


# --- pruning -------------------------------------------------------------------------------


def _store_key(config: SwarmConfig) -> str:
    section = config.checkpointer
    where = section.dsn if section.kind == "postgres" else str(Path(section.path).expanduser())
    return f"{section.kind}:{where}"


async def _prune_if_due(config: SwarmConfig, saver: Any) -> None:
    key = _store_key(config)
    last = _last_pruned.get(key)
    now = _clock()
    if last is not None and now - last < PRUNE_INTERVAL_S:
        return
    _last_pruned[key] = now
    try:
        await prune_checkpoints(config, saver)
    except Exception as exc:  # pruning is housekeeping: a failure must not stop jobs, but is said
        log.warning("checkpoint pruning failed (%s); will retry in a day", redact(repr(exc)))


async def _old_threads_sqlite(saver: Any, floor: str) -> list[tuple[str, str]]:
    # A scan of every checkpoint: run it on a connection of its own in a thread, so jobs on the
    # saver's connection go on meanwhile (WAL readers never block the writer).
    import sqlite3

    path = saver.conn.execute("PRAGMA database_list").fetchone()[2]
    sql = "SELECT thread_id, MAX(checkpoint_id) FROM checkpoints GROUP BY thread_id HAVING MAX(checkpoint_id) < ?"

    def scan() -> list[tuple[str, str]]:
        with contextlib.closing(sqlite3.connect(path, timeout=saver.busy_timeout_s)) as conn:
            return [(str(row[0]), str(row[1])) for row in conn.execute(sql, (floor,))]

    return await asyncio.to_thread(scan)


async def _old_threads_postgres(saver: Any, floor: str) -> list[tuple[str, str]]:
    sql = ("SELECT thread_id, MAX(checkpoint_id) AS newest FROM checkpoints GROUP BY thread_id"
           " HAVING MAX(checkpoint_id) < %s")
    async with saver.conn.connection() as conn:
        cursor = await conn.execute(sql, (floor,))
        return [(str(row["thread_id"]), str(row["newest"])) for row in await cursor.fetchall()]


async def _old_threads_memory(saver: Any, floor: str) -> list[tuple[str, str]]:
    newest = {str(thread_id): max((cid for ns in namespaces.values() for cid in ns), default="")
              for thread_id, namespaces in saver.storage.items()}
    return [(thread_id, cid) for thread_id, cid in newest.items() if cid < floor]


_OLD_THREADS = {"sqlite": _old_threads_sqlite, "postgres": _old_threads_postgres, "memory": _old_threads_memory}


async def prune_checkpoints(config: SwarmConfig, saver: Any = None, *, now: float | None = None) -> list[str]:
    """Delete every thread (job) whose newest checkpoint is older than the retention, leaving a
    tombstone of each (``pruned_restart`` reads them).

    Args:
        config: its ``checkpointer`` section chooses the store and ``retention_days``.
        saver: an open saver of that store; ``None`` opens one (without re-pruning) for the call.
        now: Unix time to measure age from (tests move it forward).

    Returns:
        The thread ids that were deleted.
    """
    if saver is None:
        async with open_checkpointer(config, prune=False) as opened:
            return await prune_checkpoints(config, opened, now=now)
    kind = config.checkpointer.kind
    now = time.time() if now is None else now
    floor = checkpoint_id_floor(now - config.checkpointer.retention_days * 86400)
    threads = await _OLD_THREADS[kind](saver, floor)
    if not threads:
        return []
    # tombstones first: one left by a delete that then failed is never read (its checkpoints stand)
    await _TOMBSTONES[kind].record(saver, [(t, checkpoint_id_time(cid), now) for t, cid in threads],
                                   now - TOMBSTONE_KEEP_DAYS * 86400)
    for thread_id, _ in threads:
        await saver.adelete_thread(thread_id)
    log.info("pruned %d checkpoint threads older than %g days", len(threads), config.checkpointer.retention_days)
    return [thread_id for thread_id, _ in threads]


# --- tombstones of pruned job ids ------------------------------------------------------------

_TOMBSTONES_TABLE = ("CREATE TABLE IF NOT EXISTS swarm_pruned_threads (thread_id TEXT PRIMARY KEY,"
                     " last_step_at DOUBLE PRECISION NOT NULL, pruned_at DOUBLE PRECISION NOT NULL)")
Tombstone = tuple[str, float, float]  # thread id, its last step, when it was pruned (Unix time)


class _Tombstones(Protocol):
    """Where a store kind keeps its tombstones."""

    async def record(self, saver: Any, tombstones: list[Tombstone], forget_before: float) -> None:
        """Keep ``tombstones``; forget those pruned before ``forget_before``."""

    async def find(self, saver: Any, thread_id: str) -> tuple[float, float] | None:
        """(last step, pruned at) of ``thread_id``, or None."""


class _SqliteTombstones:
    async def record(self, saver: Any, tombstones: list[Tombstone], forget_before: float) -> None:
        import sqlite3

        path = saver.conn.execute("PRAGMA database_list").fetchone()[2]

        def write() -> None:  # on a connection of its own, as the scan: it may wait for the write lock
            with contextlib.closing(sqlite3.connect(path, timeout=saver.busy_timeout_s)) as conn, conn:
                conn.execute(_TOMBSTONES_TABLE)
                conn.executemany("INSERT OR REPLACE INTO swarm_pruned_threads VALUES (?, ?, ?)", tombstones)
                conn.execute("DELETE FROM swarm_pruned_threads WHERE pruned_at < ?", (forget_before,))

        await asyncio.to_thread(write)

    async def find(self, saver: Any, thread_id: str) -> tuple[float, float] | None:
        import sqlite3

        try:  # one indexed read on the loop's connection (WAL: a read never waits for a writer)
            row = saver.conn.execute("SELECT last_step_at, pruned_at FROM swarm_pruned_threads WHERE thread_id = ?",
                                     (thread_id,)).fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # nothing was ever pruned from this store
                return None
            raise
        return (float(row[0]), float(row[1])) if row else None


class _PostgresTombstones:  # the table is made when the store opens (``_postgres``)
    async def record(self, saver: Any, tombstones: list[Tombstone], forget_before: float) -> None:
        async with saver.conn.connection() as conn:
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    "INSERT INTO swarm_pruned_threads VALUES (%s, %s, %s) ON CONFLICT (thread_id)"
                    " DO UPDATE SET last_step_at = EXCLUDED.last_step_at, pruned_at = EXCLUDED.pruned_at", tombstones)
            await conn.execute("DELETE FROM swarm_pruned_threads WHERE pruned_at < %s", (forget_before,))

    async def find(self, saver: Any, thread_id: str) -> tuple[float, float] | None:
        async with saver.conn.connection() as conn:
            cursor = await conn.execute(
                "SELECT last_step_at, pruned_at FROM swarm_pruned_threads WHERE thread_id = %s", (thread_id,))
            row = await cursor.fetchone()
        return (float(row["last_step_at"]), float(row["pruned_at"])) if row else None


class _MemoryTombstones:
    async def record(self, saver: Any, tombstones: list[Tombstone], forget_before: float) -> None:
        kept = _memory_tombstones.setdefault(id(saver), {})
        kept.update({thread_id: (last, pruned) for thread_id, last, pruned in tombstones})
        for thread_id in [t for t, (_, pruned) in kept.items() if pruned < forget_before]:
            del kept[thread_id]

    async def find(self, saver: Any, thread_id: str) -> tuple[float, float] | None:
        return _memory_tombstones.get(id(saver), {}).get(thread_id)


_TOMBSTONES: dict[str, _Tombstones] = {"sqlite": _SqliteTombstones(), "postgres": _PostgresTombstones(),
                                       "memory": _MemoryTombstones()}


async def pruned_restart(saver: Any, thread_id: str, retention_days: float, *, now: float | None = None) -> str | None:
    """What to tell the caller of a job id with no checkpoint whose checkpoints were pruned (it
    runs again from the start, every step paid for again); None when they were not, or
    ``saver`` is none ``open_checkpointer`` opened (no tombstones to read)."""
    kind = _open_kinds.get(id(saver))
    if kind is None or (found := await _TOMBSTONES[kind].find(saver, thread_id)) is None:
        return None
    now = time.time() if now is None else now
    last_step_at, pruned_at = found
    # a prune forgets tombstones past their time only when it finds threads to prune: one a
    # quiet store kept longer counts as forgotten
    if pruned_at < now - TOMBSTONE_KEEP_DAYS * 86400:
        return None
    age = elapsed_words(now - last_step_at)
    return (f"job {thread_id}'s checkpoints were pruned (checkpointer.retention_days={retention_days:g}; its last"
            f" step ran {age} ago), so it ran again from the start: the steps it had finished were run,"
            " and paid for, again")
