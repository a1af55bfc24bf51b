"""HTTP plumbing shared by the web backends (search, safe fetch): one client rule, one error
translation, one reading of a search answer.

Upstream failures become ``ProviderError`` subclasses here, once, so each backend only adds
what is specific to it (the fix for a 403 on SearXNG, a rejected key on Tavily).
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

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

#: characters of a hit's title and snippet kept: what a search engine shows of a page; a backend
#: that answers more (a whole page as "content") must not put megabytes into the writer's prompt
MAX_TITLE_CHARS = 300
MAX_SNIPPET_CHARS = 4000


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


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta seconds or an HTTP date); None without one."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def retry_after_s(response: httpx.Response) -> float | None:
    """The server's Retry-After in seconds, in either form it may send (a date too: it was ignored)."""
    return parse_retry_after(response.headers.get("retry-after"))


async def send(
    provider: str,
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    timeout_s: float,
    **kwargs: Any,
) -> httpx.Response:
    """Send one request; transport failures become ProviderTimeout / ProviderUnavailable.

    ``timeout_s`` caps the whole exchange: httpx's timeout is per read, so an answer that trickles
    in a byte at a time would otherwise hold the search chain far past it."""
    import httpx

    try:
        async with asyncio.timeout(timeout_s):
            return await client.request(method, url, timeout=timeout_s, **kwargs)
    except (httpx.TimeoutException, TimeoutError):
        raise ProviderTimeout(provider, f"no answer within {timeout_s:g} s") from None
    except httpx.TransportError as exc:
        raise ProviderUnavailable(provider, f"cannot reach the server: {type(exc).__name__}") from None


def raise_for_status(provider: str, response: httpx.Response, hints: dict[int, str] | None = None) -> None:
    """Translate a non-2xx answer; ``hints`` adds a fix to the message for known statuses."""
    status = response.status_code
    if 300 <= status < 400:  # redirects are not followed (a key must not go where it was not sent)
        raise ProviderError(provider, f"HTTP {status}: the server redirects to {_where(response)};"
                                      " set the backend's URL to that address")
    if status < 400:
        return
    hint = (hints or {}).get(status, "")
    message = f"HTTP {status}{': ' + hint if hint else ''}"
    if status == 429:
        retry_after = retry_after_s(response)
        wait = f" (Retry-After {round(retry_after, 1):g} s)" if retry_after is not None else ""
        raise ProviderRateLimited(provider, message + wait, retry_after=retry_after)
    if status >= 500 or status in (401, 403):
        raise ProviderUnavailable(provider, message)
    body = redact(response.text[:4000])[:200] if not hint else ""  # redacted before the cut: half a key is no shape
    raise ProviderError(provider, f"{message}{' ' + body if body else ''}".strip())


def _where(response: httpx.Response) -> str:
    """Where a redirect points, without user info, query or fragment (they may carry a secret)."""
    location = response.headers.get("location", "")
    if not location:
        return "no Location given"
    try:
        base = str(response.url)
    except RuntimeError:  # a Response built without its request
        base = ""
    parts = urlsplit(urljoin(base, location))
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return redact(f"{parts.scheme}://{host}{f':{parts.port}' if parts.port else ''}{parts.path}")[:200]


def json_body(provider: str, response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a 2xx answer, or ProviderError saying the reply was not JSON."""
    try:
        try:
            data = response.json()
        except UnicodeDecodeError:  # not UTF-8: read in the charset it declares (a stray byte as U+FFFD)
            data = json.loads(response.text)
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
    ``content`` and ``score`` (SearXNG and Tavily both answer so); items without an http(s) URL
    are dropped, a missing title becomes the URL, a score that is not a number becomes ``None``;
    titles and snippets are cut at ``MAX_TITLE_CHARS`` and ``MAX_SNIPPET_CHARS``."""
    results: list[SearchResult] = []
    for item in result_items(provider, data):
        if len(results) >= max_results:
            break
        url = item.get("url")
        if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
            continue  # no address research can read, or one a report must not link (javascript:)
        score = item.get("score")
        results.append(
            SearchResult(
                url=url,
                title=str(item.get("title") or url)[:MAX_TITLE_CHARS],
                snippet=str(item.get("content") or "")[:MAX_SNIPPET_CHARS],
                source=provider,
                score=float(score) if isinstance(score, int | float) else None,
            )
        )
    return results
