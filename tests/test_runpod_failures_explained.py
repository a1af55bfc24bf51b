"""A RunPod endpoint that cannot be reached, or that rejects the key, says where, why and what to
do, and over MCP the failure carries the runpod step the CLI's answer has.

Real HTTP on loopback: a port that refuses connections, a name that never resolves
(``.invalid``, RFC 6761), and the local RunPod-compatible endpoint (``swarm endpoint serve``'s
server, no worker) answering 401 to a wrong key; the MCP server over stdio in a subprocess.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fake_openai import RefusedPort
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from swarm.endpoint.server import EndpointServer
from swarm.endpoint.state import Settings
from swarm.executors.runpod import RunPodExecutor

ROOT = Path(__file__).resolve().parents[1]
KEY = "rpa_WRONGKEY0123456789ABCDEFGHIJ"
JOB = {"project": "swarm", "action": "delegate", "input": {"task": "Say hi."}}


def _runpod_step(envelope: dict[str, Any]) -> dict[str, Any]:
    steps = [step for step in envelope["trace"] if step.get("provider") == "runpod"]
    assert steps, envelope["trace"]
    return steps[-1]


async def test_a_refused_connection_names_the_host_the_cause_the_attempts_and_the_fix() -> None:
    with RefusedPort() as refused:
        runner = RunPodExecutor(f"{refused.url}/v2", "abc123", KEY, max_retries=1)
        envelope = await runner.run(JOB)
    error = envelope["error"]
    assert envelope["status"] == "FAILED" and error["type"] == "ProviderUnavailable"
    message = error["message"]
    assert f"could not connect to 127.0.0.1:{refused.port} (connection refused" in message, message
    assert "gave up after 2 attempts in " in message, message
    assert "runner.runpod.base_url (RUNPOD_API_BASE)" in message and "SWARM_RUNNER=local" in message, message
    assert "not queued on endpoint abc123" in _runpod_step(envelope)["detail"]
    assert KEY not in json.dumps(envelope)


async def test_a_name_that_does_not_resolve_says_so_and_never_shows_the_url() -> None:
    # a base URL may carry a token (a proxy's, a signed one): only the host is named
    runner = RunPodExecutor("http://user:SIGNED0123456789@nonexistent.invalid/v2?sig=SIGNED0123456789", "abc123",
                            KEY, max_retries=0)
    envelope = await runner.run(JOB)
    message = envelope["error"]["message"]
    assert "could not connect to nonexistent.invalid (the name did not resolve" in message, message
    assert "gave up after 1 attempt in " in message and "check this machine's network" in message, message
    assert "SIGNED0123456789" not in json.dumps(envelope) and KEY not in json.dumps(envelope)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[EndpointServer]:
    """The local RunPod-compatible API, no worker: enough to refuse a wrong key."""
    with EndpointServer(Settings(endpoint_id="abc123"), workers=0) as server:
        yield server


async def test_a_rejected_key_names_the_variable_it_came_from_and_never_the_key(endpoint: EndpointServer) -> None:
    runner = RunPodExecutor(endpoint.api_base, "abc123", KEY, api_key_env="MY_RUNPOD_KEY")
    envelope = await runner.run(JOB)
    error = envelope["error"]
    assert error["type"] == "ConfigError"
    assert error["message"].startswith("RunPod rejected the API key in $MY_RUNPOD_KEY (runner.runpod.api_key_env): ")
    assert "export a valid one as MY_RUNPOD_KEY" in error["message"], error["message"]
    assert KEY not in json.dumps(envelope)


def _stdio(tmp_path: Path, **env: str) -> StdioServerParameters:
    config = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    config["runner"]["wait_budget_s"] = 30
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return StdioServerParameters(command=sys.executable, args=["-m", "mcp_server.server", "--config", str(path)],
                                 env={**os.environ, "SWARM_HOME": str(tmp_path / "home"), **env}, cwd=str(ROOT))


@pytest.mark.parametrize("tool, arguments", [("delegate", {"task": "Say hi."}),
                                             ("research", {"question": "What is a circuit breaker?"})])
async def test_over_mcp_a_job_runpod_refused_carries_the_runpod_step_and_names_the_variable(
        tmp_path: Path, endpoint: EndpointServer, tool: str, arguments: dict[str, Any]) -> None:
    params = _stdio(tmp_path, RUNPOD_API_BASE=endpoint.api_base, RUNPOD_ENDPOINT_ID="abc123", RUNPOD_API_KEY=KEY)
    async with Client(params) as client:
        result = await client.call_tool(tool, arguments)
        assert result.is_error
        failed = result.structured_content
        step = _runpod_step(failed)  # what the CLI's answer has: the trace was empty here
        assert step["outcome"] == "error" and step["error_class"] == "ConfigError"
        assert step["detail"] == "the job was not queued on endpoint abc123"
        assert failed["error"]["type"] == "ConfigError"
        assert "rejected the API key in $RUNPOD_API_KEY (runner.runpod.api_key_env)" in failed["error"]["message"]
        assert "runpod" in result.content[0].text.split("\ntrace: ", 1)[-1]
        # the job's result, collected later, reads the same
        later = await client.call_tool("job_result", {"job_id": failed["job_id"]})
        assert _runpod_step(later.structured_content)["detail"] == step["detail"]
    assert KEY not in json.dumps(failed) and KEY not in result.content[0].text


async def test_over_mcp_an_unreachable_endpoint_says_where_and_carries_the_runpod_step(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mcp_helpers import write_config

    from mcp_server.server import build_server

    with RefusedPort() as refused:
        # in process, to keep the retries short; the HTTP is real
        monkeypatch.setattr("swarm.executors.make_executor",
                            lambda config, runtime: RunPodExecutor(f"{refused.url}/v2", "abc123", KEY, max_retries=1))
        async with Client(build_server(str(write_config(tmp_path, wait_budget_s=30)))) as client:
            result = await client.call_tool("delegate", {"task": "Say hi."})
    assert result.is_error
    failed = result.structured_content
    assert _runpod_step(failed)["detail"] == "the job was not queued on endpoint abc123"
    assert f"could not connect to 127.0.0.1:{refused.port} (connection refused" in failed["error"]["message"]
