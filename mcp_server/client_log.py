"""MCP logging: the server's own log records, sent to the client they were made for.

A client that sent ``logging/setLevel`` (a handshake-era client: 2025-11-25 and before) gets, as
``notifications/message``, each record at or above that level that the server logs while it works
for that client: in a request of its connection, and in what that request started (its jobs, on
the jobs' loop, carry the request's context there). Records of anything else (the start, a job
resumed from a stopped server, another client's work) are never its; a client that set no level
gets nothing. The operator's log on stderr is left as it is: a record exists only at or above the
operator's level, and this handler only reads it.

A client of 2026-07-28 has no ``logging/setLevel``: it asks per request, with the level in the
request's ``_meta`` (``LOG_LEVEL_META_KEY``), and the spec allows ``notifications/message`` only
for a request that asked, on that request's own response stream (``RequestLog``). That request's
work is sent while it runs and before its response (the stream closes with it); what its jobs log
after that is not sent. A request that does not ask gets nothing.

Each entry: the RFC 5424 level (``level_name``), the logger's name, and as ``data`` the message
(redacted, cut to ``MAX_MESSAGE_CHARS``), the job id where there is one, an exception's class (never
its traceback). At most ``RATE_PER_S`` entries a second (``BURST`` at once) go to one client: a
connection, whose requests of 2026-07-28 share its rate (over stdio, its pipe's; over HTTP, where
each such request is an exchange of its own, the rate of the client its bearer token names, one
for all without tokens), and ``MAX_QUEUED`` wait for the pipe; what a flood leaves out is counted
and said in the next entry.
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping
from typing import Any

import mcp_types as types
from mcp.server.connection import NotifyOnlyOutbound
from mcp_types import LOG_LEVEL_META_KEY
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from core.redact import redact
from mcp_server.http import client_key
from swarm.logs import job_id_var, log_audience

log = logging.getLogger("swarm.mcp")

#: MCP's log levels (RFC 5424's severities, least severe first)
RFC_5424 = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
#: MCP's log levels as Python's: notice, "normal but significant", sits between info and warning
#: (25: Python has no name for it); alert and emergency, above critical, are Python's most severe
LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "notice": logging.INFO + 5, "warning": logging.WARNING,
              "error": logging.ERROR, "critical": logging.CRITICAL, "alert": logging.CRITICAL,
              "emergency": logging.CRITICAL}
#: entries one client is sent a second, on average, and at most at once
RATE_PER_S = 20.0
BURST = 50
#: entries waiting for the client's pipe; past that a new one is dropped (and counted)
MAX_QUEUED = 200
#: the most of one record's message an entry carries
MAX_MESSAGE_CHARS = 2_000

#: the sink of the client whose work the current task does (``swarm.logs.own_work`` clears it for
#: what serves every job, e.g. the checkpoint store a first job happens to open)
_client: contextvars.ContextVar[_Sink | None] = log_audience
_sending = threading.local()  # set while this thread hands an entry over: a record it logs is not re-sent


def level_name(levelno: int) -> str:
    """The RFC 5424 name of a Python level: the most severe MCP level it reaches (25 is notice)."""
    for name in ("critical", "error", "warning", "notice", "info"):
        if levelno >= LOG_LEVELS[name]:
            return name
    return "debug"


class _Rate:
    """One client's token bucket, from any thread: what it may be sent now, and what was left out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens = float(BURST)
        self._refilled = time.monotonic()
        self._dropped = 0

    def take(self) -> int | None:
        """``None`` when the rate is spent (counted); else the entries left out since the last one."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(float(BURST), self._tokens + (now - self._refilled) * RATE_PER_S)
            self._refilled = now
            if self._tokens < 1:
                self._dropped += 1
                return None
            self._tokens -= 1
            dropped, self._dropped = self._dropped, 0
            return dropped

    def left_out(self, count: int) -> None:
        with self._lock:
            self._dropped += count


class _Sink(abc.ABC):
    """Where one client's entries go: a level (``None``: none wanted), a rate, and a queue that one
    task on the server's loop sends in order (``_send``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, rate: _Rate, level: str | None = None) -> None:
        self._loop = loop
        self.rate = rate
        self.level = level
        self._queue: deque[dict[str, Any]] = deque()
        self._sender: asyncio.Task[None] | None = None
        self._closed = False

    @abc.abstractmethod
    async def _send(self, entry: dict[str, Any]) -> bool:
        """Send one entry; False: its destination is gone (nothing more is sent there)."""

    def wants(self, levelno: int) -> bool:
        return (self.level is not None and not self._closed
                and RFC_5424.index(level_name(levelno)) >= RFC_5424.index(self.level))

    def offer(self, record: logging.LogRecord) -> None:
        """Queue ``record`` for the client, from any thread, unless the rate is spent (counted)."""
        dropped = self.rate.take()
        if dropped is None:
            return
        entry = entry_of(record, dropped)
        if _running_loop() is self._loop:  # in order, now: a request's response may be next
            self._enqueue(entry)
            return
        try:
            self._loop.call_soon_threadsafe(self._enqueue, entry)
        except RuntimeError:  # the server's loop is closed: the client is gone
            return

    def _enqueue(self, entry: dict[str, Any]) -> None:
        if self._closed:  # its stream is done: only what it left out is told, on a later one
            self.rate.left_out(entry["data"].get("dropped", 0))
            return
        if len(self._queue) >= MAX_QUEUED:
            self.rate.left_out(1 + entry["data"].get("dropped", 0))
            return
        self._queue.append(entry)
        if self._sender is None or self._sender.done():
            # in a context of its own: what sending logs is not this client's work, nor sent again
            self._sender = self._loop.create_task(self._send_all(), context=contextvars.Context())

    async def _send_all(self) -> None:
        while self._queue:
            entry = self._queue.popleft()
            try:  # the SDK's notify drops it on a closed stream; anything else stops this sender
                sent = await self._send(entry)
            except Exception as exc:
                log.debug("a log entry was not sent to its client: %s", redact(repr(exc)))
                sent = False
            if not sent:
                self._queue.clear()
                return


class ClientLog(_Sink):
    """One client connection's log: its ``logging/setLevel`` level (``None`` until it sets one),
    sent on the connection; and the rate its requests of 2026-07-28 share (``RequestLog``)."""

    def __init__(self, connection: Any, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop, _Rate())
        self._connection = weakref.ref(connection)  # the registry is keyed by it: never held here

    async def _send(self, entry: dict[str, Any]) -> bool:
        connection = self._connection()
        if connection is None:
            return False
        await connection.notify("notifications/message", entry)
        return True


class RequestLog(_Sink):
    """One 2026-07-28 request's log, at the level its ``_meta`` asked for: sent on that request's
    response stream only, until ``close`` (its response is next)."""

    def __init__(self, rate: _Rate, level: str, session: Any, request_id: Any) -> None:
        super().__init__(asyncio.get_running_loop(), rate, level)
        self._session = session
        self._request_id = request_id

    async def _send(self, entry: dict[str, Any]) -> bool:
        notification = types.LoggingMessageNotification(params=types.LoggingMessageNotificationParams(**entry))
        await self._session.send_notification(notification, related_request_id=self._request_id)
        return True

    async def close(self) -> None:
        """Take nothing more, and send what waits before the response goes (a cancel drops it)."""
        try:
            try:
                await asyncio.sleep(0)  # what other threads (its jobs) handed over before now is queued
            finally:
                self._closed = True
            sender = self._sender
            if sender is not None and not sender.done():
                await asyncio.shield(sender)
        except asyncio.CancelledError:
            self._queue.clear()
            raise


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # a thread without one (a job's worker thread)
        return None


def pipe_of(connection: Any) -> Any:
    """What a 2026-07-28 request's entries over stdio share a rate on: the pipe its stream runs in.
    Each such request has a ``Connection`` of its own; all of one client's share its pipe (their
    ``NotifyOnlyOutbound``). Over HTTP the rate is the client's (``ClientLogs.rate_of``)."""
    outbound = getattr(connection, "outbound", None)
    return outbound if isinstance(outbound, NotifyOnlyOutbound) else connection


def asked_level(ctx: Any) -> str | None:
    """The level a 2026-07-28 request asked for in its ``_meta`` (``None``: it did not ask, or asked
    for no RFC 5424 level: the SDK refuses that request as invalid params after this)."""
    meta = getattr(ctx, "meta", None)
    level = meta.get(LOG_LEVEL_META_KEY) if isinstance(meta, Mapping) else None
    return level if isinstance(level, str) and level in RFC_5424 else None


def entry_of(record: logging.LogRecord, dropped: int = 0) -> dict[str, Any]:
    """``notifications/message``'s params for ``record``: level, logger and data, redacted."""
    try:
        message = record.getMessage()
    except (TypeError, ValueError):  # a bad format string: what there is
        message = f"{record.msg!r} {record.args!r}"
    message = redact(message)
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + f"... ({len(message):,} characters)"
    data: dict[str, Any] = {"message": message}
    if job_id := getattr(record, "job_id", None) or job_id_var.get():
        data["job_id"] = str(job_id)
    if record.exc_info and record.exc_info[0] is not None:
        data["error"] = record.exc_info[0].__name__
    if dropped:
        data["dropped"] = dropped
        data["message"] += (f" [{dropped} earlier log entr{'y' if dropped == 1 else 'ies'} not sent: more than"
                            f" {RATE_PER_S:g} a second; the server's log has them]")
    return {"level": level_name(record.levelno), "logger": record.name, "data": data}


class ClientLogHandler(logging.Handler):
    """On the root logger: hands each record to the client whose work made it (``ClientLog``, or
    the ``RequestLog`` of a 2026-07-28 request that asked)."""

    def emit(self, record: logging.LogRecord) -> None:
        client = _client.get()
        if client is None or not client.wants(record.levelno) or getattr(_sending, "on", False):
            return
        _sending.on = True
        try:
            client.offer(record)
        except Exception:
            self.handleError(record)
        finally:
            _sending.on = False


_installed: list[ClientLogHandler] = []


def install() -> None:
    """Add the one ``ClientLogHandler`` to the root logger (again after a ``configure_logging``
    that replaced the root's handlers); its level is NOTSET: the operator's level rules what exists."""
    root = logging.getLogger()
    if not _installed:
        _installed.append(ClientLogHandler())
    if _installed[0] not in root.handlers:
        root.addHandler(_installed[0])


class ClientLogs:
    """The ``ClientLog`` of each connection (or a 2026-07-28 client's pipe, ``pipe_of``), weakly
    keyed (a closed one goes with its client)."""

    def __init__(self) -> None:
        self._logs: weakref.WeakKeyDictionary[Any, ClientLog] = weakref.WeakKeyDictionary()
        #: the rate of each HTTP client (``mcp_server.http.client_key``): a few, the configured tokens'
        self._http_rates: dict[str, _Rate] = {}

    def of(self, connection: Any) -> ClientLog:
        found = self._logs.get(connection)
        if found is None:
            found = self._logs[connection] = ClientLog(connection, asyncio.get_running_loop())
        return found

    def rate_of(self, ctx: Any, connection: Any) -> _Rate:
        """The rate a 2026-07-28 request's entries share with its client's other requests: over
        HTTP each request is an exchange of its own (a ``Connection`` each), so the client is who
        its bearer token names (one for all without tokens); over stdio, the client's pipe."""
        request = getattr(ctx, "request", None)
        if request is None:
            return self.of(pipe_of(connection)).rate
        key = client_key(request)
        found = self._http_rates.get(key)
        if found is None:
            found = self._http_rates[key] = _Rate()
        return found

    async def middleware(self, ctx: Any, call_next: Any) -> Any:
        """The SDK's server middleware: each request of a connection runs (and what it starts
        lives on) with its client's log as the context's: the connection's ``ClientLog``, or for
        a request of 2026-07-28 a ``RequestLog`` if it asked for one (else none)."""
        connection = getattr(getattr(ctx, "session", None), "_connection", None)
        if connection is None:  # an in-process call: no connection to send to
            return await call_next(ctx)
        version = getattr(ctx, "protocol_version", None) or connection.protocol_version
        request: RequestLog | None = None
        if version not in MODERN_PROTOCOL_VERSIONS:
            sink: _Sink | None = self.of(connection)
        elif (level := asked_level(ctx)) is not None and getattr(ctx, "request_id", None) is not None:
            sink = request = RequestLog(self.rate_of(ctx, connection), level, ctx.session, ctx.request_id)
        else:  # it did not ask (or is a notification): nothing of its work is sent
            sink = None
        token = _client.set(sink)
        try:
            return await call_next(ctx)
        finally:
            _client.reset(token)
            if request is not None:
                await request.close()  # its entries go before its response, on its stream
