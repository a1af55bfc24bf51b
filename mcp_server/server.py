"""The MCP server: an ``MCPServer`` whose lifespan builds the runtime and the job manager once.

``swarm-mcp`` serves it over stdio; ``swarm-mcp --http`` over streamable HTTP (see
``mcp_server.http``). Starting it and answering ``tools/list`` imports no litellm, langgraph,
torch or llama_cpp: those load on the first tool call that needs them.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mcp.server import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated

INSTRUCTIONS = (
    "runpod-swarm runs a small AI swarm: `delegate` routes a task to a primary model and a "
    "reviewer from another provider family, with fallbacks; `research` writes a cited report; "
    "image tools upscale and cut out images. Every result carries a trace of each provider call. "
    "A tool that outlasts the wait budget returns status IN_PROGRESS and a job_id: finish it with "
    "job_result(job_id). Resources: swarm://config, swarm://providers, swarm://jobs/{id}."
)


@dataclass
class ServerState:
    """Shared by every request: the runtime (config, circuits, models), the runner and the jobs."""

    config_path: str | None
    bus: Any = None
    jobs_path: Path | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("swarm.mcp"))
    subscribers: dict[str, list[Any]] = field(default_factory=dict)  # uri -> sessions (resources/subscribe)
    _runtime: Any = None
    _jobs: Any = None

    @property
    def runtime(self) -> Any:
        if self._runtime is None:
            from swarm.runtime import Runtime

            self._runtime = Runtime(self.config_path)
        return self._runtime

    def runner(self) -> Any:
        """The runner chosen by config (``runner.kind``), re-chosen when config changes."""
        from swarm.executors import make_executor

        return make_executor(self.runtime.config, self.runtime)

    @property
    def jobs(self) -> Any:
        """The job manager (store under ``core.config.state_dir()/jobs.sqlite``)."""
        if self._jobs is None:
            from core.config import state_dir
            from swarm.jobs import JobLoop, JobManager, JobStore

            store = JobStore(self.jobs_path or state_dir() / "jobs.sqlite")
            self._jobs = JobManager(
                store,
                runner=self.runner,
                wait_budget_s=lambda: self.runtime.config.runner.wait_budget_s,
                on_finished=self._job_finished,
                job_loop=JobLoop(),  # jobs never block the protocol loop
            )
        return self._jobs

    def subscribe(self, uri: str, session: Any) -> None:
        sessions = self.subscribers.setdefault(uri, [])
        if session not in sessions:
            sessions.append(session)

    def unsubscribe(self, uri: str, session: Any) -> None:
        sessions = self.subscribers.get(uri, [])
        if session in sessions:
            sessions.remove(session)

    async def _job_finished(self, job_id: str) -> None:
        """Tell listeners (subscriptions/listen) and subscribers (resources/subscribe) a job changed."""
        uri = f"swarm://jobs/{job_id}"
        if self.bus is not None:
            await self.bus.publish(ResourceUpdated(uri=uri))
        for session in list(self.subscribers.get(uri, [])):
            try:
                await session.send_resource_updated(uri)
            except Exception:  # a session that went away is dropped, the others still hear
                self.unsubscribe(uri, session)

    async def start(self) -> None:
        """Resume the jobs a previous server left unfinished (same job ids, from checkpoints)."""
        from core.config import state_dir

        path = self.jobs_path or state_dir() / "jobs.sqlite"
        if path.exists():  # no store yet -> nothing to resume, and nothing heavy to import
            self.jobs.resume_unfinished()

    async def aclose(self) -> None:
        runtime = self._runtime
        if self._jobs is not None:
            # the runtime's checkpointers were opened on the jobs' loop: close them there
            await self._jobs.aclose(final=runtime.aclose if runtime is not None else None)
            self._jobs.store.close()
        elif runtime is not None:
            await runtime.aclose()


def build_server(config_path: str | None = None, *, jobs_path: Path | None = None, **server_kwargs: Any) -> MCPServer:
    """The MCP server with every available tool, resource and prompt registered.

    Args:
        config_path: config file (default: ``$SWARM_CONFIG`` or the project's config.yaml).
        jobs_path: the job store (default: ``state_dir()/jobs.sqlite``).
        server_kwargs: passed to ``MCPServer`` (the HTTP transport adds ``token_verifier`` and ``auth``).
    """
    from core.config import config_path as resolve_config_path
    from core.config import load_config

    config = load_config(resolve_config_path(config_path))
    bus = InMemorySubscriptionBus()
    live: list[ServerState] = []  # the state of the running lifespan, for static resources

    @contextlib.asynccontextmanager
    async def lifespan(server: MCPServer) -> AsyncIterator[ServerState]:
        state = ServerState(config_path=config_path, bus=bus, jobs_path=jobs_path)
        await state.start()
        live.append(state)
        try:
            yield state
        finally:
            live.remove(state)
            await state.aclose()

    server = MCPServer(
        name="runpod-swarm", instructions=INSTRUCTIONS, version="0.2.0", lifespan=lifespan,
        subscriptions=bus, **server_kwargs,
    )
    from mcp_server import job_tools, prompts, protocol, resources, tools

    tools.register(server, config)
    job_tools.register(server)
    resources.register(server, lambda: live[-1])
    prompts.register(server)
    protocol.register(server, config)
    return server


def main(argv: list[str] | None = None) -> None:
    """``swarm-mcp [--config PATH] [--http [--host H] [--port P]]``."""
    parser = argparse.ArgumentParser(prog="swarm-mcp", description=__doc__)
    parser.add_argument("--config", help="config file (default: $SWARM_CONFIG or the project's config.yaml)")
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8808, help="HTTP port (default 8808)")
    args = parser.parse_args(argv)
    from core.config import config_path, load_config
    from core.errors import ConfigError
    from core.redact import install_log_redaction
    from swarm.observability import configure_logging

    try:
        config = load_config(config_path(args.config))  # fail fast on a broken file, with the keys named
    except ConfigError as exc:
        print(f"swarm-mcp: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    # JSON lines on stderr (stdout carries the protocol); SWARM_LOG_LEVEL overrides config.
    configure_logging(os.environ.get("SWARM_LOG_LEVEL") or config)
    install_log_redaction()
    if args.http:
        from mcp_server.http import serve_http

        serve_http(args.config, host=args.host, port=args.port)
    else:
        build_server(args.config).run("stdio")


if __name__ == "__main__":
    main()
