"""Review 32s: ``refresh_tools`` compared whole configs, so an edit of models or routing alone (no
tool's name, description or schema changes) re-registered the tools and sent every client
``notifications/tools/list_changed``: a client lists the tools again, for nothing, at each such
edit. The listeners are told only when what tools/list says changed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from mcp import Client
from mcp.shared.subscriptions import ToolsListChanged
from mcp_helpers import write_config

from mcp_server.server import build_server


class _Heard:
    """The server's tools bus and its handshake-era clients, as one record of what was told."""

    def __init__(self) -> None:
        self.told: list[Any] = []

    async def publish(self, event: Any) -> None:
        self.told.append(event)

    async def tell_clients(self) -> None:
        self.told.append("session")


def _edit(path: Path, change: Any) -> None:
    config = yaml.safe_load(path.read_text())
    change(config)
    path.write_text(yaml.safe_dump(config))
    stamp = path.stat().st_mtime_ns + 2_000_000_000  # a new stamp, however coarse the filesystem's clock
    os.utime(path, ns=(stamp, stamp))


def _models_and_routing(config: dict[str, Any]) -> None:
    config["models"]["deepseek-v3.1-q8"]["max_output_tokens"] = 1024
    config["routing"]["delegation"]["critical"]["primary"] = "local"


def _task_limit(config: dict[str, Any]) -> None:
    config["limits"]["max_task_chars"] = 5000


async def test_an_edit_the_tool_list_does_not_show_tells_no_client(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    server = build_server(str(path))
    heard = _Heard()
    server._tools_bus = heard
    server._tell_clients = heard.tell_clients  # type: ignore[method-assign]
    async with Client(server) as client:
        before = await client.list_tools()

        _edit(path, _models_and_routing)
        await client.call_tool("list_jobs", {})  # any request finds the reload
        assert server._tools_config.models["deepseek-v3.1-q8"].max_output_tokens == 1024  # re-registered
        assert heard.told == [] and await client.list_tools() == before

        _edit(path, _task_limit)  # the delegate schema's maxLength: what a client lists changed
        await client.call_tool("list_jobs", {})
        assert heard.told == [ToolsListChanged(), "session"]
        delegate = next(tool for tool in (await client.list_tools()).tools if tool.name == "delegate")
        assert delegate.input_schema["properties"]["task"]["maxLength"] == 5000
