"""The state files a server keeps in SQLite (jobs, threads, checkpoints): one way to say that one
is damaged, at open and in ``swarm doctor``."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from core.errors import ConfigError, ProviderUnavailable


def damaged(path: str | Path, what: str, lost: str, reason: object) -> ConfigError:
    """The error for ``path`` (``what``: "the job store") that SQLite cannot read as a database."""
    return ConfigError(f"{what} {path} is damaged ({' '.join(str(reason).split())[:200]}): move it aside and start"
                       f" again; a new one is made ({lost} it held are lost)")


def unwritable(path: str | Path, what: str, reason: object, provider: str = "state") -> ProviderUnavailable:
    """The error for ``path`` (``what``: "the thread store") that SQLite cannot write now: read-only
    (a file or folder's permissions), the disk full, a lock held too long. Said with the file and the
    fix; the next call tries again (a read-only ``threads.sqlite`` failed every delegate as an
    internal error, a full disk left a finished job IN_PROGRESS with "InternalError")."""
    said = " ".join(str(reason).split())[:200]
    fix = "free some space" if "full" in said else "check the file's and its folder's permissions (and free space)"
    return ProviderUnavailable(provider, f"{what} {path} cannot be written ({said}): {fix}; the next call tries"
                                         " again, no restart needed")


@contextlib.contextmanager
def writing(path: str | Path, what: str, provider: str = "state") -> Iterator[None]:
    """Say an ``OperationalError`` while ``path`` is written as ``unwritable``."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise unwritable(path, what, exc, provider) from None


@contextlib.contextmanager
def opening(path: str | Path, what: str, lost: str) -> Iterator[None]:
    """Say a damaged file as ``damaged`` while it is opened (a garbage ``jobs.sqlite`` stopped the
    MCP server with a traceback, a garbage ``threads.sqlite`` failed every call as an internal
    error). A busy or unopenable file (``OperationalError``) is left to its own message."""
    try:
        yield
    except sqlite3.OperationalError:
        raise
    except sqlite3.DatabaseError as exc:
        raise damaged(path, what, lost, exc) from None


class Unwritable(str):
    """What SQLite said of a file it could not check for lack of access, not damage: "attempt to
    write a readonly database" (a WAL file in a folder this process may not write: reading it
    makes a ``-shm`` file), "unable to open database file" (its ``-wal`` there, no ``-shm``). The
    fix is the permissions; "move it aside, what it held is lost" would lose the jobs and still fail."""


def access_fix(path: str | Path) -> str:
    """What to do about an ``Unwritable`` ``path``, said at start and by ``swarm doctor``."""
    return f"make {path} and its folder writable (or set SWARM_HOME to a writable folder)"


#: SQLite's primary result codes (an extended code's low byte) that say access, not damage
_ACCESS_CODES = frozenset({sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN})


def integrity_problem(path: str | Path) -> str | None:
    """What ``PRAGMA quick_check`` finds wrong with ``path`` (read-only), or ``None`` when it is a
    sound database or absent; an ``Unwritable`` when SQLite may not read it as it is (permissions)."""
    if not Path(path).is_file():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as conn:
            rows = [str(row[0]) for row in conn.execute("PRAGMA quick_check(3)")]
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return None  # in use by a running server: not a finding
        if (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF in _ACCESS_CODES:
            return Unwritable(" ".join(str(exc).split()))
        return " ".join(str(exc).split())
    except sqlite3.DatabaseError as exc:
        return " ".join(str(exc).split())
    return None if rows == ["ok"] else "; ".join(rows)[:200]
