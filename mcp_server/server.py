"""The MCP server: an ``MCPServer`` whose lifespan builds the runtime and the job manager once.

``swarm-mcp`` serves it over stdio; ``swarm-mcp --http`` over streamable HTTP (``build_http_app``,
with the guards of ``mcp_server.http``). Starting it and answering ``tools/list`` imports no litellm, langgraph,
torch or llama_cpp: those load on the first tool call that needs them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import weakref
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp.server import MCPServer
from mcp.server.lowlevel import NotificationOptions
from mcp.server.mcpserver.exceptions import ResourceNotFoundError, ToolError, UnexpectedResourceError
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.shared.subscriptions import ToolsListChanged
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from core.errors import ConfigError, SwarmError
from core.heap import settle, unsettle
from core.redact import redact
from mcp_server import http, job_tools, prompts, protocol, resources, schemas, thread_tools, tools
from mcp_server.cancel import serving_call

# main's steps, defined in mcp_server.process: tests import them from here
from mcp_server.process import check_state_files as _check_state_files
from mcp_server.process import serve_then_exit as _serve_then_exit
from mcp_server.refusals import (
    argument_names,
    check_arguments,
    one_page,
    refused_prompt,
    refused_read,
    tool_failure,
    unknown_tool,
)
from mcp_server.state import ServerState

if TYPE_CHECKING:
    from core.config import SwarmConfig

log = logging.getLogger("swarm.mcp")

INSTRUCTIONS = (
    "runpod-swarm runs a small AI swarm: `delegate` routes a task to a primary model and a "
    "reviewer from another provider family, with fallbacks; `research` writes a cited report; "
    "image tools upscale and cut out images. Every result carries a trace of each provider call. "
    "A tool that outlasts the wait budget returns status IN_PROGRESS and a job_id: finish it with "
    "job_result(job_id). delegate replies carry a thread_id: pass it back to continue the conversation; "
    "`consensus` asks several models at once. Resources: swarm://config, swarm://providers, swarm://jobs/{id}, "
    "swarm://threads/{id}."
)


#: how often a running server looks for a reloaded config, to re-register its tools and tell the
#: listeners (a stat of the file: ``ConfigStore.current``); a request does it at once anyway
TOOLS_WATCH_S = 5.0
#: how long after its start a server settles (``core.heap.settle``): a client sends ``initialize``
#: and ``tools/list`` at once, and the collection before the freeze walks start-up's ~100k objects
#: (31-43 ms on a 2-core AMD EPYC Zen 5), which the first answers no longer wait for
SETTLE_AFTER_S = 1.0


class SwarmServer(MCPServer):
    """``MCPServer`` whose artifact reads carry the stored object's MIME type (image/png, ...):
    a resource template has one MIME type for every URI it matches, the SDK's default text/plain.

    Its tools are those of the config in effect (``serve_tools_of``): a reloaded config (hot swap)
    re-registers them before the next tools/list or tools/call, and tells the clients
    ``notifications/tools/list_changed``: descriptions, limits and choices that come from config
    (the delegation kinds, the search backends research names) never go stale. A client of the
    2026-07-28 protocol hears it on its ``subscriptions/listen`` stream; one of an earlier protocol
    (Claude Desktop and most clients of 2025), which has no such stream, is told on its session,
    as ``tools.listChanged`` in its capabilities promised (``_told``).
    """

    _tools_config: Any = None
    _config_in_effect: Callable[[], Any] | None = None
    _tools_bus: Any = None
    #: the connections of handshake-era clients (before 2026-07-28) that listed or called tools,
    #: weakly held (a closed one goes with its client): told of a reload on the connection itself
    _told: weakref.WeakSet[Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._told = weakref.WeakSet()
        lowlevel = self._lowlevel_server
        # handshake-era clients read listChanged from the initialize answer's capabilities, which
        # the SDK builds from NotificationOptions (default: none); the modern era derives its own
        made = lowlevel.create_initialization_options
        lowlevel.create_initialization_options = lambda notification_options=None, *a, **k: made(  # type: ignore[method-assign]
            notification_options or NotificationOptions(tools_changed=True), *a, **k)
        one_page(lowlevel)  # every list in one page: a cursor is refused, not read as page one

    def _remember_client(self, ctx: Any) -> None:
        """Keep the connection of a handshake-era client, to tell it of a reload. The SDK makes a
        ``ServerSession`` per request; the connection under it lives as long as the client's."""
        if getattr(ctx, "protocol_version", None) in MODERN_PROTOCOL_VERSIONS:
            return
        connection = getattr(getattr(ctx, "session", None), "_connection", None)
        if connection is not None and hasattr(connection, "send_tool_list_changed"):
            self._told.add(connection)

    async def _handle_list_tools(self, ctx: Any, params: Any) -> Any:
        self._remember_client(ctx)
        return await super()._handle_list_tools(ctx, params)

    async def _handle_call_tool(self, ctx: Any, params: Any) -> Any:
        self._remember_client(ctx)
        return await super()._handle_call_tool(ctx, params)

    async def _tell_clients(self) -> None:
        """``notifications/tools/list_changed`` on each remembered handshake-era connection (the
        SDK's send never raises: a closed stream drops it); one that fails otherwise is forgotten,
        and the others are still told."""
        for connection in list(self._told):
            try:
                await connection.send_tool_list_changed()
            except Exception as exc:
                log.debug("tools/list_changed not sent to a client: %s", redact(repr(exc)))
                self._told.discard(connection)

    def serve_tools_of(self, config: Any, in_effect: Callable[[], Any], bus: Any = None) -> None:
        """Register the tools as ``config`` has them; re-register them when ``in_effect()`` (the
        config the jobs get now) is another config, and publish ``ToolsListChanged`` on ``bus``."""
        self._config_in_effect, self._tools_bus = in_effect, bus
        self._register_tools(config)

    def _register_tools(self, config: Any) -> None:
        """The tools as ``config`` has them, all or none: a registration that raises leaves the
        tools of the last config in place, not a list cut short."""
        kept = self._tool_manager.list_tools()
        try:
            for tool in kept:
                self.remove_tool(tool.name)  # all of them, so the order stays the one of a fresh start
            tools.register(self, config)
            job_tools.register(self)
            thread_tools.register(self)
            # the SDK lists a server's registered tools on its tool manager only
            schemas.compact_tools(self._tool_manager.list_tools())
            tools.admit_failures(self._tool_manager.list_tools())
        except BaseException:
            for tool in self._tool_manager.list_tools():
                self.remove_tool(tool.name)
            for tool in kept:  # the SDK adds a built Tool on its tool manager's dict only
                self._tool_manager._tools[tool.name] = tool
            raise
        self._tools_config = config

    async def refresh_tools(self) -> bool:
        """Re-register the tools if the config in effect is not the one they came from; True when
        they were (a call then looks its tool up again). The listeners are told only when what
        tools/list says changed (names, descriptions, schemas): an edit of models or routing alone
        re-registers them quietly."""
        if self._config_in_effect is None:
            return False
        config = self._config_in_effect()
        if config is self._tools_config:
            return False
        if config == self._tools_config:  # the same file read again (the runtime's own store)
            self._tools_config = config
            return False
        listed = await super().list_tools()
        self._register_tools(config)
        if await super().list_tools() == listed:
            log.info("config reloaded: tools re-registered from it, the list unchanged")
            return True
        log.info("config reloaded: tools re-registered from it")
        if self._tools_bus is not None:
            await self._tools_bus.publish(ToolsListChanged())
        await self._tell_clients()
        return True

    async def watch_tools(self, every_s: float = TOOLS_WATCH_S) -> None:
        """Refresh the tools every ``every_s`` seconds, so a listener hears of a reload unasked."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.refresh_tools()
            except SwarmError as exc:  # the tools keep the last config's; the next look tries again
                log.warning("tools not refreshed: %s", redact(str(exc)))
            except Exception as exc:  # nor may anything else end the watch: no listener would hear again
                log.error("tools not refreshed: %s", redact(repr(exc)))

    async def list_tools(self) -> list[Any]:
        try:
            await self.refresh_tools()
        except SwarmError as exc:  # the tools of the last config that loaded are still right enough
            log.warning("tools not refreshed: %s", redact(str(exc)))
        return await super().list_tools()

    async def read_resource(self, uri: Any, context: Any = None) -> Any:
        """The SDK's read, bad input told as the tools tell it (``refusals.refused_read``): a
        resource that does not exist is MCP's "resource not found" in the code of the client's
        protocol, other bad input ``INVALID_PARAMS``, the URI and the error's ``field`` as data."""
        try:
            result = await super().read_resource(uri, context)
        except (UnexpectedResourceError, ResourceNotFoundError) as exc:
            refused = refused_read(exc, str(uri), context, self._resource_manager)
            if refused is None:
                raise
            raise refused from None
        prefix = "swarm://artifacts/"
        if not str(uri).startswith(prefix) or not isinstance(result, list):
            return result
        from dataclasses import replace

        from mcp_server.previews import mime_type_of

        mime = mime_type_of(str(uri).removeprefix(prefix))
        return [replace(item, mime_type=mime) for item in result]

    async def get_prompt(self, name: str, arguments: dict[str, Any] | None = None, context: Any = None) -> Any:
        """The SDK's, with a bad argument named to the client (the SDK answers any failure with
        'Internal server error'): ``refusals.refused_prompt``."""
        try:
            return await super().get_prompt(name, arguments, context)
        except ValueError as exc:
            refused = refused_prompt(self._prompt_manager, name, arguments, exc)
            if refused is None:
                raise
            raise refused from None

    async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
        """The SDK's call, every failure answered as a failed job answers (``results.call_failed``):
        ``isError``, "Type: field: message" and the structured error, where the SDK sent "Error
        executing tool NAME: ..." or, for a crash, only that. Bad arguments are told as the house
        tells bad input: each field and what is wrong with it, an unknown one refused with the
        arguments the tool takes (the SDK's text is pydantic's, with the input value echoed and a link)."""
        tool = self._tool_manager.get_tool(name)
        known = argument_names(tool)
        try:
            if await self.refresh_tools():  # a reloaded config: the call meets the tool as it now is
                tool = self._tool_manager.get_tool(name)
                known = argument_names(tool)
            if tool is None:  # a protocol error in MCP (the request names nothing), not a failed call
                raise unknown_tool(name, self._tool_manager.list_tools())
            check_arguments(name, arguments, known)  # one the tool lacks: the SDK would drop it
            arguments = schemas.as_given(tool, arguments or {})
            with serving_call(context):  # a job the call starts ends with it if the client cancels it
                return await super().call_tool(name, arguments, context)
        except (ToolError, SwarmError) as exc:
            return tool_failure(name, exc, known).result


def build_server(config_path: str | None = None, *, jobs_path: Path | None = None, config: SwarmConfig | None = None,
                 **server_kwargs: Any) -> MCPServer:
    """The MCP server with every available tool, resource and prompt registered.

    Args:
        config_path: config file (default: ``$SWARM_CONFIG`` or the project's config.yaml).
        jobs_path: the job store (default: ``state_dir()/jobs.sqlite``).
        config: ``config_path`` already loaded (``main`` has it: read once on a cold start).
        server_kwargs: passed to ``MCPServer`` (the HTTP transport adds ``token_verifier`` and ``auth``).
    """
    from core.config import config_path as resolve_config_path
    from core.config import load_config

    config = config or load_config(resolve_config_path(config_path))
    bus = InMemorySubscriptionBus()
    live: list[ServerState] = []  # the state of the running lifespan, for static resources

    def config_now() -> SwarmConfig:
        """The config the jobs get now (hot-swapped), or the start's outside a lifespan."""
        return live[-1].runtime.config if live else config  # type: ignore[no-any-return]

    @contextlib.asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[ServerState]:
        state = ServerState(config_path=config_path, bus=bus, jobs_path=jobs_path)
        await state.start()
        loop = asyncio.get_running_loop()
        settling = loop.call_later(SETTLE_AFTER_S, settle)  # start-up's objects leave the collector's walk
        live.append(state)
        watcher = loop.create_task(server.watch_tools())
        try:
            yield state
        finally:
            settling.cancel()
            watcher.cancel()
            live.remove(state)
            await state.aclose()
            unsettle()  # this lifespan's state, frozen by settle(), can be collected now

    server = SwarmServer(
        name="runpod-swarm", instructions=INSTRUCTIONS, version=_version(), lifespan=lifespan,
        subscriptions=bus, **server_kwargs,
    )
    server.serve_tools_of(config, config_now, bus)
    resources.register(server, lambda: live[-1])
    prompts.register(server, lambda: sorted(config_now().routing.delegation), lambda: config_now().limits)
    protocol.register(server, lambda: sorted(config_now().routing.delegation))
    return server


def build_http_app(config_path: str | None = None, *, host: str = "127.0.0.1", port: int = 8808,
                   env: dict[str, str] | None = None, config: SwarmConfig | None = None, **server_kwargs: Any) -> Any:
    """The Starlette app serving MCP at ``/mcp`` and a health check at ``/health``.

    Args:
        config_path: config file (default: ``$SWARM_CONFIG`` or the project's config.yaml).
        host: the bind address (loopback needs no token; anything else warns without one).
        port: the port, for the issuer URL of bearer-token auth.
        env: where the tokens' env var is read (default: ``os.environ``).
        config: ``config_path`` already loaded.
        server_kwargs: passed to ``build_server``.
    """
    from core.config import config_path as resolve_config_path
    from core.config import load_config

    config = config or load_config(resolve_config_path(config_path))
    auth = http.auth_kwargs(config, host=host, port=port, env=env)
    server = build_server(config_path, config=config, **{**server_kwargs, **auth})
    return http.http_app(server, config, host=host, auth=bool(auth))


def main(argv: list[str] | None = None) -> None:
    """``swarm-mcp [--config PATH] [--http [--host H] [--port P]]``."""
    parser = argparse.ArgumentParser(
        prog="swarm-mcp",
        description="The runpod-swarm MCP server: research, delegate, consensus and the image tools for an MCP"
        " client (Claude Desktop, an IDE agent). Over stdio by default, as a client starts it; --http serves"
        " streamable HTTP at http://HOST:PORT/mcp (set SWARM_MCP_TOKENS to require a bearer token). See docs/MCP.md.")
    parser.add_argument("--config", help="config file (default: $SWARM_CONFIG or the project's config.yaml)")
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8808, help="HTTP port (default 8808)")
    args = parser.parse_args(argv)
    from core.config import check_state_folders, config_path, load_config
    from core.redact import install_log_redaction
    from swarm.logs import configure_logging

    try:
        config = load_config(config_path(args.config))  # fail fast on a broken file, with the keys named
        check_state_folders(config)  # jobs, threads and checkpoints need their folder: say so at start
        _check_state_files(config)
        # JSON lines on stderr (stdout carries the protocol); SWARM_LOG_LEVEL overrides config.
        configure_logging(os.environ.get("SWARM_LOG_LEVEL") or config)
    except ConfigError as exc:
        print(f"swarm-mcp: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    install_log_redaction()
    if args.http:
        try:
            app = build_http_app(args.config, host=args.host, port=args.port, config=config)
        except ConfigError as exc:  # a malformed or short bearer token
            raise SystemExit(f"swarm-mcp: {exc}") from None
        _serve_then_exit(lambda: http.serve(app, host=args.host, port=args.port))
    else:
        _serve_then_exit(lambda: build_server(args.config, config=config).run("stdio"))


def _version() -> str:
    """The installed package's version (pyproject.toml's), as clients are told it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("runpod-swarm")
    except PackageNotFoundError:  # run from a tree that is not installed
        return "0.0.0"


if __name__ == "__main__":
    main()
