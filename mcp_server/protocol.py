"""Protocol features ``MCPServer`` leaves to the application: completions, logging/setLevel,
the handshake-era ``resources/subscribe`` (newer clients use ``subscriptions/listen``,
which the SDK serves from the same bus the job manager publishes to). Telling a client's cancel
of a tool call from a closed connection is ``mcp_server.cancel``."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import Any

import mcp_types as types

from mcp_server.refusals import unknown_ref

log = logging.getLogger("swarm.mcp")

#: MCP's log levels (RFC 5424's severities, least severe first) as Python's: notice, "normal but
#: significant", sits between info and warning (25: Python has no name for it); alert and emergency,
#: above critical in RFC 5424, are Python's most severe, CRITICAL, as critical is
LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "notice": logging.INFO + 5, "warning": logging.WARNING,
              "error": logging.ERROR, "critical": logging.CRITICAL, "alert": logging.CRITICAL,
              "emergency": logging.CRITICAL}

#: prompt or template argument -> the values worth suggesting
_PROMPT_VALUES = {
    "depth": ["quick", "standard", "deep"],
    "audience": ["an engineer new to the topic", "a decision maker", "an expert"],
}


def register(server: Any, kinds_of: Callable[[], list[str]]) -> None:
    """Add completion, logging/setLevel and resources/(un)subscribe to ``server``; ``kinds_of()``:
    the delegation kinds of the config in effect (read at each completion: a hot swap counts). A
    completion whose ref names no prompt or resource template of ``server`` is refused
    (``refusals.unknown_ref``); setLevel records the client's level only (``set_level``)."""
    from mcp_server.resources import GRAPHS

    values = {**_PROMPT_VALUES, "name": list(GRAPHS)}

    @server.completion()
    async def complete(ref: Any, argument: Any, context: Any) -> types.Completion:
        refused = unknown_ref(ref, server._prompt_manager, server._resource_manager)
        if refused is not None:  # MCP's completion: an invalid prompt name is INVALID_PARAMS
            raise refused
        known = kinds_of() if argument.name == "kind" else values.get(argument.name, [])
        matches = [v for v in known if v.startswith(argument.value or "")]
        return types.Completion(values=matches[:100], total=len(matches), has_more=len(matches) > 100)

    lowlevel = server._lowlevel_server  # the SDK's public hook for extra methods lives there
    #: each client connection's level (``LOG_LEVELS``), weakly held: what a sender of
    #: ``notifications/message`` would filter by; this server sends none
    levels: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
    server.client_log_levels = levels

    async def set_level(ctx: Any, params: types.SetLevelRequestParams) -> types.EmptyResult:
        """Record the client's level, and change nothing else. MCP's setLevel is the least severe
        ``notifications/message`` the server sends that client; this server sends none (a job's
        steps go as progress notifications), so there is nothing to filter. Its own log on stderr is
        the operator's (``observability.log_level``, ``SWARM_LOG_LEVEL``): over HTTP one process
        serves many clients, and no one client may silence the warnings the operator reads (or
        flood them with debug), as setting the ``swarm`` logger's level from here did."""
        connection = getattr(getattr(ctx, "session", None), "_connection", None)
        if connection is not None:  # the one a handshake-era client keeps; a stateless request has none
            levels[connection] = LOG_LEVELS[str(params.level)]
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
