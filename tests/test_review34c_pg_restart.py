"""A PostgreSQL checkpoint store that is restarting while a runtime starts: the start waits for it.

The start failed after a 1 s grace: a port refusing for a moment longer, or a server that said "the
database system is starting up" (a restart, or a recovery that takes seconds), failed the start
although the server took connections well within the pool's 10 s connect timeout. The job locks'
connection had its own copy of that timeout (``job_lock.CONNECT_TIMEOUT_S``) and did not follow it.

The restart is a loopback TCP front of the test PostgreSQL (``scripts/services``) that plays its
phases: refusing (nothing listens), answering as PostgreSQL does then (FATAL 57P03, over the real
wire protocol), silent (accepts, never answers), or forwarding; the shared server never stops.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.errors import ConfigError

PG_DSN = os.environ.get("SWARM_TEST_PG_DSN")
needs_pg = pytest.mark.skipif(
    not PG_DSN, reason="SWARM_TEST_PG_DSN is unset: run through scripts/test, which starts PostgreSQL (scripts/services)"
)
PASSWORD = "pg-pass-planted-review34c"
_SSL_OR_GSS = (80877103, 80877104)  # the requests libpq sends before its startup message


def _config(tmp_path: Path, dsn: str) -> Any:
    """The shipped config with its checkpointer on ``dsn``."""
    from core.config import load_config

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())
    raw["checkpointer"] = {"kind": "postgres", "dsn": dsn}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_config(path)


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise OSError("closed")
        data += chunk
    return data


def _say_not_yet(conn: socket.socket, words: str) -> None:
    """What PostgreSQL answers a login while it starts or stops: an ErrorResponse, SQLSTATE 57P03."""
    while True:
        length, code = struct.unpack("!ii", _recv_exactly(conn, 8))
        if code not in _SSL_OR_GSS:
            _recv_exactly(conn, length - 8)  # the startup message's parameters
            break
        conn.sendall(b"N")  # no encryption: the startup message comes next
    fields = b"".join(kind + text.encode() + b"\0" for kind, text in
                      ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", "57P03"), (b"M", words))) + b"\0"
    conn.sendall(b"E" + struct.pack("!i", len(fields) + 4) + fields)


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        dst.close()


_WORDS = {"starting": "the database system is starting up", "stopping": "the database system is shutting down"}


def _bound(port: int) -> socket.socket:
    """A socket bound to 127.0.0.1:``port`` (0: any) and not listening: its port refuses, and stays ours."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


class Restart:
    """A loopback front of ``upstream`` that plays ``phases`` ((mode, seconds); the last one stays):
    "refuse" (nothing listens), "starting"/"stopping" (PostgreSQL's 57P03 answer to a login),
    "silent" (accepts and never answers; the connections it forwarded are dropped), "forward"."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream, self.mode = upstream, "refuse"
        self._listener = _bound(0)
        self.port: int = self._listener.getsockname()[1]
        self._listening = False
        self._conns: list[socket.socket] = []

    def _switch(self, mode: str) -> None:
        self.mode = mode
        if mode == "refuse" and self._listening:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes its accept(): a close alone kept it listening
            self._listener.close()
            self._listener, self._listening = _bound(self.port), False
        elif mode != "refuse" and not self._listening:
            self._listener.listen()
            self._listening = True
            threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()
        if mode == "silent":
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def play(self, phases: list[tuple[str, float]]) -> None:
        def run() -> None:
            for mode, seconds in phases:
                self._switch(mode)
                time.sleep(seconds)

        threading.Thread(target=run, daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            if self.mode == "silent":
                self._conns.append(conn)
                continue
            threading.Thread(target=self._serve, args=(conn, self.mode), daemon=True).start()

    def _serve(self, conn: socket.socket, mode: str) -> None:
        if mode in _WORDS:
            try:
                _say_not_yet(conn, _WORDS[mode])
            except OSError:
                pass
            conn.close()
            return
        up = socket.create_connection(self.upstream)
        self._conns += [conn, up]
        threading.Thread(target=_pipe, args=(up, conn), daemon=True).start()
        _pipe(conn, up)

    def close(self) -> None:
        self._switch("refuse")
        self._listener.close()
        for conn in self._conns:
            conn.close()


@pytest.fixture
def restart() -> Iterator[Restart]:
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(PG_DSN or "postgresql://127.0.0.1:5432/db")
    front = Restart((str(parts.get("host", "127.0.0.1")), int(parts.get("port", 5432))))
    yield front
    front.close()


def _through(front: Restart) -> str:
    """``SWARM_TEST_PG_DSN`` with ``front``'s port in place of the server's."""
    from psycopg.conninfo import make_conninfo

    assert PG_DSN is not None
    return make_conninfo(PG_DSN, host="127.0.0.1", port=str(front.port))


async def _open_and_lock(config: Any, job_id: str = "review34c-job") -> float:
    """Seconds until the postgres checkpointer at ``config`` opened and held ``job_id`` everywhere."""
    from graphs.checkpoint import open_checkpointer
    from graphs.job_lock import everywhere

    started = time.perf_counter()
    async with open_checkpointer(config, prune=False) as saver, everywhere(saver, job_id):
        return time.perf_counter() - started


@needs_pg
async def test_a_port_that_refuses_a_moment_longer_than_a_second_still_starts(
        tmp_path: Path, restart: Restart) -> None:
    """Refused for 1.3 s, then PostgreSQL: the start waits (it failed "Connection refused" at 0.8 s)."""
    restart.play([("refuse", 1.3), ("forward", 0)])
    took = await _open_and_lock(_config(tmp_path, _through(restart)))
    assert took >= 1.3, took


@needs_pg
async def test_a_restart_that_says_so_is_waited_for_past_the_refused_grace(
        tmp_path: Path, restart: Restart) -> None:
    """A restart as PostgreSQL plays it: "shutting down", its port closed (longer than the grace for
    a port that refuses from the start: here it said it is restarting), "starting up", then up."""
    from graphs import checkpoint

    gap = checkpoint.REFUSED_GRACE_S + 0.5
    restart.play([("stopping", 0.3), ("refuse", gap), ("starting", 0.5), ("forward", 0)])
    took = await _open_and_lock(_config(tmp_path, _through(restart)))
    assert took >= gap + 0.8, took


async def test_a_server_still_starting_up_at_the_timeout_is_said_with_its_words(
        tmp_path: Path, restart: Restart, monkeypatch: pytest.MonkeyPatch) -> None:
    """A recovery longer than the connect timeout: said after it (it was said after 1 s), in PostgreSQL's words."""
    import graphs.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "POSTGRES_CONNECT_TIMEOUT_S", 2.0)
    restart.play([("starting", 0)])
    config = _config(tmp_path, f"postgresql://swarm:{PASSWORD}@127.0.0.1:{restart.port}/db")
    started = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        await _open_and_lock(config)
    took = time.perf_counter() - started
    said = str(info.value)
    assert 1.9 <= took < 5.0, took
    assert "cannot connect to PostgreSQL in " in said and "(timeout 2 s)" in said, said
    assert "the database system is starting up" in said and PASSWORD not in said, said


@needs_pg
async def test_the_job_locks_connection_keeps_the_stores_connect_timeout(
        tmp_path: Path, restart: Restart, monkeypatch: pytest.MonkeyPatch) -> None:
    """The locks' connection lost and the server gone silent: taking a job's lock gives up after the
    store's connect timeout (2 s here), not a copy of its default (10 s) kept beside it."""
    import psycopg

    import graphs.checkpoint as checkpoint
    from graphs.job_lock import everywhere

    monkeypatch.setattr(checkpoint, "POSTGRES_CONNECT_TIMEOUT_S", 2.0)
    restart.play([("forward", 0)])
    async with checkpoint.open_checkpointer(_config(tmp_path, _through(restart)), prune=False) as saver:
        async with everywhere(saver, "review34c-first"):
            pass
        restart.play([("silent", 0)])
        await asyncio.sleep(0.2)  # the switch's thread drops the connections
        started = time.perf_counter()
        with pytest.raises(psycopg.OperationalError):
            async with everywhere(saver, "review34c-second"):
                pass
        took = time.perf_counter() - started
    assert 1.5 <= took < 6.0, took
