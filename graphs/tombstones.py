"""Tombstones of pruned job ids, and what they tell a run of such an id again.

A thread (job) pruned past ``checkpointer.retention_days`` (``graphs.checkpoint.prune_checkpoints``)
leaves a tombstone for ``TOMBSTONE_KEEP_DAYS``: its id, when its last step ran, when it was pruned
and the digest of the input it ran on. A job given that id again finds no checkpoint and runs from
the start: ``pruned_restart`` says it paid for its steps again, unless its input is another one
(the id reused for a new job, which paid for nothing twice). Each store kind keeps its tombstones
in its own way (``_TOMBSTONES``); a table written before tombstones kept the digest gains the
column in place, and its old tombstones (no digest) say what they said before.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any, Protocol

#: how long a pruned job id is remembered, so a run of it again says it started over
TOMBSTONE_KEEP_DAYS = 366.0
#: ``JobContext.extras`` key of the note that a given job id's checkpoints were pruned and it
#: ran again from the start (``graphs.run`` sets it, the dispatcher says it)
PRUNED_RESTART = "pruned_restart"
#: the checkpoint metadata key that records the digest of the job's input (``graphs.run.InputIdentity``)
JOB_INPUT_KEY = "swarm_input"

_TABLE = ("CREATE TABLE IF NOT EXISTS swarm_pruned_threads (thread_id TEXT PRIMARY KEY,"
          " last_step_at DOUBLE PRECISION NOT NULL, pruned_at DOUBLE PRECISION NOT NULL, input_digest TEXT)")
_COLUMNS = "thread_id, last_step_at, pruned_at, input_digest"


@dataclass(frozen=True)
class Tombstone:
    """A pruned thread: its last step and its pruning (Unix times), and its input's digest (None:
    the job recorded none, or its tombstone was written before tombstones kept it)."""

    thread_id: str
    last_step_at: float
    pruned_at: float
    input_digest: str | None = None

    def row(self) -> tuple[str, float, float, str | None]:
        return self.thread_id, self.last_step_at, self.pruned_at, self.input_digest


#: id of each saver ``graphs.checkpoint.open_checkpointer`` holds open -> its store kind
_open_kinds: dict[int, str] = {}
#: id of an open memory saver -> its tombstones by thread id
_memory_tombstones: dict[int, dict[str, Tombstone]] = {}


def track(saver: Any, kind: str) -> None:
    """``saver``, just opened, keeps its tombstones as store ``kind`` does."""
    _open_kinds[id(saver)] = kind


def untrack(saver: Any) -> None:
    """``saver`` closed: its id may be another's next (and a memory saver's tombstones go with it)."""
    _open_kinds.pop(id(saver), None)
    _memory_tombstones.pop(id(saver), None)


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


async def setup_postgres(conn: Any) -> None:
    """Make the tombstone table on a PostgreSQL connection, or give one made before tombstones
    kept the input digest its column (nullable: those tombstones keep saying what they said)."""
    await conn.execute(_TABLE)
    await conn.execute("ALTER TABLE swarm_pruned_threads ADD COLUMN IF NOT EXISTS input_digest TEXT")


class _Tombstones(Protocol):
    """Where a store kind keeps its tombstones."""

    async def record(self, saver: Any, tombstones: list[Tombstone], forget_before: float) -> None:
        """Keep ``tombstones``; forget those pruned before ``forget_before``."""

    async def find(self, saver: Any, thread_id: str) -> Tombstone | None:
        """The tombstone of ``thread_id``, or None."""


class _SqliteTombstones:
    async def record(self, saver: Any, tombstones: list[Tombstone], forget_before: float) -> None:
        import sqlite3

        path = saver.conn.execute("PRAGMA database_list").fetchone()[2]

        def write() -> None:  # on a connection of its own, as the scan: it may wait for the write lock
            with contextlib.closing(sqlite3.connect(path, timeout=saver.busy_timeout_s)) as conn, conn:
                conn.execute(_TABLE)
                if "input_digest" not in {row[1] for row in conn.execute("PRAGMA table_info(swarm_pruned_threads)")}:
                    conn.execute("ALTER TABLE swarm_pruned_threads ADD COLUMN input_digest TEXT")
                conn.executemany(f"INSERT OR REPLACE INTO swarm_pruned_threads ({_COLUMNS}) VALUES (?, ?, ?, ?)",
                                 [t.row() for t in tombstones])
                conn.execute("DELETE FROM swarm_pruned_threads WHERE pruned_at < ?", (forget_before,))

        await asyncio.to_thread(write)

    async def find(self, saver: Any, thread_id: str) -> Tombstone | None:
        import sqlite3

        try:  # one indexed read on the loop's connection (WAL: a read never waits for a writer)
            cursor = saver.conn.execute("SELECT * FROM swarm_pruned_threads WHERE thread_id = ?", (thread_id,))
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # nothing was ever pruned from this store
                return None
            raise
        row = cursor.fetchone()
        if row is None:
            return None
        # by name: a table nothing was pruned into since the digest came has no such column yet
        found = dict(zip([column[0] for column in cursor.description], row, strict=True))
        return Tombstone(thread_id, float(found["last_step_at"]), float(found["pruned_at"]), found.get("input_digest"))


class _PostgresTombstones:  # the table is made (and upgraded) when the store opens (``setup_postgres``)
    async def record(self, saver: Any, tombstones: list[Tombstone], forget_before: float) -> None:
        async with saver.conn.connection() as conn:
            async with conn.cursor() as cursor:
                await cursor.executemany(
                    f"INSERT INTO swarm_pruned_threads ({_COLUMNS}) VALUES (%s, %s, %s, %s) ON CONFLICT (thread_id)"
                    " DO UPDATE SET last_step_at = EXCLUDED.last_step_at, pruned_at = EXCLUDED.pruned_at,"
                    " input_digest = EXCLUDED.input_digest", [t.row() for t in tombstones])
            await conn.execute("DELETE FROM swarm_pruned_threads WHERE pruned_at < %s", (forget_before,))

    async def find(self, saver: Any, thread_id: str) -> Tombstone | None:
        async with saver.conn.connection() as conn:
            cursor = await conn.execute(
                "SELECT last_step_at, pruned_at, input_digest FROM swarm_pruned_threads WHERE thread_id = %s",
                (thread_id,))
            row = await cursor.fetchone()
        if row is None:
            return None
        return Tombstone(thread_id, float(row["last_step_at"]), float(row["pruned_at"]), row["input_digest"])


class _MemoryTombstones:
    async def record(self, saver: Any, tombstones: list[Tombstone], forget_before: float) -> None:
        kept = _memory_tombstones.setdefault(id(saver), {})
        kept.update({t.thread_id: t for t in tombstones})
        for thread_id in [t.thread_id for t in kept.values() if t.pruned_at < forget_before]:
            del kept[thread_id]

    async def find(self, saver: Any, thread_id: str) -> Tombstone | None:
        return _memory_tombstones.get(id(saver), {}).get(thread_id)


_TOMBSTONES: dict[str, _Tombstones] = {"sqlite": _SqliteTombstones(), "postgres": _PostgresTombstones(),
                                       "memory": _MemoryTombstones()}


async def record_tombstones(saver: Any, kind: str, tombstones: list[Tombstone], forget_before: float) -> None:
    """Keep ``tombstones`` in ``saver``'s store, of ``kind``; forget those pruned before ``forget_before``."""
    await _TOMBSTONES[kind].record(saver, tombstones, forget_before)


async def find_tombstone(saver: Any, thread_id: str, *, now: float | None = None) -> Tombstone | None:
    """The tombstone of ``thread_id`` within its ``TOMBSTONE_KEEP_DAYS``; None when it has none,
    or ``saver`` is none ``open_checkpointer`` opened (no tombstones to read)."""
    kind = _open_kinds.get(id(saver))
    if kind is None or (found := await _TOMBSTONES[kind].find(saver, thread_id)) is None:
        return None
    now = time.time() if now is None else now
    # a prune forgets tombstones past their time only when it finds threads to prune: one a
    # quiet store kept longer counts as forgotten
    return None if found.pruned_at < now - TOMBSTONE_KEEP_DAYS * 86400 else found


async def pruned_restart(saver: Any, thread_id: str, retention_days: float, *, input_digest: str | None = None,
                         now: float | None = None) -> str | None:
    """What to tell the caller of a job id with no checkpoint whose checkpoints were pruned (it
    runs again from the start, every step paid for again); None when they were not, or when
    ``input_digest`` (the new job's input) is not the pruned job's: the id was reused for a new job.
    A tombstone without a digest (written before they kept one) says it, as it did."""
    now = time.time() if now is None else now
    found = await find_tombstone(saver, thread_id, now=now)
    if found is None:
        return None
    if input_digest and found.input_digest and input_digest != found.input_digest:
        return None
    age = elapsed_words(now - found.last_step_at)
    return (f"job {thread_id}'s checkpoints were pruned (checkpointer.retention_days={retention_days:g}; its last"
            f" step ran {age} ago), so it ran again from the start: the steps it had finished were run,"
            " and paid for, again")
