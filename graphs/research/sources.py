"""Source handling: merge and rank search hits, read the chosen ones."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from core.errors import SwarmError
from core.redact import redact
from providers.base import TraceStep
from providers.web.fetch import PAGE_TYPES

if TYPE_CHECKING:
    from providers.web.fetch import FetchedPage

Fetcher = Callable[[str], Awaitable[Any]]
LocalReader = Callable[[str], Awaitable[tuple[str, str] | None]]

_RRF_K = 60
_TRACKING = re.compile(r"^(utm_\w+|fbclid|gclid|mc_cid|mc_eid|ref)$", re.IGNORECASE)
#: documents a web source may be (``providers.web.fetch.DOCUMENT_TYPES``), read as the local index
#: reads them (``providers.web.documents``): a PDF's pages are kept, so a citation names and opens
#: its page (``#page=N``)
_DOCUMENTS = {
    "application/pdf": ".pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
}


def normalize_url(url: str) -> str:
    """A key under which the same page found twice compares equal."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url.strip()
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _TRACKING.match(k)])
    host = (parts.hostname or "").lower().removeprefix("www.")
    port = f":{parts.port}" if parts.port and parts.port not in (80, 443) else ""
    path = parts.path.rstrip("/") or "/"
    scheme = "https" if parts.scheme in ("http", "https") else parts.scheme
    return urlunsplit((scheme, host + port, path, query, ""))


def rank_sources(hits: Sequence[Mapping[str, Any]], max_sources: int) -> list[dict[str, Any]]:
    """Merge every sub-query's results: dedupe by URL, rank by reciprocal rank fusion.

    A page found by several sub-queries, or high in one, ranks first; ties keep the order of
    the sub-queries. Ids are assigned 1..n in rank order.
    """
    merged: dict[str, dict[str, Any]] = {}
    order = 0
    for hit in sorted(hits, key=lambda h: h["query_index"]):
        for rank, result in enumerate(hit["results"], start=1):
            key = normalize_url(result["url"])
            entry = merged.get(key)
            if entry is None:
                entry = merged[key] = {**result, "_score": 0.0, "_order": order, "found_by": []}
                order += 1
            elif len(result.get("snippet", "")) > len(entry.get("snippet", "")):
                entry["snippet"] = result["snippet"]
            entry["_score"] += 1.0 / (_RRF_K + rank)
            entry["found_by"].append(hit["query_index"])
    ranked = sorted(merged.values(), key=lambda e: (-e["_score"], e["_order"]))[:max_sources]
    return [
        {
            "id": i,
            "url": e["url"],
            "title": e.get("title") or e["url"],
            "snippet": e.get("snippet", ""),
            "retrieved_at": e.get("retrieved_at", ""),
            "backend": e.get("source", ""),
            "score": round(e["_score"], 5),
        }
        for i, e in enumerate(ranked, start=1)
    ]


def _step(url: str, provider: str, started: float, outcome: str, detail: str, error: str | None = None) -> dict[str, Any]:
    host = urlsplit(url).hostname or url.rsplit("/", 1)[-1]
    return TraceStep(
        step="read", kind="fetch", provider=provider, latency_ms=(time.perf_counter() - started) * 1000,
        outcome=outcome, error_class=error, detail=redact(f"{host}: {detail}")[:300],  # type: ignore[arg-type]
    ).model_dump()


async def read_source(url: str, *, read_local: LocalReader | None, fetch: Fetcher) -> tuple[str | None, dict[str, Any]]:
    """Text of one source and the trace step of reading it (None when it could not be read).

    ``file://`` sources are read only from the local index (so a search result naming
    ``file:///etc/passwd`` reads nothing); http(s) ones over the SSRF-safe fetch.
    """
    from providers.web.html import html_to_text

    started = time.perf_counter()
    scheme = urlsplit(url).scheme.lower()
    if scheme == "file":
        found = await read_local(url) if read_local else None
        if found is None:
            return None, _step(url, "local", started, "skipped", "not a document of the local index")
        return found[1], _step(url, "local", started, "ok", f"{len(found[1])} chars")
    if scheme not in ("http", "https"):
        return None, _step(url, "web", started, "skipped", f"scheme {scheme!r} is not read")
    try:
        page = await fetch(url)
    except SwarmError as exc:
        return None, _step(url, "web", started, "error", str(exc), type(exc).__name__)
    kind = page.content_type.split(";")[0].strip().lower()
    if page.unread and page.status < 400:  # refused on its headers, its body never downloaded
        said = "not a text page" if page.unread.endswith("is not a page") else f"not read: {page.unread}"
        return None, _step(url, "web", started, "skipped", f"HTTP {page.status} {kind or 'unknown type'}: {said}")
    if page.status < 400 and (kind in _DOCUMENTS or (kind in ("", "application/octet-stream")
                                                     and page.content.startswith(b"%PDF-"))):
        return await _document(url, page, _DOCUMENTS.get(kind, ".pdf"), started)
    if page.status >= 400 or (kind and kind not in PAGE_TYPES):
        said = f"HTTP {page.status} {kind or 'unknown type'}"
        return None, _step(url, "web", started, "skipped", said if page.status >= 400 else f"{said}: not a text page")
    text = page.text
    if kind in ("text/html", "application/xhtml+xml") or text.lstrip()[:15].lower().startswith(("<!doctype", "<html")):
        text = (await asyncio.to_thread(html_to_text, text))[0]  # a big page's parse holds no other job up
    suffix = " (truncated)" if page.truncated else ""
    return text, _step(url, "web", started, "ok", f"{len(text)} chars{suffix}")


async def _document(url: str, page: FetchedPage, suffix: str, started: float) -> tuple[str | None, dict[str, Any]]:
    """A PDF, Word or PowerPoint file found on the web, read as the local index reads one: its
    pages joined by ``PAGE_BREAK`` (cited by page). Cut off by the fetch's size limit, it is not read
    (a PDF's index is at its end); one without text (a scan) or corrupt is said so."""
    from pathlib import Path

    from providers.web.documents import extract

    if page.truncated:
        return None, _step(url, "web", started, "skipped",
                           f"a {suffix[1:].upper()} over the {len(page.content):,} bytes a source may be: not read")
    try:
        found = await asyncio.to_thread(extract, Path(f"source{suffix}"), page.content)
    except SwarmError as exc:  # unreadable, encrypted, no text layer, its parser not installed
        return None, _step(url, "web", started, "skipped", f"{suffix[1:].upper()}: {exc}", type(exc).__name__)
    except Exception as exc:  # a hostile file a parser chokes on (a zip bomb's BadZipFile, lxml's errors):
        # that source unread, never the research job failed
        return None, _step(url, "web", started, "skipped", f"{suffix[1:].upper()}: not readable ({type(exc).__name__})",
                           type(exc).__name__)
    text = found.body
    pages = f", {len(found.pages)} pages" if found.paged else ""
    return text, _step(url, "web", started, "ok", f"{len(text)} chars{pages} ({suffix[1:].upper()})")
