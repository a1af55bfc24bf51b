"""A fetched page is decoded in the charset it declares: in the header, quoted or not, or in an
HTML ``<meta>`` when the header names none (an old page in Windows-1252 reads "café", not "caf\ufffd")."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from providers.web.fetch import safe_fetch

PAGES = {
    "/quoted": ('text/html; charset="windows-1252"', "<p>caf\u00e9 cr\u00e8me</p>".encode("cp1252")),
    "/meta": ("text/html", '<html><head><meta charset="windows-1252"><title>x</title></head><body>caf\u00e9 cr\u00e8me'
                           "</body></html>".encode("cp1252")),
    "/http-equiv": ("text/html", '<meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1">caf\u00e9'
                                 " cr\u00e8me".encode("latin-1")),
    "/utf8": ("text/html", "<p>caf\u00e9 cr\u00e8me</p>".encode()),
}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            content_type, body = PAGES[self.path]
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("path", list(PAGES))
async def test_a_page_is_read_in_the_charset_it_declares(server, path):
    page = await safe_fetch(server + path, max_bytes=10_000, timeout_s=5, allow_private=True)
    assert "caf\u00e9 cr\u00e8me" in page.text and "\ufffd" not in page.text
