"""tools/list follows the config in effect: a config edited while the server runs (hot swap)
re-registers the tools, whose descriptions, limits and choices come from it, and a client
listening (``subscriptions/listen``) is told ``notifications/tools/list_changed``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import yaml
from mcp import Client
from mcp.shared.subscriptions import ToolsListChanged
from mcp.types import PromptReference
from mcp_helpers import write_config
from test_mcp_stdio import TOOLS_LIST_MAX_CHARS

from mcp_server.server import build_server


def _tools(listed: Any) -> dict[str, Any]:
    return {tool.name: tool for tool in listed.tools}


def _edit(path: Path) -> None:
    """A new delegation kind, a smaller task limit, and a web search backend set up."""
    config = yaml.safe_load(path.read_text())
    config["routing"]["delegation"]["poetry"] = {"primary": "local", "reviewer": None}
    config["limits"]["max_task_chars"] = 5000
    config["providers"]["search"]["backends"]["searxng"]["url"] = "http://127.0.0.1:9"
    path.write_text(yaml.safe_dump(config))


async def test_an_edited_config_is_what_tools_list_says_and_listeners_hear_of_it(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    async with Client(build_server(str(path))) as client:
        before = _tools(await client.list_tools())
        assert before["delegate"].input_schema["properties"]["kind"]["enum"] == ["bulk_content", "critical", "research"]
        assert "local documents only" in before["research"].description

        async with client.listen(tools_list_changed=True) as changes:
            _edit(path)
            await client.call_tool("list_jobs", {})  # any request finds the reload
            with anyio.fail_after(10):
                assert await changes.__anext__() == ToolsListChanged()

        listed = await client.list_tools()
        after = _tools(listed)
        delegate = after["delegate"].input_schema["properties"]
        assert delegate["kind"]["enum"] == ["bulk_content", "critical", "poetry", "research"]
        assert delegate["task"]["maxLength"] == 5000
        assert "the web (searxng) and local documents" in after["research"].description
        assert list(after) == list(before)  # the same tools, in the same order
        size = sum(len(tool.model_dump_json(by_alias=True, exclude_none=True)) for tool in listed.tools)
        assert size <= TOOLS_LIST_MAX_CHARS

        # what the schema now says is what a call meets
        too_long = await client.call_tool("delegate", {"task": "x" * 5001})
        assert too_long.is_error and "the limit is 5,000" in too_long.content[0].text
        kinds = await client.complete(PromptReference(name="delegate_and_review"), {"name": "kind", "value": "po"})
        assert kinds.completion.values == ["poetry"]


async def test_a_config_that_did_not_change_leaves_the_tools_as_they_are(tmp_path: Path) -> None:
    path = write_config(tmp_path)
    server = build_server(str(path))
    async with Client(server) as client:
        first = await client.list_tools()
        registered = server._tool_manager.get_tool("delegate")
        second = await client.list_tools()
    assert first == second
    assert server._tool_manager.get_tool("delegate") is registered  # not rebuilt on each list


async def test_a_registration_that_fails_keeps_the_last_tools_and_the_watch_goes_on(tmp_path: Path, monkeypatch: Any) -> None:
    """A reload whose tools raise something other than a SwarmError (a bug, a schema the SDK
    refuses) left the server with the tools registered before the raise, and ended the 5 s watch
    for good: no listener heard of a later reload."""
    import asyncio

    from mcp_server import server as server_module
    from mcp_server import tools as tools_module

    path = write_config(tmp_path)
    server = build_server(str(path))
    before = [tool.name for tool in server._tool_manager.list_tools()]
    real = tools_module.register
    looks = 0

    def broken(srv: Any, config: Any) -> list[str]:
        real(srv, config)
        raise RuntimeError("boom")

    monkeypatch.setattr(server_module.tools, "register", broken)
    config = server._tools_config.model_copy(update={"limits": server._tools_config.limits.model_copy(
        update={"max_task_chars": 5000})})
    server._config_in_effect = lambda: config
    try:
        await server.refresh_tools()
    except RuntimeError:
        pass
    assert [tool.name for tool in server._tool_manager.list_tools()] == before

    async def refresh() -> bool:
        nonlocal looks
        looks += 1
        raise RuntimeError("boom")

    monkeypatch.setattr(server, "refresh_tools", refresh)
    watcher = asyncio.get_running_loop().create_task(server.watch_tools(every_s=0.01))
    try:
        with anyio.fail_after(10):
            while looks < 3:
                await asyncio.sleep(0.01)
        assert not watcher.done()
    finally:
        watcher.cancel()


class _RawStdio:
    """The server as a subprocess, spoken to in newline-delimited JSON-RPC as a client of an
    earlier protocol revision does (no ``subscriptions/listen``): what Claude Desktop sends."""

    def __init__(self, config: Path) -> None:
        import os
        import queue
        import subprocess
        import sys
        import threading

        from test_mcp_stdio import ROOT

        self.proc = subprocess.Popen([sys.executable, "-m", "mcp_server.server", "--config", str(config)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     cwd=ROOT, env=dict(os.environ), text=True, bufsize=1)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(line) for line in self.proc.stdout or []], daemon=True).start()

    def send(self, message: dict[str, Any]) -> None:
        import json

        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"jsonrpc": "2.0", **message}) + "\n")
        self.proc.stdin.flush()

    def next(self, wanted: Any, timeout_s: float) -> dict[str, Any]:
        """The next message ``wanted(message)`` accepts, the others skipped, within ``timeout_s``."""
        import json
        import time

        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            message = json.loads(self.lines.get(timeout=left))
            if wanted(message):
                return message  # type: ignore[no-any-return]
        raise TimeoutError(f"nothing wanted in {timeout_s} s")

    def request(self, rid: int, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.send({"id": rid, "method": method, **({"params": params} if params is not None else {})})
        return self.next(lambda m: m.get("id") == rid, 60)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def test_a_client_of_an_earlier_protocol_is_told_of_a_reload_on_its_session(tmp_path: Path) -> None:
    """A client of the 2025 protocol (no subscriptions/listen) kept a stale tool list after a
    config edit: it was not offered tools.listChanged and never sent list_changed. Now the
    initialize answer offers it, and the 5 s watch sends it on the session, unasked."""
    path = write_config(tmp_path)
    server = _RawStdio(path)
    try:
        init = server.request(1, "initialize", {"protocolVersion": "2025-06-18", "capabilities": {},
                                                "clientInfo": {"name": "old-client", "version": "1"}})
        assert init["result"]["protocolVersion"] == "2025-06-18"
        assert init["result"]["capabilities"]["tools"]["listChanged"] is True
        server.send({"method": "notifications/initialized"})
        before = server.request(2, "tools/list")["result"]["tools"]
        kinds = next(t for t in before if t["name"] == "delegate")["inputSchema"]["properties"]["kind"]["enum"]
        assert kinds == ["bulk_content", "critical", "research"]

        _edit(path)  # no request follows: the watch finds the reload and tells the session
        server.next(lambda m: m.get("method") == "notifications/tools/list_changed", 30)
        after = server.request(3, "tools/list")["result"]["tools"]
        delegate = next(t for t in after if t["name"] == "delegate")["inputSchema"]["properties"]
        assert delegate["kind"]["enum"] == ["bulk_content", "critical", "poetry", "research"]
    finally:
        server.close()
