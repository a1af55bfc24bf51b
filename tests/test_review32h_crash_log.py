"""A job that crashes (a bug) names the log that holds its details: the RunPod worker's for a job
run there, the MCP server's (or the swarm command's terminal) for one run on this machine, where
"see the worker log" sent a Desktop user looking for a worker that never ran it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_helpers import use_fake_llm, write_config


def _crashing_llm() -> Any:
    from providers.testing import FunctionLLM

    def boom(messages: Any, config: Any) -> str:
        raise ZeroDivisionError("division by zero in /secret/path.py")

    return FunctionLLM(boom)


async def test_a_local_job_that_crashes_names_the_mcp_servers_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mcp_server.server import build_server

    use_fake_llm(monkeypatch, _crashing_llm())
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=30)))) as client:
        crashed = await client.call_tool("delegate", {"task": "hi", "kind": "critical"})
    text = crashed.content[0].text
    assert crashed.is_error and "InternalError" in text, text
    assert "see the MCP server's log on this machine (or the terminal of the swarm command that ran it), job" in text, text
    assert "worker" not in text and "/secret/path.py" not in text, text


async def test_a_runpod_job_that_crashes_names_the_workers_log(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import handler
    from swarm.runtime import Runtime

    use_fake_llm(monkeypatch, _crashing_llm())
    runtime = Runtime(config_file)
    monkeypatch.setattr(handler, "_runtime", runtime)
    try:
        result = await handler.handler({"id": "rp-1", "input": {"project": "swarm", "action": "delegate",
                                                                "input": {"task": "hi", "kind": "critical"}}})
    finally:
        await runtime.aclose()
    error = json.loads(result["error"])
    assert error["type"] == "InternalError" and "see the RunPod worker's log, job " in error["message"], error
    assert "MCP server" not in error["message"]
