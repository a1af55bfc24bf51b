"""One run at a time of a given job id on this machine.

Two ``swarm delegate --job-id X`` started together both ran the job from its start (a new job's
first checkpoint is stored only when its first node finished: ``graphs.lean_saver``), paid for it
twice, and with two inputs the last to write won. ``running(job_id)`` takes a lock on one byte of
``<state dir>/running.lock`` (the job id's hash is its offset) for the run; a second run of the
same id, in this process or another, gets ``StillRunning`` at once, naming what to do.

POSIX record locks: the kernel drops them with the process (a killed run leaves none behind),
and they are the process's, so the runs of this process are tracked in a set beside them. Job
ids minted for a job (``JobContext.new_job``) need none.

Machines that share a PostgreSQL checkpoint store share the job ids too: there ``everywhere``
also takes a session advisory lock on the job id (``SharedJobLocks``: one connection of the
process's own, beside the saver's pool), which PostgreSQL drops with the connection (a machine
that dies leaves none behind once its connection is gone).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

from core.errors import StillRunning
from core.paths import state_dir

log = logging.getLogger("graphs.job_lock")

_guard = threading.Lock()
#: lock file path -> its descriptor, open for the process's life (closing any descriptor of the
#: file would drop every lock the process holds on it)
_files: dict[str, int] = {}
#: the job ids running in this process
_here: set[str] = set()


def _fcntl() -> Any:
    """``fcntl``, or ``None`` where there is none (Windows): then runs are kept apart in this process only."""
    try:
        import fcntl
    except ImportError:
        return None
    return fcntl


def _descriptor() -> int | None:
    if _fcntl() is None:
        return None
    path = str(state_dir() / "running.lock")
    with _guard:
        if path not in _files:
            try:
                os.makedirs(os.path.dirname(path), exist_ok=True)
                _files[path] = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError as exc:  # an unwritable state folder is said at the door; runs go unguarded
                log.debug("no job lock file %s: %s", path, exc)
                return None
        return _files[path]


def _refused(job_id: str) -> StillRunning:
    return StillRunning(f"job {job_id!r} is running now in another run on this machine; wait for it to end, then"
                        " give the same job id again to get its result (or give another job id for a new job)")


@contextlib.contextmanager
def running(job_id: str) -> Iterator[None]:
    """Hold ``job_id``'s lock for the block; ``StillRunning`` when another run holds it."""
    with _guard:
        if job_id in _here:
            raise _refused(job_id)
        _here.add(job_id)
    fd = _descriptor()
    fcntl = _fcntl()
    offset = _key(job_id, signed=False)
    try:
        if fd is not None:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset, os.SEEK_SET)
            except OSError:
                raise _refused(job_id) from None
        try:
            yield
        finally:
            if fd is not None:
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, offset, os.SEEK_SET)
    finally:
        with _guard:
            _here.discard(job_id)


#: the advisory lock class of job ids (``pg_try_advisory_lock(class, key)``): "SW"
LOCK_CLASS = 0x5357


def _key(job_id: str, *, signed: bool = True) -> int:
    """A 32-bit int of the job id's hash: its advisory lock key (signed, as PostgreSQL takes it), or
    its byte in the lock file (unsigned)."""
    return int.from_bytes(hashlib.sha256(job_id.encode("utf-8", "surrogatepass")).digest()[:4], "big", signed=signed)


class SharedJobLocks:
    """Job id locks every machine on one PostgreSQL database sees: session advisory locks on one
    connection of this process's own (not the saver's pool: a held lock would keep a pooled
    connection for the whole job). Made by the postgres checkpointer (``graphs.checkpoint``) and
    closed with it; used from the event loop that opened it. ``connect_timeout`` is psycopg's for
    its connection, in whole seconds: the store's own (``graphs.checkpoint.connect_timeout``), as
    psycopg's default of 130 s held a job's lock that long on a server gone silent.

    The connection is the locks' life: a query on it is shielded from a cancelled caller (psycopg
    closes a connection whose query is interrupted, and every job's lock went with it), a
    connection found dead is made again and the locks this process holds are taken again on it
    (one another machine took meanwhile is said in the log: both now run it), and a query that
    fails on a connection that died since its last use is tried once more on a new one (the
    first job after a dropped connection failed as "PostgreSQL is unreachable")."""

    def __init__(self, dsn: str, *, connect_timeout: int) -> None:
        self.dsn = dsn
        self._timeout = connect_timeout
        self._conn: Any = None
        self._lock: Any = None
        self._held: set[str] = set()

    async def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            import psycopg

            self._conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True, connect_timeout=self._timeout)
            for job_id in sorted(self._held):  # what the lost connection held
                if not await self._take(self._conn, job_id):
                    log.warning("job %r lost its shared lock with a dropped PostgreSQL connection, and another"
                                " machine holds it now", job_id)
        return self._conn

    @staticmethod
    async def _take(conn: Any, job_id: str) -> bool:
        cursor = await conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, _key(job_id)))
        row = await cursor.fetchone()
        return bool(row and row[0])

    async def _run(self, work: Any) -> Any:
        """``work(conn)`` under this object's lock, on a live connection, shielded from a cancelled
        caller; once more on a new connection when the one it found had died."""
        import asyncio

        import psycopg

        self._lock = self._lock or asyncio.Lock()

        async def attempt() -> Any:
            async with self._lock:
                try:
                    return await work(await self._connection())
                except psycopg.OperationalError:
                    if self._conn is not None and not self._conn.closed:
                        raise  # the connection lives: the query itself failed
                    return await work(await self._connection())

        return await asyncio.shield(asyncio.ensure_future(attempt()))

    async def acquire(self, job_id: str) -> bool:
        """Whether this process now holds ``job_id`` (False: another session holds it)."""

        async def take(conn: Any) -> bool:
            if await self._take(conn, job_id):
                self._held.add(job_id)
                return True
            return False

        return bool(await self._run(take))

    async def release(self, job_id: str) -> None:
        """Give ``job_id`` back; a connection that went away took the lock with it."""

        async def give_back(conn: Any) -> None:
            await conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_CLASS, _key(job_id)))

        self._held.discard(job_id)
        if self._conn is None or self._conn.closed:
            return
        try:
            await self._run(give_back)
        except Exception as exc:  # the lock went with the connection; the job's result stands
            log.warning("could not release job %r's shared lock: %s", job_id, type(exc).__name__)

    async def aclose(self) -> None:
        if self._conn is not None and not self._conn.closed:
            await self._conn.close()
        self._conn = None
        self._held.clear()


def _refused_elsewhere(job_id: str) -> StillRunning:
    return StillRunning(f"job {job_id!r} is running now on another machine that shares this PostgreSQL checkpoint"
                        " store; wait for it to end, then give the same job id again to get its result (or give"
                        " another job id for a new job)")


@contextlib.asynccontextmanager
async def everywhere(checkpointer: Any, job_id: str) -> AsyncIterator[None]:
    """Hold ``job_id`` on every machine sharing ``checkpointer``'s store, where it can say
    (``swarm_job_locks``: PostgreSQL); a no-op for a store only this machine sees."""
    locks: SharedJobLocks | None = getattr(checkpointer, "swarm_job_locks", None)
    if locks is None:
        yield
        return
    if not await locks.acquire(job_id):
        raise _refused_elsewhere(job_id)
    try:
        yield
    finally:
        await locks.release(job_id)
