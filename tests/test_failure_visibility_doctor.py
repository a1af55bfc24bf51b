"""``swarm doctor`` says why a model's probe (``GET {api_base}/models``) failed: a refused key
(401/403: check the key), a failing service (5xx: the key is not the problem) or no answer at
all (refused or timed out: the address). It printed "failed (refused, timed out or HTTP >= 400)"
for all of them, so a 500 sent people to rotate a good key."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fake_openai import RefusedPort
from test_doctor import FAKE_KEY, findings, write_config

MODEL = "model deepseek-v3.1-q8"


class _ModelsStatus(BaseHTTPRequestHandler):
    """``GET /models`` answers with the server's ``status`` (an OpenAI-shaped error body)."""

    def do_GET(self) -> None:  # noqa: N802 - the http.server hook
        status = self.server.status  # type: ignore[attr-defined]
        body = json.dumps({"error": {"message": f"fake status {status}", "type": "error"}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def status_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ModelsStatus)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], base: str) -> dict[str, Any]:
    monkeypatch.setenv("DEEPSEEK_API_KEY", FAKE_KEY)
    monkeypatch.setenv("DEEPSEEK_API_BASE", base)  # litellm_model stays deepseek/deepseek-chat: probed
    monkeypatch.setenv("DEEPSEEK_Q4_API_BASE", base)
    code, found = findings(capsys, write_config(tmp_path), "--quick")
    assert code == 1
    return dict(found[MODEL])


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_is_named_as_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str], status_server: Any, status: int) -> None:
    status_server.status = status
    base = f"http://127.0.0.1:{status_server.server_address[1]}"
    line = _probe(tmp_path, monkeypatch, capsys, base)
    assert line["status"] == "fail"
    assert f"HTTP {status}" in line["detail"] and "refused the key" in line["detail"], line
    assert "DEEPSEEK_API_KEY" in line["fix"] and "valid" in line["fix"]
    assert FAKE_KEY not in json.dumps(line)


@pytest.mark.parametrize("status", [500, 503])
def test_a_failing_service_is_not_blamed_on_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str], status_server: Any, status: int) -> None:
    status_server.status = status
    base = f"http://127.0.0.1:{status_server.server_address[1]}"
    line = _probe(tmp_path, monkeypatch, capsys, base)
    assert line["status"] == "fail"
    assert f"HTTP {status}" in line["detail"] and "the service failed" in line["detail"], line
    assert "refused the key" not in line["detail"] and "valid" not in line["fix"]


def test_a_refused_connection_is_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with RefusedPort() as refused:
        line = _probe(tmp_path, monkeypatch, capsys, refused.url)
    assert line["status"] == "fail" and "unreachable" in line["detail"] and "connection refused" in line["detail"], line
    assert f"check that {refused.url} is up" in line["fix"]


def test_a_server_that_never_answers_is_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as silent:  # listening, never accepting: the request is sent, no answer comes
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        base = f"http://127.0.0.1:{silent.getsockname()[1]}"
        line = _probe(tmp_path, monkeypatch, capsys, base)
    assert line["status"] == "fail" and "unreachable" in line["detail"] and "timed out" in line["detail"], line
