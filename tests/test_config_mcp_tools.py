"""``mcp.enabled_tools``: only names the MCP server registers, and core's list of them agrees."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import load_config
from core.errors import ConfigError
from core.rules import MCP_ACTION_TOOLS, MCP_ALWAYS_ON_TOOLS


def test_a_misspelled_tool_is_refused_with_the_valid_names(config_file: Path) -> None:
    text = config_file.read_text().replace('enabled_tools: ["delegate"', 'enabled_tools: ["delegat"')
    config_file.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(config_file, env={})
    assert "mcp.enabled_tools[0]: unknown tool 'delegat'; valid: delegate, research" in str(err.value)


async def test_core_tool_names_are_the_tools_the_server_registers(config_file: Path, tmp_path: Path) -> None:
    from mcp_server.server import build_server

    text = config_file.read_text()
    start = text.index("  enabled_tools:")
    config_file.write_text(text[:start] + text[text.index("\n", start) + 1:])  # every available tool
    server = build_server(str(config_file), jobs_path=tmp_path / "jobs.sqlite")
    listed = {tool.name for tool in await server.list_tools()}
    assert listed == {*MCP_ACTION_TOOLS, *MCP_ALWAYS_ON_TOOLS}
