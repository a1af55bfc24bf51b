"""Two follow-ups sent at once on one thread both ran: each passed the "a turn still running" check
before either's job existed (the check came before the thread store's read, a wait in a worker
thread), so both answered without the other's turn and the thread stored their turns interleaved."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from mcp import Client
from mcp_helpers import SlowLLM, use_fake_llm, write_config

from mcp_server.server import build_server


async def test_two_follow_ups_sent_at_once_on_one_thread_run_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_llm(monkeypatch, SlowLLM(delay_s=0.5, text="ultramarine"))
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=5)))) as client:
        first = (await client.call_tool("delegate", {"task": "My favourite colour?", "kind": "critical"})).structured_content
        assert first["status"] == "COMPLETED", first
        thread_id = first["thread_id"]
        calls = [client.call_tool("delegate", {"task": f"Why {n}?", "kind": "critical", "thread_id": thread_id})
                 for n in (1, 2)]
        answers = await asyncio.gather(*calls)
        refused = [a for a in answers if a.is_error]
        assert len(refused) == 1, [a.content[0].text for a in answers]
        assert "has a turn still running" in refused[0].content[0].text
        thread = json.loads((await client.read_resource(f"swarm://threads/{thread_id}")).contents[0].text)
        assert [t["role"] for t in thread["turns"]] == ["user", "assistant"] * 2
