"""SearXNG over its JSON API: ``GET {url}/search?q=...&format=json``."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from core.errors import ConfigError, ProviderUnavailable
from providers.base import SearchResult
from providers.web.http import client_for, json_body, raise_for_status, search_results, send

if TYPE_CHECKING:
    import httpx

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
        return search_results(self.name, json_body(self.name, response), max_results)
