"""Protocol features ``MCPServer`` leaves to the application: completions, logging/setLevel,
the handshake-era ``resources/subscribe`` (newer clients use ``subscriptions/listen``,
which the SDK serves from the same bus the job manager publishes to), and telling a client's
cancel of a tool call from a connection that closed (``serving_call``, ``call_cancelled``)."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import anyio
import mcp_types as types

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

#: prompt or template argument -> the values worth suggesting
_PROMPT_VALUES = {
    "depth": ["quick", "standard", "deep"],
    "audience": ["an engineer new to the topic", "a decision maker", "an expert"],
}


def register(server: Any, config: Any) -> None:
    """Add completion, logging/setLevel and resources/(un)subscribe to ``server``."""
    from mcp_server.resources import GRAPHS

    values = {**_PROMPT_VALUES, "kind": sorted(config.routing.delegation), "name": list(GRAPHS)}

    @server.completion()
    async def complete(ref: Any, argument: Any, context: Any) -> types.Completion:
        known = values.get(argument.name, [])
        matches = [v for v in known if v.startswith(argument.value or "")]
        return types.Completion(values=matches[:100], total=len(matches), has_more=len(matches) > 100)

    lowlevel = server._lowlevel_server  # the SDK's public hook for extra methods lives there

    async def set_level(ctx: Any, params: types.SetLevelRequestParams) -> types.EmptyResult:
        level = str(params.level).upper()
        logging.getLogger("swarm").setLevel(getattr(logging, level, logging.INFO) if level != "NOTICE" else logging.INFO)
        return types.EmptyResult()

    async def subscribe(ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
        ctx.lifespan_context.subscribe(str(params.uri), ctx.session)
        return types.EmptyResult()

    async def unsubscribe(ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        ctx.lifespan_context.unsubscribe(str(params.uri), ctx.session)
        return types.EmptyResult()

    lowlevel.add_request_handler("logging/setLevel", types.SetLevelRequestParams, set_level)
    lowlevel.add_request_handler("resources/subscribe", types.SubscribeRequestParams, subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, unsubscribe)
