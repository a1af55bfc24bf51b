"""Every error a tool returns has one shape, whichever layer found it: the MCP door before any job
(17 images, a missing image, an unknown job id, bad arguments), or the dispatcher in a job. A
client reads ``isError``, "Type: field: message" naming the limit, and the structured error of a
failed job; never the SDK's "Error executing tool NAME: ..." frame, a traceback or a secret."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError
from mcp_helpers import write_config

ROOT = Path(__file__).resolve().parents[1]
#: what a failed job's structured content holds (``results.failure_structured``)
FAILED_JOB_FIELDS = {"job_id", "status", "error", "output", "trace", "totals"}
SECRET = "sk-ant-api03-NOTREALbutLONGenough0123456789"


def _stdio(config: Path) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "mcp_server.server", "--config", str(config)],
                                 env=dict(os.environ), cwd=str(ROOT))


def _error(result: Any) -> tuple[str, dict[str, Any]]:
    """The first line of a failed call's text and its structured error, once the shape is checked."""
    text = result.content[0].text
    assert result.is_error, text
    assert "Error executing tool" not in text and "Traceback" not in text
    assert set(result.structured_content) == FAILED_JOB_FIELDS, result.structured_content
    error = result.structured_content["error"]
    assert result.structured_content["status"] == "FAILED"
    first = text.splitlines()[0]
    assert first == f"{error['type']}: {error['message']}"
    return first, error


async def test_errors_the_door_finds_read_as_the_dispatchers_over_stdio(tmp_path: Path) -> None:
    async with Client(_stdio(write_config(tmp_path, wait_budget_s=30))) as client:
        # the dispatcher's refusal, before anything ran: the door's own frame, and no job is kept
        # (each such call was listed by list_jobs as a FAILED job: 54 of a reviewer's 60)
        in_job = await client.call_tool("upscale_image", {"image": "not*base64"})
        first, error = _error(in_job)
        assert first.startswith("InputError: image: ") and "base64" in first, first
        assert error["field"] == "image"
        assert in_job.structured_content["job_id"] is None and in_job.content[0].text == first

        # a text the schema advertises as too long or empty is refused before a job exists (it made
        # a failed job that list_jobs showed), naming the config key in effect
        for tool, args, said in [
            ("delegate", {"task": "x" * 20_001}, "task: is 20,001 characters; the limit is 20,000 (limits.max_task_chars in config)"),
            ("research", {"question": "x" * 2_001},
             "question: is 2,001 characters; the limit is 2,000 (limits.max_question_chars in config)"),
            ("consensus", {"question": "  "}, "question: is empty; say it in plain words"),
            ("delegate", {"task": "\u200b\ufeff "}, "task: is empty; say it in plain words"),
            ("delegate", {"task": "hi", "kind": "banana"},
             "kind: unknown kind 'banana'; valid: bulk_content, critical, research (routing.delegation in config)"),
        ]:
            refused = await client.call_tool(tool, args)
            assert _error(refused)[0] == f"InputError: {said}"
            assert refused.structured_content["job_id"] is None and refused.content[0].text == f"InputError: {said}"
        listed = await client.call_tool("list_jobs", {})
        assert listed.structured_content["jobs"] == []

        # refused by the tool before any image is read or a job made
        too_many = await client.call_tool("remove_background", {"images": [{"image": "aGk="}] * 17})
        first, error = _error(too_many)
        assert first == "InputError: images: 17 images; give 1 to 16 per job (MAX_BATCH_IMAGES)"
        assert too_many.structured_content["job_id"] is None and too_many.structured_content["trace"] == []
        assert too_many.content[0].text == first  # nothing ran: no trace, totals or job line

        none_given = await client.call_tool("upscale_image", {})
        assert _error(none_given)[0] == "InputError: image: give one of image, path, url, key (got none)"
        a_path = await client.call_tool("upscale_image", {"image": "/home/me/photo.png"})
        assert _error(a_path)[0].startswith("InputError: image: looks like a file's path; give a local file as path")
        missing = tmp_path / "missing.png"
        no_file = await client.call_tool("process_image", {"path": str(missing)})
        assert _error(no_file)[0] == f"InputError: path: no such file: {missing}"

        for tool in ("job_result", "job_status", "job_cancel"):
            unknown = await client.call_tool(tool, {"job_id": "no-such-job"})
            assert _error(unknown)[0] == ("InputError: job_id: 'no-such-job' is not a job of yours on this server (a job"
                                          " that finished over 7 days ago is dropped: checkpointer.retention_days);"
                                          " list_jobs shows yours")
        no_thread = await client.call_tool("delegate", {"task": "hi", "thread_id": "no-such-thread"})
        assert _error(no_thread)[0].startswith("InputError: thread_id: 'no-such-thread' is not a thread of yours")

        # arguments the input schema refuses, an argument the tool lacks, a tool the server lacks
        too_long_wait = await client.call_tool("job_result", {"job_id": "x", "wait_s": 3600})
        assert _error(too_long_wait)[0] == ("InputError: invalid arguments for job_result: wait_s: Input should be"
                                            " less than or equal to 50")
        typo = await client.call_tool("remove_background", {"image": "aGk=", "only_masks": True})
        assert _error(typo)[0].startswith("InputError: invalid arguments for remove_background: only_masks: unknown"
                                          " argument; remove_background takes ")
        # a tool the server lacks is a protocol error in MCP (INVALID_PARAMS), in the same words
        with pytest.raises(MCPError) as no_tool:
            await client.call_tool("summon_dragon", {})
        assert no_tool.value.error.code == -32602 and no_tool.value.error.data["error"]["field"] == "name"
        assert no_tool.value.error.message.startswith("name: unknown tool 'summon_dragon'; this server's tools: ")
        assert "Error executing tool" not in no_tool.value.error.message

        assert not (await client.call_tool("list_jobs", {})).is_error  # still serving


async def test_a_crash_in_a_tool_is_a_short_internal_error_without_its_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mcp_server.jobs import JobManager
    from mcp_server.server import build_server

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"the store broke, key {SECRET}")

    monkeypatch.setattr(JobManager, "list", crash)
    async with Client(build_server(str(write_config(tmp_path)))) as client:
        crashed = await client.call_tool("list_jobs", {})
    first, error = _error(crashed)
    assert first == "InternalError: the server failed on this call; its log has the details"
    assert SECRET not in str(crashed.model_dump()) and "the store broke" not in str(crashed.model_dump())


async def test_a_lower_layers_error_raised_in_a_tool_is_told_by_its_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that cannot be reached (a ``SwarmError`` the tool does not catch) says so, typed."""
    from core.errors import ProviderUnavailable
    from mcp_server.server import build_server

    def store_down(section: Any) -> Any:
        raise ProviderUnavailable("postgres", f"connection refused (password {SECRET})")

    monkeypatch.setattr("swarm.threads.open_thread_store", store_down)
    async with Client(build_server(str(write_config(tmp_path)))) as client:
        down = await client.call_tool("list_threads", {})
    first, error = _error(down)
    assert error["type"] == "ProviderUnavailable" and first.startswith("ProviderUnavailable: postgres: connection refused")
    assert SECRET not in str(down.model_dump())
