"""Arguments the tool schema advertises and the job refuses, through a real MCP session."""

from __future__ import annotations

from pathlib import Path

from mcp import Client
from mcp_helpers import write_config

from mcp_server.server import build_server


async def test_empty_stances_are_refused_by_the_schema_that_the_tool_lists(tmp_path: Path) -> None:
    """``stances: []`` passed the listed schema (no minItems) and failed in the dispatcher as
    ``input.stances: ... (limit min_length=1)``; the schema now says at least one, and the call is
    refused at the door naming ``stances``."""
    async with Client(build_server(str(write_config(tmp_path)))) as client:
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert listed["consensus"].input_schema["properties"]["stances"]["minItems"] == 1

        refused = await client.call_tool("consensus", {"question": "which is better?", "stances": []})
        text = refused.content[0].text
        assert refused.is_error and text.startswith("InputError: invalid arguments for consensus: stances: "), text
        assert "input.stances" not in text and refused.structured_content["error"]["field"] == "stances"
        assert refused.structured_content["job_id"] is None
        assert (await client.call_tool("list_jobs", {})).structured_content == {"jobs": []}


async def test_true_or_false_for_a_number_is_refused_not_read_as_one_or_zero(tmp_path: Path) -> None:
    """``"tile": false`` ran the upscale untiled (0) and ``"max_sources": true`` kept one source:
    pydantic's lax mode read a boolean as 1 or 0 where the job's own schema (strict) refuses it."""
    cases = [("upscale_image", {"image": "aGk=", "tile": False}, "tile", "a valid integer"),
             ("research", {"question": "what is a checkpoint?", "max_sources": True}, "max_sources", "a valid integer"),
             ("job_result", {"job_id": "x", "wait_s": True}, "wait_s", "a valid number"),
             ("list_jobs", {"limit": True}, "limit", "a valid integer")]
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=0.01)))) as client:
        for tool, arguments, field, kind in cases:
            refused = await client.call_tool(tool, arguments)
            text = refused.content[0].text
            assert refused.is_error, (tool, text)
            assert text == f"InputError: invalid arguments for {tool}: {field}: Input should be {kind}, not true/false"
            assert refused.structured_content["error"]["field"] == field
        assert (await client.call_tool("list_jobs", {})).structured_content == {"jobs": []}  # no job was made
        # a number as a string, and a boolean for a boolean, still pass
        assert not (await client.call_tool("list_jobs", {"limit": "5"})).is_error
        flag = await client.call_tool("upscale_image", {"image": "aGk=", "return_base64": True})
        assert "return_base64" not in flag.content[0].text
