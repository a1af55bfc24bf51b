"""Over real stdio, every refusal of a client's input names its field as data, with the limit or the
accepted values in its words: a tool's as the structured error of a failed call (``isError``); an
unknown tool's (a protocol error in MCP), a resource read's and a prompt's as the JSON-RPC error's
data (``INVALID_PARAMS``, or "resource not found"). An unknown tool, job_id, thread_id, resource URI
or prompt named no field before; an id the caller gave (a pasted key, say) is never echoed unmasked."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError
from mcp_helpers import write_config

ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk-ant-api03-NOTREALbutLONGenough0123456789"
KEPT = "(a job that finished over 7 days ago is dropped: checkpointer.retention_days); list_jobs shows yours"


def _stdio(config: Path) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "mcp_server.server", "--config", str(config)],
                                 env=dict(os.environ), cwd=str(ROOT))


def _refused(result: Any, field: str) -> str:
    """The message of a tool call refused for ``field``, once its text and structured error agree."""
    assert result.is_error, result.content[0].text
    error = result.structured_content["error"]
    assert error["type"] == "InputError" and error["field"] == field, error
    assert result.content[0].text.splitlines()[0] == f"InputError: {error['message']}"
    assert f"{field}: " in error["message"], error  # first, or after "invalid arguments for TOOL: "
    return str(error["message"])


async def _call_refused(client: Any, tool: str, field: str) -> str:
    """The message of a tools/call refused as a protocol error (a tool the server lacks):
    ``INVALID_PARAMS``, the error and the tool asked for in its data, not a failed call."""
    try:
        await client.call_tool(tool, {})
    except MCPError as exc:
        assert exc.error.code == -32602, exc.error
        said = exc.error.data["error"]
        assert said["type"] == "InputError" and said["field"] == field, said
        assert exc.error.message == said["message"] and said["message"].startswith(f"{field}: ")
        assert exc.error.data["tool"] == tool[:100]
        return str(said["message"])
    raise AssertionError(f"tool {tool!r} was called")


async def _read_refused(client: Any, uri: str, field: str) -> str:
    """The message of a resource read refused for ``field``: INVALID_PARAMS, the error in its data."""
    try:
        await client.read_resource(uri)
    except Exception as exc:  # the client raises the JSON-RPC error as MCPError
        error = getattr(exc, "error", None)
        assert error is not None and error.code == -32602, repr(exc)
        said = error.data["error"]
        assert said["type"] == "InputError" and said["field"] == field, said
        assert error.message == said["message"] and said["message"].startswith(f"{field}: ")
        return str(said["message"])
    raise AssertionError(f"{uri} was read")


async def test_unknown_names_and_ids_name_their_field_over_stdio(tmp_path: Path) -> None:
    async with Client(_stdio(write_config(tmp_path))) as client:
        tools = [t.name for t in (await client.list_tools()).tools]
        said = await _call_refused(client, "summon_dragon", "name")
        assert said == f"name: unknown tool 'summon_dragon'; this server's tools: {', '.join(tools)}"

        for tool in ("job_status", "job_result", "job_cancel"):
            said = _refused(await client.call_tool(tool, {"job_id": "no-such-job"}), "job_id")
            assert said == f"job_id: 'no-such-job' is not a job of yours on this server {KEPT}"
        for tool, args in (("delegate", {"task": "hi"}), ("research", {"question": "why?"})):
            said = _refused(await client.call_tool(tool, {**args, "thread_id": "no-such-thread"}), "thread_id")
            assert said.startswith("thread_id: 'no-such-thread' is not a thread of yours on this server; list_threads")

        # arguments the schema refuses: the first bad one is the field, the limit in the words
        assert "Input should be less than or equal to 50" in _refused(
            await client.call_tool("job_result", {"job_id": "x", "wait_s": 3600}), "wait_s")
        assert "Field required" in _refused(await client.call_tool("research", {}), "question")
        _refused(await client.call_tool("research", {"question": "q", "max_sources": "many"}), "max_sources")
        assert "greater than or equal to 1" in _refused(await client.call_tool("list_jobs", {"limit": 0}), "limit")

        # resources: a URI nothing matches, then each template's own variable
        said = await _read_refused(client, "swarm://nothing/here", "uri")
        assert "this server's: swarm://config, swarm://providers, swarm://jobs/{job_id}" in said
        for uri in ("swarm://jobs/no-such-job", "swarm://jobs/no-such-job/report", "swarm://jobs/no-such-job/sources/1"):
            assert await _read_refused(client, uri, "job_id") == \
                f"job_id: 'no-such-job' is not a job of yours on this server {KEPT}"
        assert (await _read_refused(client, "swarm://threads/no-such-thread", "thread_id")).startswith(
            "thread_id: 'no-such-thread' is not a thread of yours")
        assert await _read_refused(client, "swarm://graphs/nope", "name") == \
            "name: unknown graph 'nope'; valid: delegation, research, consensus"
        assert await _read_refused(client, "swarm://jobs/x/report?page=abc", "page") == \
            "page: must be a whole number from 1 (got 'abc')"
        assert (await _read_refused(client, "swarm://artifacts/results/none.png", "key")).endswith(
            "use the key an image tool returned")

        # prompts: an unknown one lists those there are; a missing argument is named
        try:
            await client.get_prompt("nope", {})
        except Exception as exc:
            error = exc.error  # type: ignore[attr-defined]
            assert error.code == -32602 and error.data["error"]["field"] == "name"
            assert error.message == "name: unknown prompt 'nope'; this server's prompts: research_brief, delegate_and_review"
        else:
            raise AssertionError("an unknown prompt was served")
        try:
            await client.get_prompt("delegate_and_review", {})
        except Exception as exc:
            error = exc.error  # type: ignore[attr-defined]
            assert error.code == -32602 and error.data["error"]["field"] == "task", error
            assert "task: " in error.message
        else:
            raise AssertionError("a prompt was served without its argument")

        assert not (await client.call_tool("list_jobs", {})).is_error  # still serving


async def test_an_id_that_is_a_secret_is_named_masked(tmp_path: Path) -> None:
    async with Client(_stdio(write_config(tmp_path))) as client:
        job = await client.call_tool("job_status", {"job_id": SECRET})
        thread = await client.call_tool("delegate", {"task": "hi", "thread_id": SECRET})
        _refused(job, "job_id")
        _refused(thread, "thread_id")
        for result in (job, thread):
            assert SECRET not in str(result.model_dump()) and "NOTREAL" not in str(result.model_dump())
        try:
            await client.read_resource(f"swarm://jobs/{SECRET}")
        except Exception as exc:
            error = exc.error  # type: ignore[attr-defined]
            assert error.data["error"]["field"] == "job_id"
            assert "NOTREAL" not in str(error.model_dump())
        else:
            raise AssertionError("a job that does not exist was read")
