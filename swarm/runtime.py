"""The runtime: one per process. Holds the config store, circuit state and local servers,
and builds a ``JobContext`` per job from the config that is current when the job starts.

The local runner and the RunPod handler both go through ``Runtime.run``; nothing here is
built at import time.

Each backend gets its own config section and what it needs injected (the state and models
directories, the image limits, the circuit boards, the local server manager), never the whole
config. Tests swap providers through ``Runtime.override`` (or the ``providers`` argument).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from operator import attrgetter
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from core.config import ConfigStore, SearchSection, SwarmConfig, load_config, state_dir
from core.credentials import (
    JobCredentials,
    accept_credentials,
    config_credential_names,
    current_credentials,
    provider_credential_names,
)
from core.errors import ConfigError
from graphs.context import JobContext, ProgressFn, Providers, _no_progress
from swarm.logs import own_work

if TYPE_CHECKING:
    from graphs.checkpoint import LastStep

log = logging.getLogger("swarm.runtime")

#: the section of ``providers.image`` that configures each image backend
_IMAGE_SECTIONS = {"upscale": attrgetter("upscale"), "remove_background": attrgetter("rembg")}
#: the kinds of provider a job may ask for (``Providers.get``)
PROVIDER_KINDS = ("llm", "search", "storage", *_IMAGE_SECTIONS)


def _known_kinds(providers: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(providers) - set(PROVIDER_KINDS))
    if unknown:
        raise ValueError(f"unknown provider kind(s) {', '.join(unknown)}; valid: {', '.join(PROVIDER_KINDS)}")
    return dict(providers)


class Runtime:
    """Process-wide state shared by every job; config is re-read before each job (hot swap).

    Args:
        config_path: the config file (default: ``SWARM_CONFIG``, then the project's own).
        providers: providers to hand out instead of the configured ones, by kind (``llm``,
            ``search``, ``storage``, ``upscale``, ``remove_background``): fakes in tests.
    """

    #: providers every runtime hands out instead of the configured ones while an ``override``
    #: block runs (they win over the ``providers`` argument); read-only, replaced as a whole
    provider_overrides: ClassVar[Mapping[str, Any]] = MappingProxyType({})

    def __init__(self, config_path: str | Path | None = None, *, providers: Mapping[str, Any] | None = None,
                 last_good: bytes | None = None) -> None:
        self.store = ConfigStore(config_path, last_good=last_good)
        self._own_providers = _known_kinds(providers or {})
        self._providers: tuple[SwarmConfig, tuple[tuple[str, int], ...], Providers] | None = None
        self._circuits: Any = None
        self._circuit_models: dict[str, Any] = {}  # the models table the circuits were last judged by
        self._local_servers: Any = None
        self._search_circuits: Any = None
        self._storage_circuits: Any = None  # the storage chain's, kept across config versions
        #: background housekeeping tasks (old image files pruned), cancelled by ``aclose``
        self.housekeeping: list[asyncio.Task[None]] = []
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

    @staticmethod
    @contextlib.contextmanager
    def override(**providers: Any) -> Iterator[None]:
        """Within this block every runtime, one built inside it included (the MCP server's, the
        worker's), hands out ``providers`` by kind instead of the configured ones: the seam for
        tests, as pydantic-ai's ``Agent.override``. Blocks nest; the inner one wins.

        Raises:
            ValueError: a keyword is not a provider kind.
        """
        outer = Runtime.provider_overrides
        Runtime.provider_overrides = MappingProxyType({**outer, **_known_kinds(providers)})
        try:
            yield
        finally:
            Runtime.provider_overrides = outer

    def providers(self, config: SwarmConfig | None = None) -> Providers:
        """Providers for ``config`` (default: current); rebuilt only when the config or an
        override changed."""
        config = config or self.config
        chosen = {**self._own_providers, **Runtime.provider_overrides}
        stamp = tuple(sorted((kind, id(provider)) for kind, provider in chosen.items()))
        if self._providers and self._providers[0] is config and self._providers[1] == stamp:
            return self._providers[2]
        factories = self._factories(config)
        factories.update({kind: partial(_given, provider) for kind, provider in chosen.items()})
        providers = Providers(config=config, factories=factories)
        self._providers = (config, stamp, providers)
        return providers

    def _factories(self, config: SwarmConfig) -> dict[str, Callable[[], Any]]:
        return {
            "llm": partial(self._llm, config),
            "search": partial(self._search, config),
            "storage": partial(self._storage, config),
            **{kind: partial(self._image, config, kind) for kind in _IMAGE_SECTIONS},
        }

    def _llm(self, config: SwarmConfig) -> Any:
        from providers.llm.router import build_llm_router

        self._close_edited_circuits(config)
        return build_llm_router(
            config.providers.llm, config.models, circuits=self.circuits, local_servers=self.local_servers
        )

    def _close_edited_circuits(self, config: SwarmConfig) -> None:
        """A model an edit of the config redefined (its ``api_base``, ``litellm_model``, key) is
        another endpoint: its circuit starts closed. The board outlives reloads by model name, and a
        fixed ``api_base`` was skipped as "circuit open" for the old address's failures."""
        if config is not self.config:  # a job still on an older config: the current one judges
            return
        before, self._circuit_models = self._circuit_models, dict(config.models)
        for name, spec in config.models.items():
            if name not in before or before[name] == spec:
                continue
            for circuit in self.circuits.of_model(name):  # with a client's key too: the same endpoint
                if self.circuits.state(circuit) != "closed":
                    self.circuits.record_success(circuit)
                    log.info("model %s was redefined by the config edit: circuit %s is closed again", name, circuit)

    def _search(self, config: SwarmConfig) -> Any:
        return self._search_of(config.providers.search)

    def _search_of(self, section: SearchSection) -> Any:
        from providers.search.chain import build_search

        if self._search_circuits is None:
            from providers.circuit import CircuitBoard

            self._search_circuits = CircuitBoard()
        return build_search(section, circuits=self._search_circuits, state_dir=state_dir())

    def _storage(self, config: SwarmConfig) -> Any:
        from providers.registry import backend_class

        section = config.providers.storage

        def store(name: str) -> Any:
            return backend_class("storage", name).from_config(name, section.backends.get(name, {}), state_dir=state_dir())

        if len(section.order) == 1:
            return store(section.default)
        from providers.storage.chain import StorageChain, Unbuilt

        def fallback(name: str) -> Any:
            try:
                return store(name)
            except ConfigError as exc:  # a fallback without its settings: passed over, said in the trace
                return Unbuilt(name, str(exc))

        if self._storage_circuits is None:
            from providers.circuit import CircuitBoard

            self._storage_circuits = CircuitBoard()
        self._storage_circuits.configure(section.circuit)
        stores = [(section.default, store(section.default)), *((name, fallback(name)) for name in section.order[1:])]
        return StorageChain(stores, circuits=self._storage_circuits)

    def _image(self, config: SwarmConfig, kind: str) -> Any:
        from providers.image.imageio import ImageLimits
        from providers.registry import backend_class

        image = config.providers.image
        return backend_class("image", kind).from_config(
            kind,
            _IMAGE_SECTIONS[kind](image),
            models_dir=image.models_dir,
            limits=ImageLimits.from_section(image),
        )

    async def checkpointer(self, config: SwarmConfig) -> Any:
        """A LangGraph saver for this event loop, opened once and kept until ``aclose``."""
        key = (id(asyncio.get_running_loop()), config.checkpointer.model_dump_json())
        async with self._saver_lock:
            if key not in self._savers:
                with own_work():  # the first job to ask opens what every job then uses
                    await self._open_saver(key, config)
            return self._savers[key]

    async def _open_saver(self, key: tuple[int, str], config: SwarmConfig) -> None:
        """Open the store for ``key`` and start its daily pruning: the server's own work (``own_work``),
        whose records (and those of the pool's and the pruning's tasks) went to the MCP client of
        whichever job came first."""
        from core.config import check_state_folders
        from graphs.checkpoint import open_checkpointer
        from graphs.image.retention import prune_if_due

        check_state_folders(config)  # a read-only HOME is a ConfigError naming the path, not an internal error
        self._savers[key] = await self._exit.enter_async_context(open_checkpointer(config))
        # image jobs' files go when their checkpoints do (once a day per state folder), in the
        # background: listing a bucket must not hold up the job that opened the store
        pruning = asyncio.create_task(prune_if_due(lambda: self.providers(config).storage,
                                                   config.checkpointer.retention_days, state_dir()))
        self.housekeeping.append(pruning)
        self._exit.push_async_callback(_cancelled, pruning)

    async def context(self, job_id: str, progress: ProgressFn | None = None) -> JobContext:
        config = self.config
        return JobContext(
            job_id=job_id,
            config=config,
            providers=self._job_providers(config, current_credentials()),
            checkpointer=await self.checkpointer(config),
            progress=progress or _no_progress,
        )

    async def stopped_job(self, job_id: str, project: str, action: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """(partial output, trace) of a job stopped midway (cancelled), from its last checkpoint:
        ``(None, [])`` when it has none (stopped before its first step finished, or no saver)."""
        from graphs.actions import partial_output

        saver = await self.checkpointer(self.config)
        if saver is None:
            return None, []
        stored = await saver.aget_tuple({"configurable": {"thread_id": job_id, "checkpoint_ns": ""}})
        state = dict(stored.checkpoint.get("channel_values") or {}) if stored is not None else {}
        if not state:
            return None, []
        return partial_output(project, action, state), list(state.get("trace") or [])

    async def last_step(self, job_id: str) -> LastStep | None:
        """When a local job's last step ran: its newest checkpoint's time, or its tombstone's (its
        checkpoints pruned); None when no step of it finished. What an unfinished job taken up again
        is judged by (``mcp_server.jobresume``): its row's time moves without a step."""
        from graphs.checkpoint import last_step

        saver = await self.checkpointer(self.config)
        return None if saver is None else await last_step(saver, job_id)

    async def run(self, job: dict[str, Any], progress: ProgressFn | None = None, *,
                  credentials: Any = None) -> dict[str, Any]:
        """Dispatch one job in-process and return its envelope.

        Args:
            credentials: a RunPod job's ``core.credentials.CREDENTIALS_FIELD`` as its client sent
                it (``{}`` when it sent none), already taken out of ``job``; ``None`` for a job
                of this process's own (the local runner), which uses this environment only.
        """
        from swarm.dispatcher import dispatch

        async def make_context(job_id: str) -> JobContext:
            return await self.context(job_id, progress)

        check = None if credentials is None else partial(self.job_credentials, credentials)
        envelope = await dispatch(job, make_context, check, telemetry_config=self.config)
        if (refused := self.store.last_error) and isinstance(envelope.get("trace"), list):
            # an edit of the config file while this process runs that failed validation is only
            # logged: a Desktop user sees no log, so every job's trace says it, first
            from core.redact import redact
            from providers.base import TraceStep

            name = self.store.path.name
            why = " ".join(refused.split("\nrefused the edited config")[0].replace(str(self.store.path), name).split())
            said = TraceStep(step="config", kind="node", provider="config", outcome="error",
                             detail=redact(f"your edit of {name} was refused; this job ran on the last good one: {why}"))
            envelope["trace"] = [said.model_dump(), *envelope["trace"]]
        return envelope

    def job_credentials(self, forwarded: Any) -> JobCredentials:
        """A RunPod job's forwarded credentials, checked against the provider keys this worker's
        config names (``InputError`` for a bad value; unknown names are ignored)."""
        return accept_credentials(forwarded, provider_credential_names(self.config, self.store))

    def _job_providers(self, config: SwarmConfig, forwarded: JobCredentials | None) -> Providers:
        """The providers of one job: the shared ones, except a search chain of its own when its
        client forwarded a key config's search backends take (``${TAVILY_API_KEY}``), which the
        shared chain, built from this process's environment, lacks."""
        shared = self.providers(config)
        if forwarded is None or not forwarded.values or "search" in {**self._own_providers, **Runtime.provider_overrides}:
            return shared
        searched = config_credential_names(self.store).get("search", frozenset())
        keys = {name: value for name, value in forwarded.values.items() if name in searched}
        if not keys:
            return shared
        section = load_config(self.store.path, env={**os.environ, **keys}).providers.search
        factories: dict[str, Callable[[], Any]] = {kind: partial(shared.get, kind) for kind in shared.factories}
        factories["search"] = partial(self._search_of, section)
        return Providers(config=config, factories=factories)  # dropped with the job, keys and all

    async def aclose(self) -> None:
        try:
            await self._exit.aclose()
        finally:  # whatever a saver's close raised, the local model servers are stopped (never orphaned)
            self._savers.clear()
            if self._local_servers is not None:
                self._local_servers.stop_all()


async def _cancelled(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _given(provider: Any) -> Any:
    """The factory of a provider handed in (``providers`` argument or ``Runtime.override``)."""
    return provider
