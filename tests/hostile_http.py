"""A loopback HTTP server that misbehaves at the byte level, for fault-injection tests.

Each connection reads one request (headers + Content-Length body) and then plays the next
``Act`` of its script (the last repeats): raw bytes then close (a truncated body, a wrong
shape, a status with any headers), a TCP reset, or a trickle slower than any client timeout.
Real servers fail like this; polite fakes (uvicorn apps) cannot.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class Act:
    kind: Literal["raw", "reset", "trickle"] = "raw"
    data: bytes = b""
    delay_s: float = 0.0

    @classmethod
    def status(cls, code: int, body: bytes | str | dict[str, Any] = b"", headers: dict[str, str] | None = None,
               content_type: str = "application/json") -> Act:
        payload = json.dumps(body).encode() if isinstance(body, dict) else body.encode() if isinstance(body, str) else body
        lines = [f"HTTP/1.1 {code} X", f"Content-Type: {content_type}", f"Content-Length: {len(payload)}",
                 "Connection: close", *(f"{k}: {v}" for k, v in (headers or {}).items())]
        return cls("raw", ("\r\n".join(lines) + "\r\n\r\n").encode() + payload)

    @classmethod
    def json(cls, body: Any, code: int = 200) -> Act:
        return cls.status(code, json.dumps(body).encode())

    @classmethod
    def truncated(cls, body: bytes = b'{"id": "x", "choices": [{"message": {"content": "half an ans') -> Act:
        """Headers promise more bytes than are sent; the connection then closes."""
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body) + 500}\r\n\r\n"
        return cls("raw", head.encode() + body)

    @classmethod
    def reset(cls) -> Act:
        return cls("reset")

    @classmethod
    def slow(cls, seconds: float = 30.0) -> Act:
        """Send the status line, then nothing for ``seconds``."""
        return cls("trickle", b"HTTP/1.1 200 OK\r\n", delay_s=seconds)


class HostileServer:
    """``with HostileServer(Act...) as server``: ``server.url``, ``server.requests`` (raw heads)."""

    def __init__(self, *acts: Act) -> None:
        self.acts = list(acts) or [Act.status(500)]
        self.requests: list[bytes] = []
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True, name="hostile-http")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *acts: Act) -> None:
        with self._lock:
            self.acts = list(acts)

    def _next(self) -> Act:
        with self._lock:
            return self.acts.pop(0) if len(self.acts) > 1 else self.acts[0]

    def _serve(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _read_request(self, conn: socket.socket) -> bytes:
        conn.settimeout(5)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        return head

    def _handle(self, conn: socket.socket) -> None:
        try:
            head = self._read_request(conn)
            with self._lock:
                self.requests.append(head)
            act = self._next()
            if act.kind == "reset":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif act.kind == "trickle":
                conn.sendall(act.data)
                self._stop.wait(act.delay_s)
            else:
                conn.sendall(act.data)
        except OSError:
            pass  # the client hung up first: that is its right
        finally:
            conn.close()

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()


def wait_until(predicate: Any, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False
