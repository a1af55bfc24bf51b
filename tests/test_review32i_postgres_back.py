"""The Postgres checkpointer once PostgreSQL is back after an outage: a job right after it works.

psycopg_pool retries a lost connection with exponential backoff (1, 2, 4, 8, 16, 32 ... s) for its
``reconnect_timeout`` (300 s by default): after an outage of 17 s its next try came 11-17 s after the
server was back, and every job meanwhile failed "PostgreSQL (checkpointer.dsn) is unreachable:
couldn't get a connection after 10.00 sec" although it was not.

The outage is a loopback TCP proxy in front of the test PostgreSQL (``scripts/services``) that stops
listening and drops its connections, then listens again: the shared server itself never stops.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PG_DSN = os.environ.get("SWARM_TEST_PG_DSN")
needs_pg = pytest.mark.skipif(
    not PG_DSN, reason="SWARM_TEST_PG_DSN is unset: run through scripts/test, which starts PostgreSQL (scripts/services)"
)


class Outage:
    """A TCP proxy on 127.0.0.1 to ``host:port`` that can go down (refuse, drop every connection) and come back."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        self.writers.clear()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except OSError:
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def _config(tmp_path: Path, dsn: str) -> Any:
    from core.config import load_config

    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["checkpointer"] = {"kind": "postgres", "dsn": dsn}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_config(path)


@needs_pg
async def test_a_job_right_after_postgresql_is_back_reads_its_checkpoint(tmp_path: Path) -> None:
    from langgraph.checkpoint.base import empty_checkpoint
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    from graphs.checkpoint import open_checkpointer

    where = conninfo_to_dict(PG_DSN or "")
    proxy = Outage(str(where.get("host") or "127.0.0.1"), int(where.get("port") or 5432))
    await proxy.up()
    dsn = make_conninfo(PG_DSN or "", host="127.0.0.1", port=str(proxy.port))
    thread = {"configurable": {"thread_id": f"pg-back-{os.getpid()}", "checkpoint_ns": ""}}
    async with open_checkpointer(_config(tmp_path, dsn), prune=False) as saver:
        await saver.aput(thread, empty_checkpoint(), {}, {})
        await proxy.down()
        went_down = time.monotonic()
        with pytest.raises(Exception, match="couldn't get a connection"):  # the outage, as a job meets it
            await saver.aget_tuple(thread)
        # the old pool tried at 0, 1, 3, 7, 15, 31 s (+-10%): back at 17 s, the next try was past the 10 s wait
        await asyncio.sleep(max(0.0, 17 - (time.monotonic() - went_down)))
        await proxy.up()
        stored = await saver.aget_tuple(thread)  # it raised PoolTimeout: the pool's next try was 10-16 s away
    await proxy.down()
    assert stored is not None
