"""Checkpointers chosen by config: SQLite (default), Postgres, or memory (tests)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from providers.errors import ConfigError
from swarm.config import SwarmConfig


@contextlib.asynccontextmanager
async def _sqlite(config: SwarmConfig) -> AsyncIterator[Any]:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    path = Path(config.checkpointer.path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    async with AsyncSqliteSaver.from_conn_string(str(path)) as saver:
        await saver.setup()  # switches the file to WAL
        # WAL + NORMAL: a commit survives a killed process (the crash we guard against); only
        # an OS crash may lose the last commits. FULL would fsync on every graph step.
        await saver.conn.execute("PRAGMA synchronous=NORMAL")
        yield saver


@contextlib.asynccontextmanager
async def _memory(config: SwarmConfig) -> AsyncIterator[Any]:
    from langgraph.checkpoint.memory import InMemorySaver

    yield InMemorySaver()


@contextlib.asynccontextmanager
async def _postgres(config: SwarmConfig) -> AsyncIterator[Any]:
    if not config.checkpointer.dsn:
        raise ConfigError("postgres needs a dsn (e.g. ${SWARM_PG_DSN})", key="checkpointer.dsn")
    try:
        from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
    except ModuleNotFoundError:
        raise ConfigError(
            "the postgres checkpointer is not installed: pip install langgraph-checkpoint-postgres",
            key="checkpointer.kind",
        ) from None
    async with AsyncPostgresSaver.from_conn_string(config.checkpointer.dsn) as saver:
        await saver.setup()
        yield saver


_OPENERS = {"sqlite": _sqlite, "memory": _memory, "postgres": _postgres}


def open_checkpointer(config: SwarmConfig) -> contextlib.AbstractAsyncContextManager[Any]:
    """An async context manager yielding the configured LangGraph saver."""
    return _OPENERS[config.checkpointer.kind](config)
