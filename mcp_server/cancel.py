"""Telling a client's cancel of a tool call (``notifications/cancelled``: the Stop button) from a
connection that closed: both reach the handler as the cancellation of its scope. Imports nothing
of this package, so the job manager and the server can both use it."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import anyio

log = logging.getLogger("swarm.mcp")

#: the ``cancel_requested`` event of the tools/call being served (``serving_call`` sets it per call)
_CANCEL_REQUESTED: ContextVar[anyio.Event | None] = ContextVar("swarm_cancel_requested", default=None)


@contextlib.contextmanager
def serving_call(context: Any) -> Iterator[None]:
    """For the length of one tools/call (``context``: the tool's ``Context``): keep the request's
    cancel event where ``call_cancelled`` finds it."""
    token = _CANCEL_REQUESTED.set(_cancel_event(context))
    try:
        yield
    finally:
        _CANCEL_REQUESTED.reset(token)


def call_cancelled() -> bool:
    """Whether the client cancelled the tools/call being served (``notifications/cancelled``: the
    Stop button), as opposed to going away. Both reach the handler as the cancellation of its scope;
    only a cancel sets the request's ``cancel_requested`` first (mcp's ``JSONRPCDispatcher`` sets it,
    then cancels that one handler; at the end of the input it cancels every handler without it)."""
    event = _CANCEL_REQUESTED.get()
    return event is not None and event.is_set()


def _cancel_event(context: Any) -> anyio.Event | None:
    """The request's ``cancel_requested`` event, None outside a request (a direct ``call_tool``).

    The SDK keeps it on the request's dispatch context; an ``MCPServer`` tool's context reaches that
    only as its ``ServerSession``'s ``_request_outbound`` (mcp 2.3.0: the public
    ``mcp.server.context.Context.cancel_requested`` is not the context ``MCPServer`` hands tools).
    ``tests/test_mcp_cancel.py`` fails if an SDK upgrade moves it."""
    try:
        session = context.request_context.session
    except (AttributeError, ValueError):  # no request behind this call
        return None
    event = getattr(getattr(session, "_request_outbound", None), "cancel_requested", None)
    if isinstance(event, anyio.Event):
        return event
    _warn_no_cancel_event()
    return None


@functools.cache
def _warn_no_cancel_event() -> None:
    log.warning("this mcp version hides a tool call's cancel event: a call the client cancels leaves its job"
                " running (stop it with job_cancel)")
