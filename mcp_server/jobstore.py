"""The job store: one SQLite table of jobs (owner, input, status, progress, result envelope).

Input is stored redacted, with huge strings (inline images) replaced by a stub. A lookup by
another owner finds nothing, the same answer as an unknown id.

Several servers may share one store (two MCP clients on one machine start two ``swarm-mcp``
processes over the same ``~/.cache/runpod-swarm``). Each row names the server process that runs
it (``runner``: a ``Lease`` token); a server resumes an unfinished job only when the process that
ran it is gone (its lease file is no longer locked) and it wins the row (``claim``), so a live
job is never run twice.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import re
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import IO, Any

from core.redact import redact, redact_data
from core.state_files import opening, writing

log = logging.getLogger("swarm.mcp")

IN_PROGRESS = "IN_PROGRESS"
FINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
STATUSES = ("IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED")
#: a string input longer than this is stored as a stub (an inline image is megabytes)
MAX_STORED_INPUT_CHARS = 1_000_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    project TEXT NOT NULL,
    action TEXT NOT NULL,
    input TEXT NOT NULL,
    status TEXT NOT NULL,
    result TEXT,
    progress TEXT,
    idempotency_key TEXT,
    remote INTEGER NOT NULL DEFAULT 0,
    thread_id TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idem ON jobs(owner, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs(owner, created_at);
"""


_TOKEN = re.compile(r"\d{1,10}-[0-9a-f]{12}")


class Lease:
    """This process's hold on the jobs it runs: an exclusive ``flock`` on
    ``<folder>/<token>.lock``, held from start to ``close`` (the kernel drops it when the process
    dies, however it dies). ``alive(token)`` tells whether the holder of a token still runs.

    The file is locked under a temporary name and only then renamed into place, so another
    server never finds it unlocked and takes it for a dead one's. Without ``fcntl`` (Windows),
    or on a filesystem without ``flock``, there is no lease: every other token counts as gone,
    as before leases existed (a warning says so once).
    """

    def __init__(self, folder: Path | None) -> None:
        self.token = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.folder = folder
        self._file: IO[str] | None = None
        fcntl = _fcntl()
        if folder is None or fcntl is None:
            if folder is not None:
                log.warning("no file locks here (no fcntl): servers sharing %s cannot tell each other's jobs apart", folder)
            self.folder = None
            return
        folder.mkdir(parents=True, exist_ok=True)
        staging = folder / f"{self.token}.tmp"
        held = open(staging, "w", encoding="utf-8")  # noqa: SIM115 (held until close)
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:  # a filesystem without flock (some FUSE and sync mounts)
            held.close()
            staging.unlink(missing_ok=True)
            log.warning("file locks do not work in %s (%s): servers sharing it cannot tell each other's jobs apart",
                        folder, type(exc).__name__)
            self.folder = None
            return
        os.replace(staging, folder / f"{self.token}.lock")
        self._file = held
        for old in folder.glob("*.lock"):  # files of killed servers (their locks went with them)
            self.alive(old.stem)

    @property
    def locks(self) -> bool:
        """Whether this lease can tell a live server from a gone one (file locks work here)."""
        return self._file is not None

    def alive(self, token: str | None) -> bool:
        """Whether the process holding ``token`` still runs (``None``: a row from before leases)."""
        if token == self.token:
            return True
        fcntl = _fcntl()
        if token is None or self.folder is None or fcntl is None or not _TOKEN.fullmatch(token):
            return False
        path = self.folder / f"{token}.lock"
        try:
            fd = os.open(path, os.O_RDWR)  # never created here: a missing file is a gone process
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True  # locked: its process runs
        else:
            path.unlink(missing_ok=True)  # a dead process's file
            return False
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._file is not None and self.folder is not None:
            (self.folder / f"{self.token}.lock").unlink(missing_ok=True)
            self._file.close()  # releases the lock
            self._file = None


def _fcntl() -> Any:
    try:
        import fcntl
    except ImportError:  # Windows
        return None
    return fcntl


class JobStore:
    """Jobs in one SQLite file: small rows, one connection guarded by a lock (calls are short).

    ``lease``: this process's (default: a new one, its lock file under ``<store's folder>/runners``).
    """

    def __init__(self, path: str | Path, lease: Lease | None = None) -> None:
        self.path = Path(path).expanduser()
        memory = str(path) == ":memory:"
        if not memory:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lease = lease or Lease(None if memory else self.path.parent / "runners")
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock, opening(self.path, "the job store", "the jobs"):
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
            if "thread_id" not in columns:  # a store written before threads existed
                self._db.execute("ALTER TABLE jobs ADD COLUMN thread_id TEXT")
            if "runner" not in columns:  # a store written before leases existed
                self._db.execute("ALTER TABLE jobs ADD COLUMN runner TEXT")

    def close(self) -> None:
        with self._lock:
            self._db.close()
        self.lease.close()

    def claim(self, job_id: str, runner: str | None) -> bool:
        """Take over an unfinished job last run by ``runner`` (a gone process); ``False`` when
        another server took it first."""
        with self._lock, writing(self.path, "the job store", "jobs"):
            cursor = self._db.execute(
                "UPDATE jobs SET runner = ?, updated_at = ? WHERE job_id = ? AND status = ? AND runner IS ?",
                (self.lease.token, time.time(), job_id, IN_PROGRESS, runner))
            return cursor.rowcount == 1

    def _exec(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock, writing(self.path, "the job store", "jobs"):
            return self._db.execute(sql, args).fetchall()

    def create(self, job_id: str, owner: str, job: dict[str, Any], idempotency_key: str | None = None,
               *, remote: bool = False, thread_id: str | None = None) -> None:
        """Record a new IN_PROGRESS job; ``remote``: it runs on an endpoint under this (remote) id;
        ``thread_id``: the conversation its turns join when it completes (swarm.threads)."""
        now = time.time()
        self._exec(
            "INSERT INTO jobs (job_id, owner, project, action, input, status, idempotency_key, remote, thread_id,"
            " runner, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (job_id, owner, job["project"], job["action"], json.dumps(storable(job.get("input") or {})),
             IN_PROGRESS, idempotency_key, int(remote), thread_id, self.lease.token, now, now),
        )

    def get(self, job_id: str, owner: str | None = None) -> dict[str, Any] | None:
        """The job's row as a dict, or None when it does not exist or belongs to another owner."""
        rows = self._exec("SELECT * FROM jobs WHERE job_id = ?", (job_id,))
        if not rows or (owner is not None and rows[0]["owner"] != owner):
            return None
        return _row(rows[0])

    def running_in_thread(self, owner: str, thread_id: str) -> str | None:
        """The id of a job of ``owner`` still running on the conversation ``thread_id``, if any."""
        rows = self._exec("SELECT job_id FROM jobs WHERE owner = ? AND thread_id = ? AND status = ? LIMIT 1",
                          (owner, thread_id, IN_PROGRESS))
        return str(rows[0]["job_id"]) if rows else None

    def by_idempotency_key(self, owner: str, key: str) -> dict[str, Any] | None:
        rows = self._exec("SELECT * FROM jobs WHERE owner = ? AND idempotency_key = ?", (owner, key))
        return _row(rows[0]) if rows else None

    def set_progress(self, job_id: str, stage: str, message: str, fraction: float | None) -> None:
        """The job's last event; ``reached`` keeps the last fraction any event gave, so a poll
        that replays an event without one (a message: "measuring ...") starts the bar there,
        not back at 0%."""
        progress = {"stage": stage, "message": redact(message)[:500], "fraction": fraction, "at": time.time()}
        with self._lock, writing(self.path, "the job store", "jobs"):
            if fraction is not None:
                progress["reached"] = fraction
            else:
                row = self._db.execute("SELECT progress FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
                before = json.loads(row[0]) if row and row[0] else {}
                if before.get("reached") is not None:
                    progress["reached"] = before["reached"]
            self._db.execute("UPDATE jobs SET progress = ?, updated_at = ? WHERE job_id = ?",
                             (json.dumps(progress), time.time(), job_id))

    def finish(self, job_id: str, status: str, envelope: dict[str, Any]) -> bool:
        """Store a job's final state; a job already final stays as it is (a cancel is not
        overwritten by the result of a server that ran it meanwhile). Whether it was stored."""
        with self._lock, writing(self.path, "the job store", "jobs"):
            cursor = self._db.execute(
                "UPDATE jobs SET status = ?, result = ?, updated_at = ? WHERE job_id = ? AND status = ?",
                (status, json.dumps(redact_data(envelope)), time.time(), job_id, IN_PROGRESS),
            )
            return cursor.rowcount == 1

    def forget(self, job_id: str) -> None:
        """Delete one job's row, whatever its state (a job whose input was refused before it ran)."""
        with self._lock, writing(self.path, "the job store", "jobs"):
            self._db.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))

    def prune(self, older_than_s: float) -> int:
        """Delete finished jobs last updated more than ``older_than_s`` ago (their input and result
        with them); unfinished ones stay. The count."""
        with self._lock, writing(self.path, "the job store", "jobs"):
            cursor = self._db.execute("DELETE FROM jobs WHERE status != ? AND updated_at < ?",
                                      (IN_PROGRESS, time.time() - older_than_s))
            return cursor.rowcount

    def list(self, owner: str | None, status: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """Newest first; ``owner=None`` lists every owner's jobs (operator use only)."""
        where, args = [], []
        if owner is not None:
            where.append("owner = ?")
            args.append(owner)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        sql = "SELECT * FROM jobs" + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._exec(sql + " ORDER BY created_at DESC LIMIT ?", (*args, limit))
        return [_row(r) for r in rows]

    def unfinished(self) -> builtins.list[dict[str, Any]]:  # ``list`` here is the method above
        return [_row(r) for r in self._exec("SELECT * FROM jobs WHERE status = ? ORDER BY created_at", (IN_PROGRESS,))]


def storable(value: Any) -> Any:
    """Input as stored: secrets masked, a huge string (inline image) replaced by a stub."""
    value = redact_data(value)
    if isinstance(value, str) and len(value) > MAX_STORED_INPUT_CHARS:
        return {"_omitted_chars": len(value)}
    if isinstance(value, dict):
        return {k: storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable(v) for v in value]
    return value


def _row(row: sqlite3.Row) -> dict[str, Any]:
    data = dict(row)
    for key in ("input", "result", "progress"):
        if data.get(key):
            data[key] = json.loads(data[key])
    return data


def _identity(row: dict[str, Any]) -> dict[str, Any]:
    return {key: row.get(key) for key in ("job_id", "project", "action", "status", "progress")}


def handle(row: dict[str, Any], elsewhere: str | None = None) -> dict[str, Any]:
    """What a caller gets for a job that is still running: enough to poll it; ``elsewhere``: the
    pid of the other server process on this store that runs it."""
    where = f" in another swarm-mcp process (pid {elsewhere})" if elsewhere else ""
    return {
        **_identity(row),
        "poll": {"status": "job_status", "result": "job_result", "cancel": "job_cancel"},
        "message": (
            f"job {row['job_id']} is still running{where}; call job_result(job_id=\"{row['job_id']}\", wait_s=...) "
            "to wait for it, or job_status to see its progress"
        ),
    }


def summary(row: dict[str, Any], running_here: bool = False) -> dict[str, Any]:
    """A job without its output: status, progress, timing, the error if it failed."""
    result = row.get("result") or {}
    return {
        **_identity(row),
        "error": result.get("error"),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "elapsed_ms": result.get("elapsed_ms"),
        "running_here": running_here,
    }
