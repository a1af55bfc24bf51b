"""The image tools' input limits (providers.image.max_input_bytes, max_input_pixels) were in no
description or schema a model reads from tools/list: it learned them from a refusal, after sending
the whole image. Driven over stdio, as Claude Desktop starts the server."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp_helpers import write_config

ROOT = Path(__file__).resolve().parents[1]
IMAGE_TOOLS = ("upscale_image", "remove_background", "process_image")


async def _descriptions(config: Path, home: Path) -> dict[str, str]:
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_server.server", "--config", str(config)],
                                   env={**os.environ, "SWARM_HOME": str(home)}, cwd=str(ROOT))
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        return {tool.name: tool.description or "" for tool in (await session.list_tools()).tools}


async def test_image_tools_say_the_input_limits_in_force(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    data = yaml.safe_load(config.read_text())
    data["providers"]["image"].update(max_input_bytes=3 * 2**20, max_input_pixels=4_050_000)
    config.write_text(yaml.safe_dump(data, sort_keys=False))

    described = await _descriptions(config, tmp_path / "home")

    for tool in IMAGE_TOOLS:
        assert "(≤3 MiB, 4 MP)" in described[tool], (tool, described[tool])  # 4.05 MP, rounded down


async def test_the_shipped_limits_are_said(tmp_path: Path) -> None:
    described = await _descriptions(write_config(tmp_path), tmp_path / "home")
    assert "(≤20 MiB, 16.7 MP)" in described["upscale_image"]  # 16,777,216 pixels
