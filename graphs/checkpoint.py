"""Checkpointers chosen by config: SQLite (default), Postgres, or memory (tests).

``open_checkpointer(config)`` yields a ready LangGraph saver. The first open of each store in a
process (and again once a day in a long-lived one) prunes threads whose newest checkpoint is
older than ``checkpointer.retention_days``: without that, checkpoint tables grow forever.

A pruned job id leaves a tombstone (``graphs.tombstones``: its id, when its last step ran, when it
was pruned, its input's digest) for ``TOMBSTONE_KEEP_DAYS``: a job given that id again finds no
checkpoint and runs from the start, paying for every step again, and ``graphs.run`` reads the
tombstone to say so instead of silently. ``last_step`` says when a job's last step ran, from its
newest checkpoint or its tombstone: what an unfinished job's expiry is judged by (``mcp_server.jobresume``).

A PostgreSQL store's first connection may take ``POSTGRES_CONNECT_TIMEOUT_S``; why it does not is
said as soon as it is known (``graphs.postgres_reach``): a server that is down in about
``REFUSED_GRACE_S``, a restart waited for unless its port was closed longer than that with no word
before (said as down: start again once it is up).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

from core.config import SwarmConfig
from core.errors import ConfigError
from core.redact import redact, register_dsn
from graphs import tombstones

# their home before graphs.postgres_reach: swarm.threads imports them from here
from graphs.postgres_reach import MALFORMED_DSN as MALFORMED_DSN
from graphs.postgres_reach import dsn_problem as dsn_problem
from graphs.postgres_reach import unreachable, why_not
from graphs.tombstones import JOB_INPUT_KEY, TOMBSTONE_KEEP_DAYS, Tombstone, find_tombstone, record_tombstones

# their home before graphs.tombstones: the dispatcher and others import them from here
from graphs.tombstones import PRUNED_RESTART as PRUNED_RESTART
from graphs.tombstones import pruned_restart as pruned_restart

log = logging.getLogger("swarm.checkpoint")

POSTGRES_INSTALL = "pip install langgraph-checkpoint-postgres==3.2.0 'psycopg[binary]==3.3.9'"
PRUNE_INTERVAL_S = 24 * 3600.0
POSTGRES_POOL_SIZE = 8
#: seconds a PostgreSQL connection may take to open: the pool's, its first connection's, the job locks'
POSTGRES_CONNECT_TIMEOUT_S = 10.0
#: a port that refuses (nothing listens, yet) is asked again for this long, then said
REFUSED_GRACE_S = 2.0
# 100-ns intervals between the UUID epoch (1582-10-15) and the Unix epoch.
_UUID_EPOCH_OFFSET = 0x01B21DD213814000

#: store identity -> monotonic time of its last prune in this process
_last_pruned: dict[str, float] = {}
_clock = time.monotonic


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
        from psycopg_pool import AsyncConnectionPool
    except ModuleNotFoundError:
        raise ConfigError(
            f"the postgres checkpointer is not installed: {POSTGRES_INSTALL}", key="checkpointer.kind"
        ) from None
    # said at once: the pool would retry it for 10 s, logging the driver's words each time, and they
    # quote the part that is wrong, often a piece of the password ("failed to resolve host 'rd-pw@db'")
    if (problem := dsn_problem(dsn)) is not None:
        raise ConfigError(problem, key="checkpointer.dsn")
    pool = AsyncConnectionPool(
        dsn,
        min_size=1,
        max_size=POSTGRES_POOL_SIZE,
        open=False,
        # a connection PostgreSQL dropped (a restart) is replaced before a job gets it, and a job
        # waits for a connection as long as the first one may take, not psycopg_pool's 30 s
        check=AsyncConnectionPool.check_connection,
        timeout=POSTGRES_CONNECT_TIMEOUT_S,
        # a lost connection is retried with backoff (1, 2, 4 ... s) for reconnect_timeout, 300 s by
        # default: after an outage of 30 s the next try came 30 s after the server was back, and
        # jobs meanwhile failed as "unreachable"; given up sooner, the next job's wait connects at once
        reconnect_timeout=POSTGRES_CONNECT_TIMEOUT_S,
        # each attempt too (psycopg's own is 130 s): closing the pool of a server that accepts but
        # does not answer waited 5 s more for the attempt in flight
        kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row,
                "connect_timeout": connect_timeout()},
    )
    try:
        await _open_pool(pool, dsn)
    except BaseException:
        await pool.close()
        raise
    from graphs.job_lock import SharedJobLocks

    locks = SharedJobLocks(dsn, connect_timeout=connect_timeout())
    try:
        saver = AsyncPostgresSaver(conn=pool)  # type: ignore[arg-type]  # the pool's rows are dicts (row_factory)
        await saver.setup()
        saver.swarm_job_locks = locks  # type: ignore[attr-defined]  # job ids held across machines (graphs.run)
        async with pool.connection() as conn:
            await tombstones.setup_postgres(conn)
        yield saver
    finally:
        try:
            await locks.aclose()
        finally:
            await pool.close()


def connect_timeout() -> int:
    """``POSTGRES_CONNECT_TIMEOUT_S`` as psycopg's ``connect_timeout`` takes it: whole seconds, at least 1."""
    return max(1, round(POSTGRES_CONNECT_TIMEOUT_S))


async def _open_pool(pool: Any, dsn: str) -> None:
    """Open ``pool``, its first connection within ``POSTGRES_CONNECT_TIMEOUT_S``. A connection of
    our own beside it says why not as soon as that is known (``why_not``: the pool retried even a
    refused port for its whole timeout, and a job waited 10 s to hear it), with psycopg's words
    where the pool only says it timed out (a server that accepts but does not answer, or a restart
    that outlasts it, keeps its whole timeout, once: the reason was asked after it, as long again)."""
    from psycopg_pool import PoolTimeout

    started = time.monotonic()
    opening = asyncio.ensure_future(pool.open(wait=True, timeout=POSTGRES_CONNECT_TIMEOUT_S))
    asking = asyncio.ensure_future(why_not(dsn, connect_timeout=connect_timeout(), grace_s=REFUSED_GRACE_S,
                                           patience_s=POSTGRES_CONNECT_TIMEOUT_S))
    try:
        await asyncio.wait({opening, asking}, return_when=asyncio.FIRST_COMPLETED)
        if not opening.done() and (why := asking.result()) is not None:
            raise unreachable(why, started, POSTGRES_CONNECT_TIMEOUT_S)
        try:
            await opening
        except PoolTimeout:
            await asyncio.wait({asking}, timeout=1.0)  # it began with the pool's: its answer is due
            why = asking.result() if asking.done() else "no answer"
            raise unreachable(why or "it connects now; it did not in time", started,
                              POSTGRES_CONNECT_TIMEOUT_S) from None
    finally:
        for task in (opening, asking):
            task.cancel()
        await asyncio.gather(opening, asking, return_exceptions=True)


_OPENERS = {"sqlite": _sqlite, "memory": _memory, "postgres": _postgres}


@contextlib.asynccontextmanager
async def _open(config: SwarmConfig, *, prune: bool) -> AsyncIterator[Any]:
    kind = config.checkpointer.kind
    async with _OPENERS[kind](config) as saver:
        tombstones.track(saver, kind)
        try:
            if prune:
                await _prune_if_due(config, saver)
            yield saver
        finally:
            tombstones.untrack(saver)


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


#: a thread past the retention: (its id, its newest checkpoint's id, the digest of its input)
_OldThread = tuple[str, str, "str | None"]


def _input_digest(metadata: Any) -> str | None:
    """The input digest a checkpoint's metadata (a dict, or SQLite's JSON text) records, if any."""
    if isinstance(metadata, str | bytes):
        try:
            metadata = json.loads(metadata)
        except ValueError:
            return None
    digest = metadata.get(JOB_INPUT_KEY) if isinstance(metadata, dict) else None
    return digest if isinstance(digest, str) else None


async def _old_threads_sqlite(saver: Any, floor: str) -> list[_OldThread]:
    # A scan of every checkpoint: run it on a connection of its own in a thread, so jobs on the
    # saver's connection go on meanwhile (WAL readers never block the writer). A bare column
    # beside the one MAX() of a query is SQLite's value from the row holding it: the newest's metadata.
    import sqlite3

    path = saver.conn.execute("PRAGMA database_list").fetchone()[2]
    sql = ("SELECT thread_id, newest, metadata FROM (SELECT thread_id, MAX(checkpoint_id) AS newest, metadata"
           " FROM checkpoints GROUP BY thread_id) WHERE newest < ?")

    def scan() -> list[_OldThread]:
        with contextlib.closing(sqlite3.connect(path, timeout=saver.busy_timeout_s)) as conn:
            return [(str(row[0]), str(row[1]), _input_digest(row[2])) for row in conn.execute(sql, (floor,))]

    return await asyncio.to_thread(scan)


async def _old_threads_postgres(saver: Any, floor: str) -> list[_OldThread]:
    sql = ("SELECT c.thread_id, c.checkpoint_id AS newest, c.metadata ->> %s::text AS digest FROM checkpoints c JOIN"
           " (SELECT thread_id, MAX(checkpoint_id) AS newest FROM checkpoints GROUP BY thread_id"
           " HAVING MAX(checkpoint_id) < %s) old ON c.thread_id = old.thread_id AND c.checkpoint_id = old.newest")
    async with saver.conn.connection() as conn:
        cursor = await conn.execute(sql, (JOB_INPUT_KEY, floor))
        rows = await cursor.fetchall()
    # one per thread: a checkpoint id stored in two namespaces of it would be two rows
    return list({str(row["thread_id"]): (str(row["thread_id"]), str(row["newest"]), row["digest"])
                 for row in rows}.values())


async def _old_threads_memory(saver: Any, floor: str) -> list[_OldThread]:
    old = []
    for thread_id, namespaces in saver.storage.items():
        newest = max(((cid, ns) for ns, ids in namespaces.items() for cid in ids), default=None)
        if newest is not None and newest[0] < floor:
            metadata = saver.serde.loads_typed(namespaces[newest[1]][newest[0]][1])
            old.append((str(thread_id), newest[0], _input_digest(metadata)))
    return old


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
    await record_tombstones(saver, kind, [Tombstone(t, checkpoint_id_time(cid), now, digest) for t, cid, digest in threads],
                            now - TOMBSTONE_KEEP_DAYS * 86400)
    for thread_id, _, _ in threads:
        await saver.adelete_thread(thread_id)
    log.info("pruned %d checkpoint threads older than %g days", len(threads), config.checkpointer.retention_days)
    return [thread_id for thread_id, _, _ in threads]


class LastStep(NamedTuple):
    """When a job's last step ran (Unix time), and whether its checkpoints were pruned since."""

    at: float
    pruned: bool


async def last_step(saver: Any, thread_id: str) -> LastStep | None:
    """When ``thread_id``'s last step ran: its newest checkpoint's time, or, its checkpoints pruned,
    its tombstone's (``pruned``); None when it has neither (no step of it finished, or its
    tombstone is forgotten). One read of ``saver``, and of its tombstones when it has no checkpoint."""
    stored = await saver.aget_tuple({"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}})
    if stored is not None:
        return LastStep(checkpoint_id_time(stored.config["configurable"]["checkpoint_id"]), pruned=False)
    found = await find_tombstone(saver, thread_id)
    return None if found is None else LastStep(found.last_step_at, pruned=True)
