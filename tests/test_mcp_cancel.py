"""A client's cancel of a tool call over real stdio (``notifications/cancelled``: Claude Desktop's
Stop button): the job that call started is cancelled, keeping what it had made; a cancelled
``job_result`` poll only stops waiting. (A client that goes away instead leaves its job running
for the next server: ``tests/test_mcp_shutdown.py``.)"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import anyio
from fake_openai import Behaviour, FakeOpenAI
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp_helpers import write_config

ROOT = Path(__file__).resolve().parents[1]
LOCAL_MODEL = "smollm2-135m-instruct"  # the one model without a key: it drafts every delegate here


def server_params(config: Path, **env: str) -> StdioServerParameters:
    return StdioServerParameters(command=sys.executable, args=["-m", "mcp_server.server", "--config", str(config)],
                                 env={**os.environ, **env}, cwd=str(ROOT))


async def cancel_once_running(client: Client, tool: str, arguments: dict[str, Any], after_s: float | None = None) -> None:
    """Call ``tool`` and cancel the call once a progress notification says its job runs (or
    ``after_s`` into it): the SDK's client then sends ``notifications/cancelled``, as a client's
    Stop button does."""
    running = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        running.set()

    async def call() -> None:
        await client.call_tool(tool, arguments, progress_callback=on_progress)
        raise AssertionError(f"{tool} returned before it was cancelled")

    async with anyio.create_task_group() as group:
        group.start_soon(call)
        with anyio.fail_after(60):
            await (anyio.sleep(after_s) if after_s is not None else running.wait())
        group.cancel_scope.cancel()


async def settled_jobs(client: Client, timeout_s: float = 20.0) -> list[dict[str, Any]]:
    """``list_jobs`` once none is IN_PROGRESS (or as it stands after ``timeout_s``)."""
    jobs: list[dict[str, Any]] = []
    with anyio.move_on_after(timeout_s):
        while True:
            jobs = (await client.call_tool("list_jobs", {})).structured_content["jobs"]
            if jobs and all(job["status"] != "IN_PROGRESS" for job in jobs):
                break
            await anyio.sleep(0.2)
    return jobs


async def test_a_cancelled_call_cancels_the_job_it_started_and_the_server_serves_on(tmp_path: Path) -> None:
    """It ran on to COMPLETED, on the CPU, its caller given no job_id (the reviewer's Stop after 8 s)."""
    config = write_config(tmp_path, wait_budget_s=40)
    with FakeOpenAI() as models:
        models.script(LOCAL_MODEL, Behaviour.answer("too late", delay_s=30))
        params = server_params(config, SWARM_LOCAL_LLM_PORT=str(models.port), SWARM_HOME=str(tmp_path / "home"))
        async with Client(params) as client:
            await cancel_once_running(client, "delegate", {"task": "take your time", "kind": "critical"})
            jobs = await settled_jobs(client)
            assert [job["status"] for job in jobs] == ["CANCELLED"], jobs  # within seconds, not after 30 s
            result = (await client.call_tool("job_result", {"job_id": jobs[0]["job_id"], "wait_s": 0})).structured_content
            assert result["error"]["type"] == "JobCancelled"
            cancel = result["trace"][-1]  # what a cancelled job keeps: where it stopped, its time
            assert cancel["step"] == "cancel" and "last progress:" in cancel["detail"], cancel
            assert result["elapsed_ms"] > 0
            # the server still serves: the next call runs as usual
            models.script(LOCAL_MODEL, Behaviour.answer("on time"))
            again = (await client.call_tool("delegate", {"task": "quick one", "kind": "critical"})).structured_content
            assert again["status"] == "COMPLETED" and again["text"] == "on time", again


async def test_a_cancelled_poll_stops_waiting_and_leaves_the_job_running(tmp_path: Path) -> None:
    """``job_result`` waits on a job an earlier call started: its cancel (a client's own timeout
    sends one too) is no ``job_cancel``, the job goes on and finishes."""
    config = write_config(tmp_path, wait_budget_s=0.5)
    with FakeOpenAI() as models:
        models.script(LOCAL_MODEL, Behaviour.answer("worth the wait", delay_s=6))
        params = server_params(config, SWARM_LOCAL_LLM_PORT=str(models.port), SWARM_HOME=str(tmp_path / "home"))
        async with Client(params) as client:
            handle = (await client.call_tool("delegate", {"task": "take your time", "kind": "critical"})).structured_content
            assert handle["status"] == "IN_PROGRESS"
            await cancel_once_running(client, "job_result", {"job_id": handle["job_id"], "wait_s": 30}, after_s=1.5)
            status = (await client.call_tool("job_status", {"job_id": handle["job_id"]})).structured_content
            assert status["status"] in ("IN_PROGRESS", "COMPLETED"), status
            done = (await client.call_tool("job_result", {"job_id": handle["job_id"], "wait_s": 30})).structured_content
    assert done["status"] == "COMPLETED" and done["output"]["text"] == "worth the wait"
