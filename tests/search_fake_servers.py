"""Loopback servers speaking SearXNG's and Tavily's JSON APIs, able to fail on command."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse


class FakeSearchServer:
    """``mode``: ok | 403 | 429 | 500 | 401 | slow | notjson. ``delay_s`` delays every answer."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.delay_s = 0.0
        self.requests: list[dict[str, Any]] = []
        self.results = [
            {"url": "https://example.org/a", "title": "Alpha page", "content": "alpha about checkpoints", "score": 2.5},
            {"url": "https://example.org/b", "title": "Beta page", "content": "beta text", "score": 1.0},
            {"title": "no url, dropped"},
        ]
        self.url = ""

    def answer(self, handler: BaseHTTPRequestHandler, body: dict[str, Any] | None) -> None:
        self.requests.append({"method": handler.command, "path": handler.path, "headers": dict(handler.headers), "body": body})
        if self.delay_s or self.mode == "slow":
            time.sleep(self.delay_s or 3.0)
        status, payload, ctype = 200, None, "application/json"
        if self.mode in ("403", "429", "500", "401"):
            status, payload = int(self.mode), {"error": "nope"}
        elif self.mode == "notjson":
            payload, ctype = "<html>hi</html>", "text/html"
        else:
            query = (body or {}).get("query") or parse_qs(urlparse(handler.path).query).get("q", [""])[0]
            payload = {"query": query, "results": self.results}
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(data)))
        if status == 429:
            handler.send_header("Retry-After", "7")
        handler.end_headers()
        handler.wfile.write(data)


@contextmanager
def serve() -> Iterator[FakeSearchServer]:
    """Start one fake on 127.0.0.1 (both APIs: GET /search and POST /search)."""
    fake = FakeSearchServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            fake.answer(self, None)

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            fake.answer(self, json.loads(self.rfile.read(length) or b"{}"))

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
