"""Bad input through the MCP door: each a clear error, and the server keeps serving."""

from __future__ import annotations

from pathlib import Path

from mcp import Client
from mcp_helpers import write_config

from mcp_server.server import build_server


async def test_unknown_tool_wrong_types_and_missing_arguments_are_clear_errors(tmp_path: Path) -> None:
    async with Client(build_server(str(write_config(tmp_path)))) as client:
        unknown = await client.call_tool("summon_dragon", {})
        assert unknown.is_error and "summon_dragon" in unknown.content[0].text

        missing = await client.call_tool("research", {})
        assert missing.is_error and "question" in missing.content[0].text

        wrong_type = await client.call_tool("research", {"question": "q", "max_sources": "many"})
        assert wrong_type.is_error and "max_sources" in wrong_type.content[0].text

        out_of_range = await client.call_tool("job_result", {"job_id": "x", "wait_s": 3600})
        assert out_of_range.is_error and "wait_s" in out_of_range.content[0].text

        bad_status = await client.call_tool("list_jobs", {"status": "DONE"})
        assert bad_status.is_error and "status" in bad_status.content[0].text

        assert (await client.call_tool("list_jobs", {})).structured_content == {"jobs": []}
