"""The MCP door as a client that follows the specification strictly meets it, over real stdio.

A raw JSON-RPC client speaks the handshake era (``initialize`` at 2025-11-25, as Claude Desktop and
most clients of 2025 do); the SDK's own ``Client`` speaks 2026-07-28. Each test failed before its fix:

- an unknown tool was a failed call (``isError``); MCP makes it a protocol error, ``-32602``;
- a failed call's structured content broke the tool's own output schema (``job_id`` null, status
  ``FAILED``), which a client that checks it (the TypeScript SDK's, the Inspector's) refused;
- a resource that does not exist was ``-32602`` whatever the protocol: 2025-11-25 says ``-32002``;
- a list request's cursor that the server never issued listed page one: MCP says ``-32602``.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp_helpers import write_config

ROOT = Path(__file__).resolve().parents[1]
#: how long one answer may take on a loaded machine (a generous bound, not a timing assert)
ANSWER_S = 60.0


class RawClient:
    """A JSON-RPC client on the server's stdin/stdout: one JSON message a line, as MCP's stdio is."""

    def __init__(self, config: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mcp_server.server", "--config", str(config)], cwd=ROOT, env=dict(os.environ),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.received: queue.Queue[dict[str, Any]] = queue.Queue()
        self.last_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.received.put(json.loads(line))

    def _send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps({"jsonrpc": "2.0", **message}) + "\n").encode())
        self.process.stdin.flush()

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """The response to one request (notifications on the way are skipped)."""
        self.last_id += 1
        self._send({"id": self.last_id, "method": method, **({"params": params} if params is not None else {})})
        while True:
            message = self.received.get(timeout=ANSWER_S)
            if message.get("id") == self.last_id and "method" not in message:
                return message

    def __enter__(self) -> RawClient:
        answer = self.request("initialize", {"protocolVersion": "2025-11-25", "capabilities": {},
                                             "clientInfo": {"name": "strict", "version": "1"}})
        assert answer["result"]["protocolVersion"] == "2025-11-25", answer
        self._send({"method": "notifications/initialized"})
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=ANSWER_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _error(answer: dict[str, Any]) -> dict[str, Any]:
    assert "error" in answer and "result" not in answer, answer
    return dict(answer["error"])


def test_an_unknown_tool_is_a_protocol_error_and_bad_arguments_a_failed_call(tmp_path: Path) -> None:
    with RawClient(write_config(tmp_path)) as client:
        tools = [t["name"] for t in client.request("tools/list")["result"]["tools"]]
        error = _error(client.request("tools/call", {"name": "summon_dragon", "arguments": {}}))
        assert error["code"] == -32602
        assert error["message"] == f"name: unknown tool 'summon_dragon'; this server's tools: {', '.join(tools)}"
        assert error["data"]["tool"] == "summon_dragon" and error["data"]["error"]["field"] == "name"

        # the arguments of a tool the server has: a tool execution error the model can correct
        refused = client.request("tools/call", {"name": "delegate", "arguments": {"task": 5}})["result"]
        assert refused["isError"] is True
        assert refused["structuredContent"]["error"]["field"] == "task"


#: arguments each tool refuses before any job exists
REFUSED = {"delegate": {"task": ""}, "research": {}, "consensus": {"question": "q", "stances": []},
           "upscale_image": {}, "remove_background": {"path": "relative.png"}, "process_image": {"tile": -1},
           "job_status": {"job_id": "no-such-job"}, "job_result": {"job_id": "no-such-job"},
           "job_cancel": {"job_id": "bad id"}, "list_jobs": {"limit": 0}, "list_threads": {"limit": 1000}}


def test_every_result_a_failed_call_gives_conforms_to_the_tools_output_schema(tmp_path: Path) -> None:
    """What a client that checks structured content (the TypeScript SDK's ajv: 2020-12) does with
    every refusal: the schemas are valid JSON Schema, and each failed call's content matches its tool's."""
    with RawClient(write_config(tmp_path)) as client:
        listed = {t["name"]: t for t in client.request("tools/list")["result"]["tools"]}
        assert set(REFUSED) <= set(listed)
        for name, arguments in REFUSED.items():
            tool = listed[name]
            Draft202012Validator.check_schema(tool["inputSchema"])
            Draft202012Validator.check_schema(tool["outputSchema"])
            result = client.request("tools/call", {"name": name, "arguments": arguments})["result"]
            assert result["isError"] is True, (name, result)
            problems = [e.message for e in Draft202012Validator(tool["outputSchema"]).iter_errors(result["structuredContent"])]
            assert problems == [], (name, problems)
        # the schema still says what a success holds
        assert set(listed["delegate"]["outputSchema"]["properties"]["status"]["enum"]) == {
            "COMPLETED", "IN_PROGRESS", "FAILED", "CANCELLED"}


#: URIs whose resource does not exist (none is this client's), and the field each names
MISSING = {"swarm://jobs/no-such-job": "job_id", "swarm://jobs/no-such-job/report": "job_id",
           "swarm://jobs/no-such-job/sources/1/text": "job_id", "swarm://threads/no-such-thread": "thread_id",
           "swarm://graphs/no-such-graph": "name", "swarm://artifacts/nothing/here.png": "key",
           "swarm://nothing/here": "uri"}


def test_a_resource_that_does_not_exist_is_the_protocols_not_found(tmp_path: Path) -> None:
    with RawClient(write_config(tmp_path)) as client:
        for uri, field in MISSING.items():
            error = _error(client.request("resources/read", {"uri": uri}))
            assert error["code"] == -32002, (uri, error)  # 2025-11-25: "Resource not found"
            assert error["data"]["uri"] == uri and error["data"]["error"]["field"] == field, error
            assert error["data"]["error"]["type"] == "InputError"
        # a bad page is bad input, not a missing resource
        page = _error(client.request("resources/read", {"uri": "swarm://jobs/no-such-job/report?page=two"}))
        assert page["code"] == -32602 and page["data"]["error"]["field"] == "page"


async def test_a_2026_client_gets_invalid_params_for_a_missing_resource(tmp_path: Path) -> None:
    """2026-07-28 retired -32002 for INVALID_PARAMS (SEP-2164): the same read, the newer code."""
    params = StdioServerParameters(command=sys.executable, cwd=str(ROOT), env=dict(os.environ),
                                   args=["-m", "mcp_server.server", "--config", str(write_config(tmp_path))])
    async with Client(params) as client:
        assert client.protocol_version == "2026-07-28"
        with pytest.raises(Exception) as raised:
            await client.read_resource("swarm://jobs/no-such-job")
        assert raised.value.error.code == -32602  # type: ignore[attr-defined]


@pytest.mark.parametrize("method", ["tools/list", "resources/list", "resources/templates/list", "prompts/list"])
def test_a_cursor_the_server_never_issued_is_invalid_params(tmp_path: Path, method: str) -> None:
    with RawClient(write_config(tmp_path)) as client:
        first = client.request(method)["result"]
        assert "nextCursor" not in first  # everything in one page
        assert client.request(method, {"cursor": ""})["result"] == first  # an empty one reads as none
        error = _error(client.request(method, {"cursor": "eyJwYWdlIjogMn0="}))
        assert error["code"] == -32602 and error["data"]["error"]["field"] == "cursor"
        assert "lists everything at once" in error["message"]
        assert "result" in client.request("ping")  # still serving
