"""What a checkpoint store's failure under a job is said as (``store_unavailable``): its own module,
without LangGraph, so the dispatcher (imported by every door at start) can use it."""

from __future__ import annotations

import sqlite3

from core.errors import ProviderUnavailable
from core.redact import redact

#: (package, class name) of errors that mean the checkpoint database cannot be reached now
_DATABASE_DOWN = frozenset({("psycopg", "OperationalError"), ("psycopg_pool", "PoolTimeout"),
                            ("psycopg", "InterfaceError")})


def store_unavailable(exc: BaseException, job_id: str | None) -> ProviderUnavailable | None:
    """The checkpoint store failed under a job: PostgreSQL went away (stopped, restarted, out of
    connections), or the SQLite file could not be written (disk full, locked by another process
    past the busy timeout) or is damaged. A provider being unavailable, said as such with what
    to do, not an internal error; the checkpoints it did store stand, so the same job id resumes
    (except from a damaged file)."""
    # what resumes it: a run under the same job id (the command line's --job-id, a RunPod job's
    # input.job_id); an MCP tool takes no job id, and sending the request again starts a new job
    again = (f"run the job again with job_id {job_id!r} to resume it (swarm run ... --job-id {job_id},"
             " or a RunPod job's job_id; over MCP, sending it again starts a new job)")
    detail = redact(" ".join(str(exc).split()))[:300] or type(exc).__name__
    for kind in type(exc).__mro__:
        if (kind.__module__.split(".")[0], kind.__name__) in _DATABASE_DOWN:
            return ProviderUnavailable("checkpointer", f"PostgreSQL (checkpointer.dsn) is unreachable: {detail}; {again}")
    if isinstance(exc, sqlite3.OperationalError):
        return ProviderUnavailable("checkpointer", f"the SQLite checkpoint store (checkpointer.path) cannot be written"
                                   f" now: {detail}; free disk space or stop what holds the file, then {again}")
    if isinstance(exc, sqlite3.DatabaseError):
        return ProviderUnavailable("checkpointer", f"the SQLite checkpoint store (checkpointer.path) is damaged: {detail};"
                                   " move the file aside (its jobs cannot resume) and run the job again")
    return None
