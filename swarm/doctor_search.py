"""``swarm doctor`` checks of the search backends: the local index (documents counted), free
web backends with a test query, paid ones for config only. A web backend left unconfigured
(its URL or key unset) is INFO while the chain has another backend that runs here (the local
index), else a WARN; one set to a value it cannot use stays a WARN."""

from __future__ import annotations

import asyncio
import sqlite3
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ProviderError, SwarmError
from swarm.doctor_finding import TO_USE_IT, Finding, error_message, goes_on_to

if TYPE_CHECKING:
    from core.config import SwarmConfig

_SEARCH_FIX = {
    "searxng": "export SEARXNG_URL=http://your-searxng:8080 (with JSON output enabled)",
    "tavily": "export TAVILY_API_KEY=...",
    "local": "point SWARM_CORPUS at your documents, then: swarm index build",
}
#: Backends a test query costs nothing on; the others (paid per search) are only checked for config.
_FREE_TO_QUERY = {"searxng"}
#: The setting that, left empty, means the backend is simply not configured (an option unused,
#: not a fault); a backend not named here, or one whose setting is set but unusable, is a fault.
_OPTIONAL_SETTING = {"searxng": "url", "tavily": "api_key"}


def _count_documents(index: Path) -> int:
    """The documents in ``index``, read as a search reads it (``open_read_only``): a plain
    ``mode=ro`` connection to a WAL index in a folder this process cannot write failed ("attempt
    to write a readonly database"), and the doctor called a shared, read-only index unusable."""
    from providers.search.index_schema import open_read_only

    conn = open_read_only(index, timeout=5)
    try:
        return int(conn.execute("SELECT count(*) FROM docs").fetchone()[0])
    finally:
        conn.close()


async def _local_index(name: str, backend: Any) -> Finding | None:
    """The local index, when it exists or can be built; ``None`` when nothing can build it."""
    check, index = f"search {name}", Path(backend.index_path)
    if index.exists():
        try:
            count = await asyncio.to_thread(_count_documents, index)
        except sqlite3.Error as exc:
            return Finding(check, "fail", f"index {index} is unusable: {exc}", "swarm index build --reset")
        return Finding(check, "ok", f"index {index}: {count} documents")
    paths = ", ".join(str(p) for p in backend.paths if p.exists())
    if not paths:
        return None
    # built on first search, as image weights are prepared on first use: nothing is wrong
    return Finding(check, "info", f"no index yet at {index} (built from {paths} on first search)", "swarm index build")


async def _web_search(name: str, backend: Any) -> Finding:
    if name not in _FREE_TO_QUERY:
        return Finding(f"search {name}", "ok", "configured (not probed: each search costs a credit)")
    try:
        results = await backend.search("swarm doctor", 1)
    except ProviderError as exc:
        return Finding(f"search {name}", "fail", error_message(exc), _unreached_fix(name, backend))
    return Finding(f"search {name}", "ok", f"answered a test query ({len(results)} results)")


def _unreached_fix(name: str, backend: Any) -> str:
    """The fix for a web backend that did not answer: the server it asked (scheme, host and port
    only: a URL may carry a password) and the variable that named it, where the key in config
    (``${SEARXNG_URL}``) says neither."""
    if name != "searxng":
        return f"check providers.search.backends.{name}"
    parts = urllib.parse.urlsplit(backend.url)
    port = parts.netloc.rpartition(":")[2] if ":" in parts.netloc.rpartition("@")[2] else ""
    server = f"{parts.scheme}://{parts.hostname}" + (f":{port}" if port else "")
    return (f"check that the SearXNG server at {server} runs and answers JSON (format json enabled), and that"
            " SEARXNG_URL names it; or unset SEARXNG_URL to skip it")


def _backend(name: str, config: SwarmConfig) -> Any:
    from core.config import state_dir
    from providers.registry import backend_class

    settings = dict(config.providers.search.backends.get(name) or {})  # the local index runs on its defaults
    return backend_class("search", name).from_config(name, settings, state_dir=state_dir())


def _unconfigured_reason(backend: Any) -> str | None:
    from providers.base import Configurable

    return backend.unconfigured_reason() if isinstance(backend, Configurable) else None


def _chain_goes_on(name: str, config: SwarmConfig) -> str | None:
    """What the search chain goes on to without ``name`` (``goes_on_to``): the backends of
    ``fallback_chain`` (or ``default``) that can be tried here, judged without a network call."""
    section = config.providers.search
    chain = list(dict.fromkeys(section.fallback_chain or [section.default]))
    runs_here = {other for other in chain if other != name and _can_run(other, config)}
    return goes_on_to([chain], name, runs_here, "the search chain")


def _can_run(name: str, config: SwarmConfig) -> bool:
    """Whether ``name`` is configured to be tried; one its own settings break is not (its own
    check says how), and does not fail the check of another."""
    try:
        return _unconfigured_reason(_backend(name, config)) is None
    except (SwarmError, ValueError, TypeError):
        return False


async def check_search(name: str, config: SwarmConfig) -> Finding:
    backend = _backend(name, config)
    if name == "local":
        found = await _local_index(name, backend)
        if found is not None:
            return found
    reason = _unconfigured_reason(backend)
    if not reason:
        return await _web_search(name, backend)
    fix = _SEARCH_FIX.get(name, f"set providers.search.backends.{name}")
    setting = _OPTIONAL_SETTING.get(name)
    unset = setting is not None and not config.providers.search.backends[name].get(setting)
    fallback = _chain_goes_on(name, config) if unset else None
    if fallback:
        return Finding(f"search {name}", "info", f"{reason}: skipped, {fallback}", fix, TO_USE_IT)
    return Finding(f"search {name}", "warn", f"{reason} -> the search chain skips it", fix)
