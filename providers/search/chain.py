"""The search fallback chain: backends tried in config order, each attempt traced.

A backend that is not configured (no URL, no key, no corpus) is skipped at once; one whose
circuit is open is skipped too; one that fails with a ``ProviderError`` counts against its
circuit and the next is tried. A backend that answers with nothing hands over to the next as
well, so an empty web search still reaches the local index. When no backend answered at all,
``AllProvidersFailed("search", attempts)`` lists every attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import AllProvidersFailed, ConfigError, InputError, ProviderError
from core.redact import redact
from providers.base import Configurable, DocumentReader, SearchProvider, SearchResult, TracedSearch, TraceStep

if TYPE_CHECKING:
    import httpx

    from core.config import SearchSection
    from providers.circuit import CircuitBoard

BackendFactory = Callable[[str], SearchProvider]
log = logging.getLogger("providers.search.chain")


def _step(name: str, step: str, started: float, outcome: str, *, error: Exception | None = None, detail: str = "") -> TraceStep:
    return TraceStep(
        step=step,
        kind="search",
        provider=name,
        latency_ms=(time.perf_counter() - started) * 1000,
        outcome=outcome,  # type: ignore[arg-type]
        error_class=type(error).__name__ if error else None,
        detail=redact(detail or (str(error) if error else ""))[:500] or None,
    )


class SearchChain:
    """A SearchProvider over several backends, tried in order.

    Args:
        backends: ``(name, backend)`` pairs in the order to try them.
        circuits: a circuit board shared across config versions (None: no circuit breaking).
        factory: builds any configured backend by name, for ``only()``.
    """

    def __init__(
        self,
        backends: Sequence[tuple[str, SearchProvider]],
        *,
        circuits: CircuitBoard | None = None,
        factory: BackendFactory | None = None,
        known: Sequence[str] = (),
    ) -> None:
        self.backends = list(backends)
        self.circuits = circuits
        self._factory = factory
        self.known = list(known) or [name for name, _ in self.backends]

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.backends]

    def only(self, names: Sequence[str]) -> SearchChain:
        """A chain over just ``names``, in that order.

        Raises:
            InputError: a name is not a configured search backend (field ``backends``).
        """
        unknown = [n for n in names if n not in self.known]
        if unknown or not names:
            raise InputError(
                f"unknown search backend(s) {', '.join(map(repr, unknown)) or '(none given)'};"
                f" valid: {', '.join(self.known)}",
                field="backends",
            )
        mine = dict(self.backends)
        chosen = []
        for name in dict.fromkeys(names):
            backend = mine.get(name)
            if backend is None:
                if self._factory is None:
                    raise InputError(f"search backend {name!r} cannot be built here", field="backends")
                backend = self._factory(name)
            chosen.append((name, backend))
        return SearchChain(chosen, circuits=self.circuits, factory=self._factory, known=self.known)

    async def _try(self, name: str, backend: SearchProvider, query: str, max_results: int, step: str) -> tuple[list[SearchResult] | None, TraceStep]:
        started = time.perf_counter()
        reason = backend.unconfigured_reason() if isinstance(backend, Configurable) else None
        if reason:
            return None, _step(name, step, started, "skipped", detail=reason)
        if self.circuits is not None:
            blocked = self.circuits.acquire(name)
            if blocked:
                return None, _step(name, step, started, "skipped", detail=blocked)
        detail: str | None = None
        try:
            if isinstance(backend, TracedSearch):  # its own step says more (SearXNG: engines that failed)
                results, own = await backend.search_traced(query, max_results, step=step)
                detail = next((s.detail for s in own if s.detail), None)
            else:
                results = await backend.search(query, max_results)
        except ProviderError as exc:
            if self.circuits is not None:
                self.circuits.record_failure(name, type(exc).__name__)
            return None, _step(name, step, started, "error", error=exc)
        except asyncio.CancelledError:
            if self.circuits is not None:
                self.circuits.release(name)
            raise
        except Exception as exc:  # a backend bug must not end the job: counted and traced as a failure
            log.warning("search backend %s raised %s", name, type(exc).__name__, exc_info=True)
            if self.circuits is not None:
                self.circuits.record_failure(name, type(exc).__name__)
            return None, _step(name, step, started, "error", error=exc, detail=f"unexpected {type(exc).__name__}: {exc}")
        if self.circuits is not None:
            self.circuits.record_success(name)
        return results, _step(name, step, started, "ok", detail=detail or f"{len(results)} results")

    async def search_traced(self, query: str, max_results: int = 10, *, step: str = "search") -> tuple[list[SearchResult], list[TraceStep]]:
        """Results of the first backend that finds something, and one TraceStep per attempt.

        Raises:
            AllProvidersFailed: no backend answered (each was skipped or failed).
        """
        attempts: list[TraceStep] = []
        answered = False
        for name, backend in self.backends:
            results, attempt = await self._try(name, backend, query, max_results, step)
            attempts.append(attempt)
            if results is None:
                continue
            answered = True
            if results:
                return results[:max_results], attempts
        if answered:
            return [], attempts
        raise AllProvidersFailed("search", attempts)

    async def search(self, query: str, max_results: int = 10) -> list[SearchResult]:
        """The SearchProvider method: results only (see ``search_traced`` for the attempts)."""
        results, _ = await self.search_traced(query, max_results)
        return results

    async def read_document(self, url: str) -> tuple[str, str] | None:
        """(title, text) of a document that one of the backends holds locally, else None."""
        for _, backend in self.backends:
            if isinstance(backend, DocumentReader):
                found = await backend.read_document(url)
                if found is not None:
                    return found
        return None


def build_search(
    section: SearchSection,
    *,
    circuits: CircuitBoard | None = None,
    http: httpx.AsyncClient | None = None,
    state_dir: Path | None = None,
) -> SearchChain:
    """The chain named by ``providers.search.fallback_chain`` (or just ``default``).

    Args:
        section: ``providers.search``.
        circuits: a board shared across config versions (None: no circuit breaking).
        http: a client every HTTP backend uses (None: each opens a short-lived one).
        state_dir: where a backend keeps its files unless its settings say otherwise (the
            local index).

    Raises:
        ConfigError: the chain names a backend missing from ``providers.search.backends`` or
            from the registry.
    """
    order = chain_names(section)
    if circuits is not None:
        circuits.configure(section.circuit)

    def factory(name: str) -> SearchProvider:
        return search_backend(section, name, http=http, state_dir=state_dir)

    backends = [(name, factory(name)) for name in order]
    known = list(dict.fromkeys([*order, *section.backends, "local"]))
    return SearchChain(backends, circuits=circuits, factory=factory, known=known)


def chain_names(section: SearchSection) -> list[str]:
    """The backends ``build_search`` builds, in order, each once."""
    return list(dict.fromkeys(list(section.fallback_chain) or [section.default]))


def search_backend(section: SearchSection, name: str, *, http: httpx.AsyncClient | None = None,
                   state_dir: Path | None = None) -> SearchProvider:
    """One backend of ``providers.search`` by name, built from its settings (its module imported
    only now); ``ConfigError`` for a name with no settings or none in the registry."""
    from providers.registry import backend_class

    if name not in section.backends and name != "local":  # the local index runs on its defaults
        raise ConfigError(
            f"{name!r} has no settings; add providers.search.backends.{name} or remove it from the chain;"
            f" configured: {', '.join(sorted(section.backends))}",
            key="providers.search.fallback_chain",
        )
    cls = backend_class("search", name)
    return cls.from_config(name, dict(section.backends.get(name) or {}), http=http, state_dir=state_dir)  # type: ignore[no-any-return]
