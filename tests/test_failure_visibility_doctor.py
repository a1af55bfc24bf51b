"""``swarm doctor`` says why a model's probe (``GET {api_base}/models``) failed: a refused key
(401/403: check the key), a failing service (5xx: the key is not the problem) or no answer at
all (refused or timed out: the address). It printed "failed (refused, timed out or HTTP >= 400)"
for all of them, so a 500 sent people to rotate a good key.

An optional backend left unconfigured is INFO only while its chain has another member that runs
here: one that leaves a chain with none, or a value set but unusable, stays a WARN (or a FAIL)."""

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


def _probe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], base: str,
           exit_code: int) -> dict[str, Any]:
    """The finding of deepseek-v3.1-q8 (both deepseek models at ``base``); ``exit_code``: doctor's.
    The chain goes on to the local model, so only what was configured wrong (the key) fails doctor."""
    monkeypatch.setenv("DEEPSEEK_API_KEY", FAKE_KEY)
    monkeypatch.setenv("DEEPSEEK_API_BASE", base)  # litellm_model stays deepseek/deepseek-flash: probed
    monkeypatch.setenv("DEEPSEEK_Q4_API_BASE", base)
    code, found = findings(capsys, write_config(tmp_path), "--quick")
    assert code == exit_code, found[MODEL]
    return dict(found[MODEL])


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_is_named_as_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str], status_server: Any, status: int) -> None:
    status_server.status = status
    base = f"http://127.0.0.1:{status_server.server_address[1]}"
    line = _probe(tmp_path, monkeypatch, capsys, base, exit_code=1)
    assert line["status"] == "fail"  # configured wrong: a FAIL though the chain goes on to local
    assert f"HTTP {status}" in line["detail"] and "refused the key" in line["detail"], line
    assert "DEEPSEEK_API_KEY" in line["fix"] and "valid" in line["fix"]
    assert FAKE_KEY not in json.dumps(line)


@pytest.mark.parametrize("status", [500, 503])
def test_a_failing_service_is_not_blamed_on_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str], status_server: Any, status: int) -> None:
    status_server.status = status
    base = f"http://127.0.0.1:{status_server.server_address[1]}"
    line = _probe(tmp_path, monkeypatch, capsys, base, exit_code=0)
    assert line["status"] == "warn"  # calls go on to the local model
    assert f"HTTP {status}" in line["detail"] and "the service failed" in line["detail"], line
    assert "calls fall back: the chain goes on to local" in line["detail"], line
    assert "refused the key" not in line["detail"] and "valid" not in line["fix"]


def test_a_refused_connection_is_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    with RefusedPort() as refused:
        line = _probe(tmp_path, monkeypatch, capsys, refused.url, exit_code=0)
    assert line["status"] == "warn" and "unreachable" in line["detail"] and "connection refused" in line["detail"], line
    assert f"check that {refused.url} is up" in line["fix"]


def test_a_server_that_never_answers_is_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as silent:  # listening, never accepting: the request is sent, no answer comes
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        base = f"http://127.0.0.1:{silent.getsockname()[1]}"
        line = _probe(tmp_path, monkeypatch, capsys, base, exit_code=0)
    assert line["status"] == "warn" and "unreachable" in line["detail"] and "timed out" in line["detail"], line


def test_an_unset_key_stays_a_warning_where_it_leaves_a_chain_with_no_model_that_runs_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without ``local`` in the fallback chain and only GEMINI_API_KEY set, the fast tier still has
    gemini; the balanced and premium tiers (and the default's chain) have nothing that runs here."""
    monkeypatch.setenv("GEMINI_API_KEY", FAKE_KEY)  # gemini has no cheap probe: nothing is sent

    def edit(raw: dict[str, Any]) -> None:
        raw["providers"]["llm"]["fallback_chain"] = ["deepseek", "claude"]

    code, found = findings(capsys, write_config(tmp_path, edit), "--quick")

    assert code == 0
    fast = found["model deepseek-v3.1-q4"]
    assert fast["status"] == "info" and fast["detail"].endswith("skipped, the chain goes on to gemini-2.5-flash-lite"), fast
    for model, env in (("deepseek-v3.1-q8", "DEEPSEEK_API_KEY"), ("claude-sonnet-5-5", "ANTHROPIC_API_KEY"),
                       ("claude-opus-5-5", "ANTHROPIC_API_KEY")):
        line = found[f"model {model}"]
        assert line["status"] == "warn", line
        assert (line["detail"], line["fix"]) == (f"{env} is not set -> skipped", f"export {env}=..."), line


def test_an_unset_search_backend_stays_a_warning_when_the_local_index_cannot_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SWARM_CORPUS", str(tmp_path / "no-such-corpus"))  # and no index in the fresh SWARM_HOME

    code, found = findings(capsys, write_config(tmp_path), "--quick")

    assert code == 0
    assert found["search local"]["status"] == "warn" and "no-such-corpus" in found["search local"]["detail"]
    for name, env in (("searxng", "SEARXNG_URL"), ("tavily", "TAVILY_API_KEY")):
        line = found[f"search {name}"]
        assert line["status"] == "warn" and line["detail"] == f"{env} is not set -> the search chain skips it", line


def test_a_search_url_set_but_unusable_is_not_taken_for_an_option(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The local index still runs here, but SEARXNG_URL was set: not a URL is a WARN, a server
    that refuses is a FAIL; the backend left unset beside it (tavily) is INFO."""
    monkeypatch.setenv("SEARXNG_URL", "searx.example.org")
    code, found = findings(capsys, write_config(tmp_path), "--quick")
    line = found["search searxng"]
    assert code == 0 and line["status"] == "warn" and "SEARXNG_URL is not an http(s) URL" in line["detail"], line
    assert found["search tavily"]["status"] == "info"

    with RefusedPort() as refused:
        monkeypatch.setenv("SEARXNG_URL", refused.url)
        code, found = findings(capsys, write_config(tmp_path), "--quick")
    assert code == 1 and found["search searxng"]["status"] == "fail", found["search searxng"]


def test_an_image_fallback_not_pulled_stays_a_warning_when_the_model_before_it_is_missing_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """u2net first, isnet-anime behind it: both need a download, so remove_background has no
    model here and neither line is an option."""
    monkeypatch.setenv("SWARM_MODELS_DIR", str(tmp_path / "models"))

    def edit(raw: dict[str, Any]) -> None:
        raw["providers"]["image"]["rembg"].update(model="u2net", fallback_models=["isnet-anime"])

    code, found = findings(capsys, write_config(tmp_path, edit), "--quick")

    assert code == 0
    primary, fallback = found["image u2net"], found["image isnet-anime"]
    assert primary["status"] == "warn" and "no fallback is present or preparable offline either" in primary["detail"]
    assert fallback["status"] == "warn", fallback
    assert fallback["detail"] == "remove_background fallback: not pulled; needs internet"
    assert fallback["fix"] == "swarm models pull isnet-anime"
