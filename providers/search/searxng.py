"""SearXNG over its JSON API: ``GET {url}/search?q=...&format=json``.

An instance asks its engines (google, bing, ...) and answers with what those that answered found;
the others it lists in ``unresponsive_engines`` (``[[engine, reason], ...]``). Those are named in
the search's trace step (and logged), and an answer with no results while engines failed is an
error that names them: "no results" would blame the query for an instance that is blocked.
"""

from __future__ import annotations

import logging
import time
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError, ProviderUnavailable
from core.redact import redact
from providers.base import SearchResult, TraceStep
from providers.web.http import client_for, json_body, raise_for_status, search_results, send

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("providers.search.searxng")
#: engines named at most (the rest counted), and characters of an engine's name and of its reason
MAX_ENGINES_NAMED = 8
_MAX_NAME_CHARS = 40
_MAX_REASON_CHARS = 80

_HINTS = {
    403: (
        "the instance refuses JSON output; add `json` to `search.formats` in the instance's"
        " settings.yml (formats: [html, json]) and restart it"
    ),
    429: (
        "the instance's rate limiter refused the request; for a private instance set"
        " `server.limiter: false` in settings.yml (or allow this client's IP in limiter.toml)"
    ),
    # a page of HTML quoted (up to 200 characters) said nothing of the cause: the URL names no instance
    404: "no SearXNG answers /search there; set SEARXNG_URL to the instance's base URL (its home page)",
    401: "the server asks for credentials; put them in SEARXNG_URL (http://user:password@host:8080)",
}


def _said(value: Any, limit: int) -> str:
    """A name or reason from the instance's answer, on one line and cut at ``limit``."""
    return " ".join(str(value).split())[:limit] if isinstance(value, str | int | float) else ""


def unresponsive_engines(data: Mapping[str, Any]) -> list[str]:
    """``google (timeout)`` for each engine an answer lists in ``unresponsive_engines``, once
    each; entries of another shape than ``[engine, reason]`` (a bare name too) are read as well
    as they can be."""
    items = data.get("unresponsive_engines")
    failed: dict[str, str] = {}
    for item in items if isinstance(items, list) else ():
        pair = item if isinstance(item, list | tuple) else [item]
        name = _said(pair[0], _MAX_NAME_CHARS) if pair else ""
        if name and name not in failed:
            reason = _said(pair[1], _MAX_REASON_CHARS) if len(pair) > 1 else ""
            failed[name] = f"{name} ({reason})" if reason else name
    return list(failed.values())


def engines_line(failed: list[str]) -> str:
    """The engines that did not answer, the first ``MAX_ENGINES_NAMED`` by name (redacted: the
    reasons are the instance's words)."""
    more = len(failed) - MAX_ENGINES_NAMED
    named = ", ".join(failed[:MAX_ENGINES_NAMED]) + (f" and {more} more" if more > 0 else "")
    return redact(named)


class SearxngSearch:
    """A SearchProvider backed by a SearXNG instance."""

    def __init__(
        self,
        url: str,
        *,
        name: str = "searxng",
        timeout_s: float = 10.0,
        categories: str | None = None,
        language: str | None = None,
        proxy: str | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.name = name
        self.url = (url or "").strip().rstrip("/")
        self.timeout_s = float(timeout_s)
        self.categories = categories
        self.language = language
        self.proxy = proxy or None
        self.http = http

    @classmethod
    def from_config(
        cls, name: str, settings: Mapping[str, Any], *, http: httpx.AsyncClient | None = None, **_deps: object
    ) -> SearxngSearch:
        """Build from ``providers.search.backends.<name>`` (url, format, timeout_s, categories,
        language, proxy); ``http`` is the client to use (None: a short-lived one per search)."""
        fmt = settings.get("format", "json")
        if fmt != "json":
            raise ConfigError(
                f"format {fmt!r} is not supported; only 'json' is", key=f"providers.search.backends.{name}.format"
            )
        return cls(
            settings.get("url", ""),
            name=name,
            timeout_s=settings.get("timeout_s", 10),
            categories=settings.get("categories"),
            language=settings.get("language"),
            proxy=settings.get("proxy"),
            http=http,
        )

    def unconfigured_reason(self) -> str | None:
        """Why this backend cannot be tried at all, or None when it can (the value itself is never
        quoted: a URL may carry a password)."""
        if not self.url:
            return "SEARXNG_URL is not set"
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return "SEARXNG_URL is not an http(s) URL (like http://your-searxng:8080)"
        return None

    async def search(self, query: str, max_results: int = 10) -> list[SearchResult]:
        """Query the instance; errors come back as ProviderError subclasses with the fix."""
        results, _ = await self.search_traced(query, max_results)
        return results

    async def search_traced(self, query: str, max_results: int = 10, *,
                            step: str = "search") -> tuple[list[SearchResult], list[TraceStep]]:
        """The results and the step of this search, which names the engines that did not answer.

        Raises:
            ProviderUnavailable: no results while engines failed (it names them), and as ``search``.
        """
        started = time.perf_counter()
        data = await self._answer(query)
        results = search_results(self.name, data, max_results)
        failed = unresponsive_engines(data)
        if failed and not results:
            raise ProviderUnavailable(self.name, f"no results: the instance's engines did not answer:"
                                                 f" {engines_line(failed)}")
        detail = f"{len(results)} results"
        if failed:
            note = f"SearXNG: engines that did not answer: {engines_line(failed)}"
            log.warning("%s: %s", self.name, note)
            detail += f"; {note}"
        return results, [TraceStep(step=step, kind="search", provider=self.name, detail=detail[:500],
                                   latency_ms=(time.perf_counter() - started) * 1000)]

    async def _answer(self, query: str) -> dict[str, Any]:
        """The instance's JSON answer to ``query``."""
        reason = self.unconfigured_reason()
        if reason:
            raise ProviderUnavailable(self.name, f"{reason}; set SEARXNG_URL to a SearXNG instance with JSON output on")
        params = {"q": query, "format": "json"}
        if self.categories:
            params["categories"] = self.categories
        if self.language:
            params["language"] = self.language
        async with client_for(self.http, self.timeout_s, self.proxy) as client:
            response = await send(
                self.name, client, "GET", f"{self.url}/search", params=params,
                headers={"Accept": "application/json"}, timeout_s=self.timeout_s,
            )
        raise_for_status(self.name, response, _HINTS)
        return json_body(self.name, response)
