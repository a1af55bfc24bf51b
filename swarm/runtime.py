"""The runtime: one per process. Holds the config store, circuit state and local servers,
and builds a ``JobContext`` per job from the config that is current when the job starts.

The local runner and the RunPod handler both go through ``Runtime.run``; nothing here is
built at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

from core.config import ConfigStore, SwarmConfig
from graphs.context import JobContext, ProgressFn, Providers, _no_progress

log = logging.getLogger("swarm.runtime")


class Runtime:
    """Process-wide state shared by every job; config is re-read before each job (hot swap)."""

    def __init__(self, config_path: str | Path | None = None) -> None:
        self.store = ConfigStore(config_path)
        self._providers: tuple[SwarmConfig, Providers] | None = None
        self._circuits: Any = None
        self._local_servers: Any = None
        self._search_circuits: Any = None
        self._savers: dict[tuple[int, str], Any] = {}
        self._exit = contextlib.AsyncExitStack()
        self._saver_lock = asyncio.Lock()

    @property
    def config(self) -> SwarmConfig:
        return self.store.current()

    @property
    def circuits(self) -> Any:
        if self._circuits is None:
            from providers.circuit import CircuitBoard

            self._circuits = CircuitBoard()
        return self._circuits

    @property
    def local_servers(self) -> Any:
        if self._local_servers is None:
            from providers.llm.local_server import LocalServerManager

            self._local_servers = LocalServerManager()
        return self._local_servers

    def providers(self, config: SwarmConfig | None = None) -> Providers:
        """Providers for ``config`` (default: current); rebuilt only when the config changed."""
        config = config or self.config
        if self._providers and self._providers[0] is config:
            return self._providers[1]
        providers = Providers(config=config, factories=self._factories(config))
        self._providers = (config, providers)
        return providers

    def _factories(self, config: SwarmConfig) -> dict[str, Any]:
        from providers.registry import backend_class

        def llm() -> Any:
            from providers.llm.router import build_llm_router

            return build_llm_router(config, circuits=self.circuits, local_servers=self.local_servers)

        def search() -> Any:
            from providers.search.chain import build_search

            if self._search_circuits is None:
                from providers.circuit import CircuitBoard

                self._search_circuits = CircuitBoard()
            return build_search(config, circuits=self._search_circuits)

        def storage() -> Any:
            section = config.providers.storage
            cls = backend_class("storage", section.default)
            return cls.from_config(section.default, section.backends.get(section.default, {}), config)

        def image(kind: str) -> Any:
            return lambda: backend_class("image", kind).from_config(kind, {}, config)

        return {
            "llm": llm,
            "search": search,
            "storage": storage,
            "upscale": image("upscale"),
            "remove_background": image("remove_background"),
        }

    async def checkpointer(self, config: SwarmConfig) -> Any:
        """A LangGraph saver for this event loop, opened once and kept until ``aclose``."""
        from graphs.checkpoint import open_checkpointer

        key = (id(asyncio.get_running_loop()), config.checkpointer.model_dump_json())
        async with self._saver_lock:
            if key not in self._savers:
                self._savers[key] = await self._exit.enter_async_context(open_checkpointer(config))
            return self._savers[key]

    async def context(self, job_id: str, progress: ProgressFn | None = None) -> JobContext:
        config = self.config
        return JobContext(
            job_id=job_id,
            config=config,
            providers=self.providers(config),
            checkpointer=await self.checkpointer(config),
            progress=progress or _no_progress,
        )

    async def run(self, job: dict[str, Any], progress: ProgressFn | None = None) -> dict[str, Any]:
        """Dispatch one job in-process (the local runner) and return its envelope."""
        from swarm.dispatcher import dispatch

        async def make_context(job_id: str) -> JobContext:
            return await self.context(job_id, progress)

        return await dispatch(job, make_context)

    async def aclose(self) -> None:
        await self._exit.aclose()
        self._savers.clear()
        if self._local_servers is not None:
            self._local_servers.stop_all()
