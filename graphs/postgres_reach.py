"""Why a PostgreSQL dsn does not connect, in words a person can act on and without its password:
``dsn_problem`` before any connection (a driver would quote the wrong part, often a piece of the
password), ``why_not`` by what the server answered, and ``unreachable`` as the ``ConfigError`` to raise.

What the server answered says how long to ask (``graphs.checkpoint`` passes the limits): a refused
login or a missing database is said at once; "the database system is starting up" (shutting down, in
recovery: a restart) is waited for, up to the whole timeout, and so is a refused port after such words
(the gap of a restart); a port that refuses from the start is tried again with a short backoff for the
grace, then said.
"""

from __future__ import annotations

import asyncio
import time

from core.errors import ConfigError
from core.redact import redact

#: the first pause between tries of a refused port, doubled each time up to ``REFUSED_RETRY_MAX_S``
REFUSED_RETRY_S = 0.1
REFUSED_RETRY_MAX_S = 0.5

MALFORMED_DSN = ("the dsn is malformed (postgresql://USER:PASSWORD@HOST:PORT/DB; a password with '%', '@', '/'"
                 " or ':' must be percent-encoded)")


def dsn_problem(dsn: str) -> str | None:
    """What is wrong with ``dsn`` before any connection (a driver would quote the wrong part, often
    a piece of the password), or None: a raw '@' in its password, or what the driver cannot parse
    (a bad percent-escape: ``MALFORMED_DSN``; not checked where psycopg is not installed)."""
    netloc = dsn.split("://", 1)[1].split("/", 1)[0] if "://" in dsn else ""
    if netloc.count("@") > 1:
        return "the dsn is malformed: its password holds an '@'; write it as %40"
    try:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict
    except ModuleNotFoundError:  # the opener says what to install
        return None
    try:
        conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return MALFORMED_DSN
    return None


CHECK_DSN = "check that the server runs and the dsn's host, port, user and database"

#: psycopg's words for a server that answered and refused the login (the user or the password)
_LOGIN_REFUSED = ("password authentication failed", "no password supplied", "role \"", "pg_hba.conf")
#: psycopg's words for a server that is there but takes no connection yet (SQLSTATE 57P03: starting
#: up, shutting down, in recovery, not yet accepting connections): a restart, waited for
_NOT_YET = ("the database system is ",)
#: how psycopg's words begin what the server itself answered (libpq: "FATAL:  ..."), not the network
_SERVER_SAID = "FATAL:"


def unreachable(why: str, started: float, timeout_s: float) -> ConfigError:
    """The error for a store not reached since ``started`` (its connect timeout ``timeout_s``) because of ``why``."""
    took = f"in {time.monotonic() - started:.1f} s (timeout {timeout_s:g} s)"
    if any(words in why for words in _LOGIN_REFUSED):  # it runs and answers: its host and port are right
        return ConfigError(f"PostgreSQL refused the login {took}: {why}; check the user and password in the"
                           " dsn (a password with @ : / or # in it is percent-encoded: %40 %3A %2F %23)",
                           key="checkpointer.dsn")
    return ConfigError(f"cannot connect to PostgreSQL {took}: {why}; {CHECK_DSN}", key="checkpointer.dsn")


async def why_not(dsn: str, *, connect_timeout: int, grace_s: float = 0.0, patience_s: float = 0.0) -> str | None:
    """Why ``dsn`` does not connect (psycopg's words; the module's docstring says when), or None once
    it does: "not yet" is asked again for ``patience_s``, a refused port from the start for
    ``grace_s``, each try given ``connect_timeout`` whole seconds. A malformed dsn is said without
    them: they quote the wrong part (often the password)."""
    import psycopg

    if (problem := dsn_problem(dsn)) is not None:
        return problem
    started, pause, restarting = time.monotonic(), REFUSED_RETRY_S, False
    while True:
        try:
            connection = await psycopg.AsyncConnection.connect(dsn, connect_timeout=connect_timeout)
        except psycopg.ProgrammingError:
            return MALFORMED_DSN
        except Exception as exc:  # noqa: BLE001 - any other reason is the answer
            text = " ".join(str(exc).split())
            why = redact(text)[:300] or type(exc).__name__
            not_yet = any(words in text for words in _NOT_YET)
            restarting = restarting or not_yet
            if not not_yet and any(words in text for words in (_SERVER_SAID, *_LOGIN_REFUSED)):
                return why  # it runs and said no (or the dsn has no password): asking again changes nothing
            left = (patience_s if restarting else grace_s) - (time.monotonic() - started)
            if left <= 0:
                return why
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, REFUSED_RETRY_MAX_S)
            continue
        await connection.close()
        return None
