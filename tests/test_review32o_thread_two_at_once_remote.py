"""Two follow-ups sent at once on one thread whose jobs run on a RunPod endpoint both ran: the job
row of the first exists only once the endpoint has answered its submit, so the second saw no turn
running. Now the second is refused while the first is being queued (the local runner's case:
tests/test_review32k_thread_two_at_once.py)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_helpers import write_config
from test_mcp_threads import WorkerEndpoint, _recording_llm

from mcp_server.server import build_server


class SlowToQueue(WorkerEndpoint):
    """An endpoint whose /run answers after a while (the network, RunPod's queue)."""

    async def submit(self, job: dict[str, Any]) -> str:
        await asyncio.sleep(0.3)
        return await super().submit(job)


async def test_two_follow_ups_sent_at_once_on_a_remote_thread_run_one(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from mcp_helpers import use_fake_llm

    use_fake_llm(monkeypatch, _recording_llm([]))
    endpoint = SlowToQueue()
    monkeypatch.setattr("swarm.executors.make_executor", lambda config, runtime: endpoint)
    monkeypatch.setattr("handler._runtime", None)
    config = write_config(tmp_path, wait_budget_s=30)
    monkeypatch.setenv("SWARM_CONFIG", str(config))
    async with Client(build_server(str(config))) as client:
        first = (await client.call_tool("delegate", {"task": "first question", "kind": "critical"})).structured_content
        thread_id = first["thread_id"]
        answers = await asyncio.gather(*(
            client.call_tool("delegate", {"task": f"follow-up {n}", "kind": "critical", "thread_id": thread_id})
            for n in (1, 2)))
        refused = [a for a in answers if a.is_error]
        assert len(refused) == 1, [a.content[0].text for a in answers]
        assert "still being queued" in refused[0].content[0].text and len(endpoint.inputs) == 2
        thread = json.loads((await client.read_resource(f"swarm://threads/{thread_id}")).contents[0].text)
    assert [t["role"] for t in thread["turns"]] == ["user", "assistant"] * 2
