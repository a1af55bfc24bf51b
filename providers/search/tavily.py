"""Tavily over its HTTP API: ``POST {base_url}/search`` with a Bearer key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from core.errors import ProviderUnavailable
from core.redact import register_secret
from providers.base import SearchResult
from providers.web.http import client_for, json_body, raise_for_status, search_results, send

if TYPE_CHECKING:
    import httpx

DEFAULT_BASE_URL = "https://api.tavily.com"
_HINTS = {
    401: "Tavily rejected the API key; check TAVILY_API_KEY",
    403: "Tavily refused the API key; check TAVILY_API_KEY and the plan it belongs to",
    432: "the Tavily plan's credit limit is reached",
    433: "the Tavily pay-as-you-go limit is reached",
}


class TavilySearch:
    """A SearchProvider backed by the Tavily search API. The key never leaves the request."""

    def __init__(
        self,
        api_key: str,
        *,
        name: str = "tavily",
        base_url: str = DEFAULT_BASE_URL,
        timeout_s: float = 15.0,
        search_depth: str = "basic",
        proxy: str | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.name = name
        self._api_key = (api_key or "").strip()
        register_secret(self._api_key)
        self.base_url = (base_url or DEFAULT_BASE_URL).rstrip("/")
        self.timeout_s = float(timeout_s)
        self.search_depth = search_depth
        self.proxy = proxy or None
        self.http = http

    def __repr__(self) -> str:
        return f"TavilySearch(name={self.name!r}, base_url={self.base_url!r})"

    @classmethod
    def from_config(
        cls, name: str, settings: Mapping[str, Any], *, http: httpx.AsyncClient | None = None, **_deps: object
    ) -> TavilySearch:
        """Build from ``providers.search.backends.<name>`` (api_key, base_url, timeout_s,
        search_depth, proxy); ``http`` is the client to use (None: a short-lived one per search)."""
        return cls(
            settings.get("api_key", ""),
            name=name,
            base_url=settings.get("base_url") or DEFAULT_BASE_URL,
            timeout_s=settings.get("timeout_s", 15),
            search_depth=settings.get("search_depth", "basic"),
            proxy=settings.get("proxy"),
            http=http,
        )

    def unconfigured_reason(self) -> str | None:
        """Why this backend cannot be tried at all, or None when it can."""
        return None if self._api_key else "TAVILY_API_KEY is not set"

    async def search(self, query: str, max_results: int = 10) -> list[SearchResult]:
        """Ask Tavily; a rejected key or spent plan comes back as ProviderUnavailable."""
        reason = self.unconfigured_reason()
        if reason:
            raise ProviderUnavailable(self.name, reason)
        payload = {"query": query, "max_results": max(1, min(int(max_results), 20)), "search_depth": self.search_depth}
        async with client_for(self.http, self.timeout_s, self.proxy) as client:
            response = await send(
                self.name, client, "POST", f"{self.base_url}/search", json=payload,
                headers={"Authorization": f"Bearer {self._api_key}"}, timeout_s=self.timeout_s,
            )
        if response.status_code in (432, 433):
            raise ProviderUnavailable(self.name, f"HTTP {response.status_code}: {_HINTS[response.status_code]}")
        raise_for_status(self.name, response, _HINTS)
        return search_results(self.name, json_body(self.name, response), max_results)
