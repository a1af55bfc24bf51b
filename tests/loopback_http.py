"""A ``ThreadingHTTPServer`` on a free loopback port, served from a daemon thread, for fakes of
HTTP APIs (RunPod's) that tests point the real clients at."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LoopbackHTTP:
    """Serves ``handler`` at ``url`` (``http://127.0.0.1:<port><root>``) until ``close``."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], root: str = "/v2") -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{root}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing (http.server writes every request to stderr)."""

    def log_message(self, *args: object) -> None:
        pass


def send_json(handler: BaseHTTPRequestHandler, status: int, answer: Any) -> None:
    """Answer ``handler``'s request with ``answer`` as JSON, with its length."""
    data = json.dumps(answer).encode()
    handler.send_response(status)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


def read_json(handler: BaseHTTPRequestHandler) -> Any:
    """The JSON body of ``handler``'s request ({} when it has none)."""
    return json.loads(handler.rfile.read(int(handler.headers.get("content-length") or 0)) or b"{}")
