"""HTTP plumbing shared by the web backends (search, safe fetch): one client rule, one error
translation, one reading of a search answer.

Upstream failures become ``ProviderError`` subclasses here, once, so each backend only adds
what is specific to it (the fix for a 403 on SearXNG, a rejected key on Tavily).
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from core.errors import (
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from core.redact import redact
from providers.base import SearchResult

if TYPE_CHECKING:  # imported where a request is made: the MCP server lists its tools without it (~40 ms)
    import httpx


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every short-lived client.

    Building it loads the CA bundle (~35 ms, blocking the event loop); doing that once keeps
    parallel searches parallel.
    """
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


@asynccontextmanager
async def client_for(
    http: httpx.AsyncClient | None, timeout_s: float, proxy: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """The injected client, or a short-lived one (a client is bound to the loop that made it).

    The environment's proxy variables are not read (``trust_env=False``): scanning them costs
    ~6 ms per client, blocking the loop; a backend that needs a proxy names it in config.
    """
    if http is not None:
        yield http
        return
    import httpx

    async with httpx.AsyncClient(
        timeout=timeout_s, follow_redirects=False, verify=tls_context(), trust_env=False, proxy=proxy or None
    ) as client:
        yield client


def retry_after_s(response: httpx.Response) -> float | None:
    """The server's Retry-After in seconds, when it sent a number."""
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


async def send(
    provider: str,
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    timeout_s: float,
    **kwargs: Any,
) -> httpx.Response:
    """Send one request; transport failures become ProviderTimeout / ProviderUnavailable."""
    import httpx

    try:
        return await client.request(method, url, timeout=timeout_s, **kwargs)
    except httpx.TimeoutException:
        raise ProviderTimeout(provider, f"no answer within {timeout_s:g} s") from None
    except httpx.TransportError as exc:
        raise ProviderUnavailable(provider, f"cannot reach the server: {type(exc).__name__}") from None


def raise_for_status(provider: str, response: httpx.Response, hints: dict[int, str] | None = None) -> None:
    """Translate a non-2xx answer; ``hints`` adds a fix to the message for known statuses."""
    status = response.status_code
    if status < 400:
        return
    hint = (hints or {}).get(status, "")
    message = f"HTTP {status}{': ' + hint if hint else ''}"
    if status == 429:
        raise ProviderRateLimited(provider, message, retry_after=retry_after_s(response))
    if status >= 500 or status in (401, 403):
        raise ProviderUnavailable(provider, message)
    body = redact(response.text[:4000])[:200] if not hint else ""  # redacted before the cut: half a key is no shape
    raise ProviderError(provider, f"{message}{' ' + body if body else ''}".strip())


def json_body(provider: str, response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a 2xx answer, or ProviderError saying the reply was not JSON."""
    try:
        data = response.json()
    except ValueError:
        kind = response.headers.get("content-type", "unknown")
        raise ProviderError(provider, f"expected a JSON object, got {kind}") from None
    if not isinstance(data, dict):
        raise ProviderError(provider, "expected a JSON object")
    return data


def result_items(provider: str, data: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``results`` list of a search answer (items that are not objects are dropped)."""
    items = data.get("results")
    if items is None:
        return []
    if not isinstance(items, list):
        raise ProviderError(provider, f"expected 'results' to be a list, got {type(items).__name__}")
    return [item for item in items if isinstance(item, dict)]


def search_results(provider: str, data: dict[str, Any], max_results: int) -> list[SearchResult]:
    """The first ``max_results`` hits of a search answer whose items carry ``url``, ``title``,
    ``content`` and ``score`` (SearXNG and Tavily both answer so); items without a URL are
    dropped, a missing title becomes the URL, a score that is not a number becomes ``None``."""
    results: list[SearchResult] = []
    for item in result_items(provider, data):
        if len(results) >= max_results:
            break
        if not item.get("url"):
            continue
        score = item.get("score")
        results.append(
            SearchResult(
                url=str(item["url"]),
                title=str(item.get("title") or item["url"]),
                snippet=str(item.get("content") or ""),
                source=provider,
                score=float(score) if isinstance(score, int | float) else None,
            )
        )
    return results
