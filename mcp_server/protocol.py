"""Protocol features ``MCPServer`` leaves to the application: completions, logging/setLevel,
the handshake-era ``resources/subscribe`` (newer clients use ``subscriptions/listen``,
which the SDK serves from the same bus the job manager publishes to). Telling a client's cancel
of a tool call from a closed connection is ``mcp_server.cancel``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import mcp_types as types
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcp_server import client_log
from mcp_server.client_log import LOG_LEVELS as LOG_LEVELS
from mcp_server.prompts import suggestions
from mcp_server.refusals import unknown_ref

log = logging.getLogger("swarm.mcp")

#: the most values one completion answers (MCP's limit)
MAX_COMPLETIONS = 100


def register(server: Any, kinds_of: Callable[[], list[str]]) -> None:
    """Add completion, logging/setLevel and resources/(un)subscribe to ``server``; ``kinds_of()``:
    the delegation kinds of the config in effect (read at each completion: a hot swap counts). A
    completion whose ref names no prompt or resource template of ``server`` is refused
    (``refusals.unknown_ref``); one for an argument its ref does not have gets no values. setLevel
    has the server send that client its log records at or above the level; a client of 2026-07-28
    has no setLevel and asks per request (``io.modelcontextprotocol/logLevel`` in its ``_meta``),
    served by the same middleware on that request's stream (``mcp_server.client_log``)."""
    choices = completion_choices(kinds_of)

    @server.completion()
    async def complete(ref: Any, argument: Any, context: Any) -> types.Completion:
        refused = unknown_ref(ref, server._prompt_manager, server._resource_manager)
        if refused is not None:  # MCP's completion: an invalid prompt name is INVALID_PARAMS
            raise refused
        known = choices(ref).get(argument.name, lambda: [])()
        matches = [v for v in known if v.startswith(argument.value or "")]
        return types.Completion(values=matches[:MAX_COMPLETIONS], total=len(matches),
                                has_more=len(matches) > MAX_COMPLETIONS)

    lowlevel = server._lowlevel_server  # the SDK's public hook for extra methods lives there
    logs = client_log.ClientLogs()  # each connection's level, and what waits to be sent to it
    server.client_logs = logs
    lowlevel.middleware.append(logs.middleware)  # each request's records belong to its client
    client_log.install()

    async def set_level(ctx: Any, params: types.SetLevelRequestParams) -> types.EmptyResult:
        """The least severe ``notifications/message`` this client is sent from now on: its work's
        log records at or above it, its own level (``ClientLog``), never the operator's stderr log
        (``observability.log_level``, ``SWARM_LOG_LEVEL``): over HTTP one process serves many
        clients, and no one client may silence the warnings the operator reads (or flood them)."""
        connection = getattr(getattr(ctx, "session", None), "_connection", None)
        # a stateless request has none; a client of 2026-07-28 opts in per request (SEP-2575), and
        # the SDK answers its setLevel "method not found" before this runs (ClientLogs.middleware
        # reads that request's level)
        if connection is not None and connection.protocol_version not in MODERN_PROTOCOL_VERSIONS:
            logs.of(connection).level = str(params.level)
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


def completion_choices(kinds_of: Callable[[], list[str]]) -> Callable[[Any], dict[str, Callable[[], list[str]]]]:
    """What a completion ref offers: a prompt's arguments (``prompts.suggestions``) or a resource
    template's variables, each to the values worth suggesting now; a ref or argument not here, none."""
    from mcp_server.resources import GRAPHS

    prompts = suggestions(kinds_of)
    templates: dict[str, dict[str, Callable[[], list[str]]]] = {"swarm://graphs/{name}": {"name": lambda: list(GRAPHS)}}

    def of(ref: Any) -> dict[str, Callable[[], list[str]]]:
        uri = getattr(ref, "uri", None)
        if uri is not None:
            return templates.get(str(uri), {})
        return prompts.get(str(getattr(ref, "name", "")), {})

    return of
