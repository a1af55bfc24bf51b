"""The MCP server: an ``MCPServer`` whose lifespan builds the runtime once.

``swarm-mcp`` serves it over stdio. Starting it and answering ``tools/list`` imports no
litellm, langgraph, torch or llama_cpp: those load on the first tool call that needs them.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from mcp.server import MCPServer

INSTRUCTIONS = (
    "runpod-swarm runs a small AI swarm: `delegate` routes a task to a primary model and a "
    "reviewer from another provider family, with fallbacks; every result carries a trace of "
    "each provider call."
)


@dataclass
class ServerState:
    """Shared by every request: the runtime (config, circuits, models) and the runner."""

    config_path: str | None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("swarm.mcp"))
    _runtime: Any = None
    _runner: Any = None

    @property
    def runtime(self) -> Any:
        if self._runtime is None:
            from swarm.runtime import Runtime

            self._runtime = Runtime(self.config_path)
        return self._runtime

    def runner(self) -> Any:
        """The runner chosen by config (``runner.kind``), re-chosen when config changes."""
        try:
            from swarm.runners import make_runner
        except ModuleNotFoundError:
            return self.runtime
        return make_runner(self.runtime.config, self.runtime)


def build_server(config_path: str | None = None) -> MCPServer:
    """The MCP server with every tool registered; the runtime is built in the lifespan."""

    @contextlib.asynccontextmanager
    async def lifespan(server: MCPServer) -> AsyncIterator[ServerState]:
        state = ServerState(config_path=config_path)
        try:
            yield state
        finally:
            if state._runtime is not None:
                await state._runtime.aclose()

    server = MCPServer(name="runpod-swarm", instructions=INSTRUCTIONS, version="0.1.0", lifespan=lifespan)
    from mcp_server import tools

    tools.register(server)
    return server


def main(argv: list[str] | None = None) -> None:
    """``swarm-mcp [--config PATH]``: serve over stdio."""
    parser = argparse.ArgumentParser(prog="swarm-mcp", description=__doc__)
    parser.add_argument("--config", help="config file (default: $SWARM_CONFIG or the project's config.yaml)")
    args = parser.parse_args(argv)
    logging.basicConfig(
        stream=sys.stderr,  # stdout carries the protocol
        level=os.environ.get("SWARM_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    from providers.errors import ConfigError
    from swarm.config import config_path, load_config

    try:
        load_config(config_path(args.config))  # fail fast on a broken file, with the keys named
    except ConfigError as exc:
        print(f"swarm-mcp: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    build_server(args.config).run("stdio")


if __name__ == "__main__":
    main()
