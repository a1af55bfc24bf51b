"""SearXNG and Tavily over loopback HTTP: a trickling answer is cut at timeout_s, a redirect is
named, JSON in another charset is read, hostile result fields are bounded, a 429 says its wait."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.errors import ProviderError, ProviderRateLimited, ProviderTimeout
from providers.base import SearchResult
from providers.search.chain import SearchChain
from providers.search.searxng import SearxngSearch
from providers.search.tavily import TavilySearch
from providers.testing import FakeSearch

KEY = "tvly-dev-0123456789abcdefSECRET"
Reply = Callable[[BaseHTTPRequestHandler], None]


def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str]) -> None:
    handler.send_response(status)
    for name, value in {"Content-Length": str(len(body)), **headers}.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)


def _trickle(handler: BaseHTTPRequestHandler) -> None:
    """Headers at once, then one byte every 0.2 s: every read finishes within any read timeout."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    for _ in range(40):
        try:
            handler.wfile.write(b" ")
            handler.wfile.flush()
        except OSError:
            return
        time.sleep(0.2)


@pytest.fixture
def server() -> Iterator[tuple[str, dict[str, Reply]]]:
    routes: dict[str, Reply] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            routes["reply"](self)

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            routes["reply"](self)

        def log_message(self, *args: object) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", routes
    httpd.shutdown()
    httpd.server_close()


def _backends(url: str) -> list[SearxngSearch | TavilySearch]:
    return [SearxngSearch(url, timeout_s=1), TavilySearch(KEY, base_url=url, timeout_s=1)]


async def test_a_trickling_answer_is_a_timeout_at_timeout_s_and_the_chain_moves_on(server):
    url, routes = server
    routes["reply"] = _trickle
    for backend in _backends(url):
        with pytest.raises(ProviderTimeout, match="within 1 s"):
            await backend.search("q")
    local = FakeSearch([SearchResult(url="file:///a.md", title="A", snippet="a", source="local")])
    results, trace = await SearchChain([("searxng", SearxngSearch(url, timeout_s=1)), ("local", local)]).search_traced("q")
    assert [r.source for r in results] == ["local"]
    assert (trace[0].provider, trace[0].outcome, trace[0].error_class) == ("searxng", "error", "ProviderTimeout")


async def test_a_redirect_is_named_not_read_as_a_broken_json_answer(server):
    url, routes = server
    routes["reply"] = lambda h: _send(h, 301, b"", {"Location": "https://searx.example.org/search?q=x",
                                                    "Content-Type": "text/html"})
    for backend in _backends(url):
        with pytest.raises(ProviderError) as info:
            await backend.search("q")
        message = str(info.value)
        assert "HTTP 301" in message and "https://searx.example.org/search" in message
        assert "expected a JSON object" not in message and KEY not in message


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (json.dumps({"results": [{"url": "https://x.org/", "title": "café", "content": "naïve"}]},
                    ensure_ascii=False).encode("latin-1"), "application/json; charset=iso-8859-1"),
        (b'{"results": [{"url": "https://x.org/", "title": "caf\xe9", "content": "na\xefve"}]}', "application/json"),
    ],
    ids=["declared-latin-1", "stray-bytes"],
)
async def test_json_that_is_not_utf_8_is_still_read(server, body, content_type):
    url, routes = server
    routes["reply"] = lambda h: _send(h, 200, body, {"Content-Type": content_type})
    for backend in _backends(url):
        results = await backend.search("q")
        assert [r.url for r in results] == ["https://x.org/"]
        assert results[0].title.startswith("caf") and results[0].snippet.startswith("na")


async def test_result_fields_are_bounded_and_urls_must_be_web_addresses(server):
    url, routes = server
    answer = {"results": [
        {"url": 123, "title": "a number"},
        {"url": {"href": "https://x.org/"}, "title": "an object"},
        {"url": "javascript:alert(1)", "title": "a script"},
        {"url": "https://x.org/huge", "title": "T" * 100_000, "content": "word " * 1_000_000},
    ]}
    routes["reply"] = lambda h: _send(h, 200, json.dumps(answer).encode(), {"Content-Type": "application/json"})
    for backend in _backends(url):
        results = await backend.search("q")
        assert [r.url for r in results] == ["https://x.org/huge"]
        assert len(results[0].title) <= 500 and len(results[0].snippet) <= 10_000


async def test_a_429_says_how_long_to_wait(server):
    url, routes = server
    routes["reply"] = lambda h: _send(h, 429, b'{"detail": "slow down"}',
                                      {"Content-Type": "application/json", "Retry-After": "30"})
    for backend in _backends(url):
        with pytest.raises(ProviderRateLimited) as info:
            await backend.search("q")
        assert info.value.retry_after == 30 and "Retry-After 30 s" in str(info.value)


async def test_a_429_whose_retry_after_is_a_date_says_how_long_to_wait(server):
    """Retry-After may be an HTTP date (RFC 9110): the search side read only seconds, and said nothing."""
    import email.utils
    import time

    url, routes = server
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    routes["reply"] = lambda h: _send(h, 429, b'{"detail": "slow down"}',
                                      {"Content-Type": "application/json", "Retry-After": when})
    for backend in _backends(url):
        with pytest.raises(ProviderRateLimited) as info:
            await backend.search("q")
        assert info.value.retry_after is not None and 100 <= info.value.retry_after <= 120, info.value.retry_after
        assert "(Retry-After 1" in str(info.value), str(info.value)


@pytest.mark.parametrize(("status", "said"), [(404, "set SEARXNG_URL to the instance's base URL"),
                                              (401, "put them in SEARXNG_URL")])
async def test_a_searxng_404_or_401_says_what_to_set(server, status, said):
    """A 404 quoted 200 characters of the server's HTML page; a 401 said nothing more."""
    from core.errors import ProviderError
    from providers.search.searxng import SearxngSearch

    url, routes = server
    routes["reply"] = lambda h: _send(h, status, b"<html><body>" + b"Not Found " * 40 + b"</body></html>",
                                      {"Content-Type": "text/html"})
    with pytest.raises(ProviderError) as info:
        await SearxngSearch(url).search("q")
    assert said in str(info.value) and "<html" not in str(info.value), str(info.value)
