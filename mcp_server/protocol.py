"""Protocol features ``MCPServer`` leaves to the application: completions, logging/setLevel,
the handshake-era ``resources/subscribe`` (newer clients use ``subscriptions/listen``,
which the SDK serves from the same bus the job manager publishes to). Telling a client's cancel
of a tool call from a closed connection is ``mcp_server.cancel``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import mcp_types as types

log = logging.getLogger("swarm.mcp")

#: prompt or template argument -> the values worth suggesting
_PROMPT_VALUES = {
    "depth": ["quick", "standard", "deep"],
    "audience": ["an engineer new to the topic", "a decision maker", "an expert"],
}


def register(server: Any, kinds_of: Callable[[], list[str]]) -> None:
    """Add completion, logging/setLevel and resources/(un)subscribe to ``server``; ``kinds_of()``:
    the delegation kinds of the config in effect (read at each completion: a hot swap counts)."""
    from mcp_server.resources import GRAPHS

    values = {**_PROMPT_VALUES, "name": list(GRAPHS)}

    @server.completion()
    async def complete(ref: Any, argument: Any, context: Any) -> types.Completion:
        known = kinds_of() if argument.name == "kind" else values.get(argument.name, [])
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
