"""completion/complete and logging/setLevel as MCP has them. Each test failed before its fix:

- a completion for a prompt or resource template the server lacks answered values; MCP's
  completion refuses an invalid prompt name with ``-32602``, here naming ``ref.name`` / ``ref.uri``;
- setLevel mapped ``alert`` and ``emergency`` to INFO, and ``notice`` to INFO (which it excludes);
- setLevel changed the server's own stderr log level: a client (one of many over HTTP) could
  silence the operator's log, though the server sends the client no ``notifications/message``.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp.types import PromptReference, ResourceTemplateReference
from mcp_helpers import write_config

from mcp_server.server import build_server

ROOT = Path(__file__).resolve().parents[1]
#: how long the stdio exchange may take on a loaded machine (a generous bound, not a timing assert)
ANSWER_S = 120.0
RFC_5424 = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]


async def test_a_completion_for_a_ref_the_server_lacks_is_invalid_params(tmp_path: Path) -> None:
    async with Client(build_server(str(write_config(tmp_path)))) as client:
        with pytest.raises(MCPError) as no_prompt:
            await client.complete(PromptReference(name="test_prompt_with_arguments"), {"name": "kind", "value": ""})
        error = no_prompt.value.error
        assert error.code == -32602 and error.data["error"]["field"] == "ref.name"
        assert error.message == ("ref.name: unknown prompt 'test_prompt_with_arguments'; this server's prompts:"
                                 " research_brief, delegate_and_review")

        with pytest.raises(MCPError) as no_template:
            await client.complete(ResourceTemplateReference(uri="swarm://nothing/{x}" + "x" * 5_000),
                                  {"name": "x", "value": ""})
        error = no_template.value.error
        assert error.code == -32602 and error.data["error"]["field"] == "ref.uri"
        assert "(5,019 characters)" in error.message and "swarm://graphs/{name}" in error.message
        assert len(str(error.model_dump())) < 3_000  # never grows with the ref it refuses

        # the refs the server has still complete
        kinds = await client.complete(PromptReference(name="delegate_and_review"), {"name": "kind", "value": ""})
        assert kinds.completion.values
        graphs = await client.complete(ResourceTemplateReference(uri="swarm://graphs/{name}"), {"name": "name", "value": "de"})
        assert graphs.completion.values == ["delegation"]


def test_mcp_log_levels_map_to_pythons_in_rfc_5424_order() -> None:
    from mcp_server.protocol import LOG_LEVELS

    assert list(LOG_LEVELS) == RFC_5424
    assert [LOG_LEVELS[name] for name in ("debug", "info", "warning", "error", "critical")] == [
        logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL]
    assert logging.INFO < LOG_LEVELS["notice"] < logging.WARNING  # notice leaves info out
    assert LOG_LEVELS["alert"] == LOG_LEVELS["emergency"] == logging.CRITICAL


def _exchange(config: Path, stderr: Path, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The answers of a handshake-era client (2025-11-25, which has logging/setLevel) over real
    stdio, each request sent once the one before is answered; the server's stderr in ``stderr``."""
    with stderr.open("w") as err:
        server = subprocess.Popen([sys.executable, "-m", "mcp_server.server", "--config", str(config)], cwd=ROOT,
                                  env={**os.environ, "SWARM_LOG_LEVEL": "INFO"}, text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err)
        assert server.stdin is not None and server.stdout is not None
        received: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=lambda: [received.put(json.loads(line)) for line in server.stdout], daemon=True).start()

        def send(message: dict[str, Any]) -> None:
            server.stdin.write(json.dumps({"jsonrpc": "2.0", **message}) + "\n")  # type: ignore[union-attr]
            server.stdin.flush()  # type: ignore[union-attr]

        def answer(n: int) -> dict[str, Any]:
            while (message := received.get(timeout=ANSWER_S)).get("id") != n or "method" in message:
                pass
            return message

        try:
            send({"id": 0, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "h", "version": "1"}}})
            answer(0)
            send({"method": "notifications/initialized"})
            answers = []
            for n, message in enumerate(messages, 1):
                send({"id": n, **message})
                answers.append(answer(n))
        finally:
            server.stdin.close()
            try:
                server.wait(timeout=ANSWER_S)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    return answers


def test_set_level_is_the_clients_and_leaves_the_operators_log_as_it_is(tmp_path: Path) -> None:
    stderr = tmp_path / "stderr.log"
    levels = [{"method": "logging/setLevel", "params": {"level": level}} for level in [*RFC_5424, "error"]]
    bad = {"method": "logging/setLevel", "params": {"level": "verbose"}}
    refused = {"method": "tools/call", "params": {"name": "list_jobs", "arguments": {"limit": 0}}}
    *set_levels, bad_level, call = _exchange(write_config(tmp_path), stderr, [*levels, bad, refused])

    assert all(answer.get("result") == {} for answer in set_levels), set_levels
    assert bad_level["error"]["code"] == -32602, bad_level  # not a level: refused, none recorded
    assert call["result"]["isError"] is True
    # the refusal's INFO line reaches the operator's log (SWARM_LOG_LEVEL=INFO) after the client
    # asked for "error": its level is what notifications/message would carry, not the log's
    said = [json.loads(line) for line in stderr.read_text().splitlines() if line.startswith("{")]
    assert any("tool list_jobs refused" in line.get("message", "") for line in said), stderr.read_text()[-3000:]
