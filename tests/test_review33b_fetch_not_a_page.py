"""A research source that is an image, a video or an archive was downloaded (up to 2 MB) before
it was refused as "not a text page": the fetch now decides on the headers (Content-Type, and the
Content-Length of an unnamed binary) and reads no byte of such a body. Each server below sends
its headers and then holds the body back: a fetch that reads it waits for its time limit."""

from __future__ import annotations

import functools
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_research_graph import Script, _context

from core.errors import InputError
from graphs.research.action import ResearchInput, research
from providers.base import SearchResult
from providers.search.chain import SearchChain
from providers.testing import FakeSearch, FunctionLLM
from providers.web import fetch as web_fetch
from providers.web.fetch import safe_fetch

MB = 1024 * 1024
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 4096
#: path -> (Content-Type, Content-Length declared, body sent at once; the rest is held back)
ROUTES = {
    "/stall.png": ("image/png", 5 * MB, b"\x89PNG\r\n\x1a\n"),
    "/stall.mp4": ("video/mp4", 40 * MB, b"\0\0\0\x18ftypmp42"),
    "/stall.zip": ("application/zip", 3 * MB, b"PK\x03\x04"),
    "/stall.bin": ("application/octet-stream", 5 * MB, b"\0\1\2"),
    "/photo.png": ("image/png", len(PNG), PNG),
    "/page.html": ("text/html", 17, b"<p>hello page</p>"),
}


class _Holding(http.server.BaseHTTPRequestHandler):
    release = threading.Event()

    def do_GET(self) -> None:  # noqa: N802
        kind, length, first = ROUTES[self.path]
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(first)
        self.wfile.flush()
        if len(first) < length:
            self.release.wait(20)  # the rest of the body never comes while the test runs

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    _Holding.release = threading.Event()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Holding)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        _Holding.release.set()
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize(("path", "said"), [
    ("/stall.png", "image/png is not a page"),
    ("/stall.mp4", "video/mp4 is not a page"),
    ("/stall.zip", "application/zip is not a page"),
    ("/stall.bin", "application/octet-stream of 5,242,880 bytes, over the 2,097,152 read"),
])
async def test_a_page_fetch_reads_no_body_that_is_no_page(server: str, path: str, said: str) -> None:
    started = time.perf_counter()
    page = await safe_fetch(server + path, max_bytes=2 * MB, timeout_s=8, allow_private=True, truncate=True)
    assert page.status == 200 and page.content == b"" and page.unread == said and not page.truncated
    assert time.perf_counter() - started < 6  # never waited for the body (a read one times out at 8 s)


async def test_a_fetch_that_is_no_page_fetch_still_reads_an_image(server: str) -> None:
    page = await safe_fetch(server + "/photo.png", max_bytes=MB, timeout_s=8, allow_private=True)
    assert page.content == PNG and page.unread == ""  # the image tools fetch images: unchanged
    page = await safe_fetch(server + "/photo.png", max_bytes=MB, timeout_s=8, allow_private=True, only_pages=True)
    assert page.content == b"" and page.unread == "image/png is not a page"
    page = await safe_fetch(server + "/page.html", max_bytes=MB, timeout_s=8, allow_private=True, truncate=True)
    assert page.text == "<p>hello page</p>" and page.unread == ""
    with pytest.raises(InputError, match="5,242,880 bytes; the limit is 1,048,576"):
        await safe_fetch(server + "/stall.png", max_bytes=MB, timeout_s=8, allow_private=True)


async def test_research_skips_an_image_source_without_downloading_it(
        server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web_fetch, "safe_fetch", functools.partial(web_fetch.safe_fetch, allow_private=True))
    hits = [SearchResult(url=f"{server}/stall.png", title="A photo", snippet="a photo", source="web")]
    ctx, _ = _context(tmp_path, FunctionLLM(Script(plan={"queries": ["photo"]}, report="A photo [1].")),
                      SearchChain([("web", FakeSearch(hits))]))
    result = await research(ResearchInput(question="What does the photo show?"), ctx)
    (read,) = [s for s in result["trace"] if s["kind"] == "fetch"]
    # was: the body awaited until the fetch's 10 s limit, "error ProviderTimeout"
    assert read["outcome"] == "skipped" and read["detail"].endswith("HTTP 200 image/png: not a text page"), read
    assert read["latency_ms"] < 5000, read
