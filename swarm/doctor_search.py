"""``swarm doctor`` checks of the search backends: the local index (documents counted), free
web backends with a test query, paid ones for config only."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import ProviderError
from swarm.doctor_finding import Finding, error_message

if TYPE_CHECKING:
    from core.config import SwarmConfig

_SEARCH_FIX = {
    "searxng": "export SEARXNG_URL=http://your-searxng:8080 (with JSON output enabled)",
    "tavily": "export TAVILY_API_KEY=...",
    "local": "point SWARM_CORPUS at your documents, then: swarm index build",
}
#: Backends a test query costs nothing on; the others (paid per search) are only checked for config.
_FREE_TO_QUERY = {"searxng"}


def _count_documents(index: Path) -> int:
    conn = sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=5)
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
    return Finding(check, "warn", f"no index yet at {index} (built from {paths} on first search)", "swarm index build")


async def _web_search(name: str, backend: Any) -> Finding:
    if name not in _FREE_TO_QUERY:
        return Finding(f"search {name}", "ok", "configured (not probed: each search costs a credit)")
    try:
        results = await backend.search("swarm doctor", 1)
    except ProviderError as exc:
        return Finding(f"search {name}", "fail", error_message(exc), f"check providers.search.backends.{name}")
    return Finding(f"search {name}", "ok", f"answered a test query ({len(results)} results)")


async def check_search(name: str, config: SwarmConfig) -> Finding:
    from core.config import state_dir
    from providers.base import Configurable
    from providers.registry import backend_class

    settings = dict(config.providers.search.backends[name])
    backend = backend_class("search", name).from_config(name, settings, state_dir=state_dir())
    if name == "local":
        found = await _local_index(name, backend)
        if found is not None:
            return found
    reason = backend.unconfigured_reason() if isinstance(backend, Configurable) else None
    if reason:
        fix = _SEARCH_FIX.get(name, f"set providers.search.backends.{name}")
        return Finding(f"search {name}", "warn", f"{reason} -> the search chain skips it", fix)
    return await _web_search(name, backend)
