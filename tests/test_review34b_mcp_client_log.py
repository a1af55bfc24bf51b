"""MCP logging and completion as the spec has them, over real stdio with the SDK's client. Each
test failed before its fix:

- ``logging/setLevel`` recorded the client's level, but the server never sent a
  ``notifications/message``: a client asking for the server's log got nothing, a job's failure
  included. Now its work's records at or above its level reach it (RFC 5424 level, logger, data),
  redacted, rate-limited, and nothing else's; a client that set no level still gets nothing;
- ``completion/complete`` suggested values by argument name whatever the ref: ``depth`` for
  ``delegate_and_review`` (which has no depth), the graph names for ``swarm://jobs/{job_id}``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml
from fake_openai import Behaviour, FakeOpenAI
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.types import PromptReference, ResourceTemplateReference
from mcp_helpers import write_config

ROOT = Path(__file__).resolve().parents[1]
LOCAL_MODEL = "smollm2-135m-instruct"  # the local model's name on the wire: the fake server answers it
#: the name the primary deepseek model goes by on the wire (``deepseek/<name>`` in config.yaml)
DEEPSEEK_MODEL = yaml.safe_load((ROOT / "config.yaml").read_text())["models"]["deepseek-v3.1-q8"][
    "litellm_model"].split("/", 1)[1]
PLANTED_KEY = "sk-planted34bKEYvalue0123456789abcdef"
#: a generous bound on anything the server is waited for (a loaded 2-core machine)
WAIT_S = 120.0

#: setLevel is deprecated at 2026-07-28 (SEP-2577): a handshake-era client (2025-11-25) still has it
pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")


def server_params(config: Path, tmp_path: Path, models: FakeOpenAI | None = None) -> StdioServerParameters:
    env = {**os.environ, "SWARM_HOME": str(tmp_path / "home"), "SWARM_LOG_LEVEL": "INFO"}
    if models is not None:  # deepseek (its key refused, echoed back by the upstream) then the local model
        env.update(SWARM_LOCAL_LLM_PORT=str(models.port), DEEPSEEK_API_KEY=PLANTED_KEY,
                   DEEPSEEK_API_BASE=models.url + "/v1")
    return StdioServerParameters(command=sys.executable, args=["-m", "mcp_server.server", "--config", str(config)],
                                 env=env, cwd=str(ROOT))


class Heard:
    """The ``notifications/message`` params a client received, as dicts."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []

    async def __call__(self, params: Any) -> None:
        self.entries.append(params.model_dump(mode="json"))

    def saying(self, text: str) -> list[dict[str, Any]]:
        return [e for e in self.entries if text in str(e["data"].get("message", ""))]

    async def wait_for(self, text: str) -> list[dict[str, Any]]:
        with anyio.fail_after(WAIT_S):
            while not self.saying(text):
                await anyio.sleep(0.05)
        return self.saying(text)


async def failed_delegate(client: Client) -> dict[str, Any]:
    result = await client.call_tool("delegate", {"task": "say hi", "kind": "critical"})
    assert result.structured_content is not None and result.structured_content["status"] == "FAILED", result
    return result.structured_content


async def test_a_failed_job_is_told_at_the_clients_level_redacted_and_no_one_else_hears(tmp_path: Path) -> None:
    config = write_config(tmp_path, wait_budget_s=60)
    heard, deaf = Heard(), Heard()
    with FakeOpenAI() as models:
        models.script(DEEPSEEK_MODEL, Behaviour.fail(401))  # "Incorrect API key provided: <the key>"
        models.script(LOCAL_MODEL, Behaviour.fail(500))
        async with Client(server_params(config, tmp_path, models), mode="legacy", logging_callback=heard) as client:
            await client.set_logging_level("warning")
            failed = await failed_delegate(client)
            warned = await heard.wait_for(f"job {failed['job_id']} failed")
        # a client that set no level: as before, nothing
        async with Client(server_params(config, tmp_path, models), mode="legacy", logging_callback=deaf) as quiet:
            await failed_delegate(quiet)
            await client_settles()
    assert warned[0]["level"] == "warning" and warned[0]["logger"] == "swarm.dispatcher", warned
    assert warned[0]["data"]["job_id"] == failed["job_id"]
    assert "deepseek" in warned[0]["data"]["message"] and "local" in warned[0]["data"]["message"]
    # at "warning": the INFO lines of the same job (the local model adopted, its retry) are not sent
    assert {e["level"] for e in heard.entries} <= {"warning", "error", "critical"}, heard.entries
    assert PLANTED_KEY not in str(heard.entries) and "planted34b" not in str(heard.entries)
    assert deaf.entries == []


async def client_settles() -> None:
    await anyio.sleep(1.0)  # what the server would send has long reached the pipe (no timing assert)


async def test_records_of_other_work_are_not_the_clients_and_alert_hears_no_warning(tmp_path: Path) -> None:
    """The config watcher's reload (no request's work) is not sent to a client at debug; the refusal
    of its own call is. A client at ``alert`` is sent no warning (RFC 5424: alert is more severe)."""
    config = write_config(tmp_path)
    heard, alert = Heard(), Heard()
    changed = anyio.Event()

    async def on_message(message: Any) -> None:
        if getattr(getattr(message, "root", message), "method", "") == "notifications/tools/list_changed":
            changed.set()

    params = server_params(config, tmp_path)
    async with Client(params, mode="legacy", logging_callback=heard, message_handler=on_message) as client:
        await client.set_logging_level("debug")
        refused = await client.call_tool("list_jobs", {"limit": 0})
        assert refused.is_error
        said = await heard.wait_for("tool list_jobs refused")
        assert said[0]["level"] == "info" and said[0]["logger"] == "swarm.mcp"
        data = yaml.safe_load(config.read_text())
        data["mcp"]["enabled_tools"] = ["delegate"]
        config.write_text(yaml.safe_dump(data, sort_keys=False))
        with anyio.fail_after(WAIT_S):  # the watcher (every 5 s) reloads it: its own work, not this client's
            await changed.wait()
        await client_settles()
    assert heard.saying("config reloaded") == [], heard.entries

    (tmp_path / "alert").mkdir()
    config = write_config(tmp_path / "alert", wait_budget_s=60)
    with FakeOpenAI() as models:
        models.script(LOCAL_MODEL, Behaviour.fail(500))
        models.script(DEEPSEEK_MODEL, Behaviour.fail(500))
        async with Client(server_params(config, tmp_path, models), mode="legacy", logging_callback=alert) as client:
            await client.set_logging_level("alert")
            await failed_delegate(client)
            await client_settles()
    assert alert.entries == []


async def test_a_flood_of_records_is_rate_limited_and_the_dropped_ones_counted(tmp_path: Path) -> None:
    calls = 300  # six times what one client is sent at once (client_log.BURST)
    heard = Heard()
    async with Client(server_params(write_config(tmp_path), tmp_path), mode="legacy", logging_callback=heard) as client:
        await client.set_logging_level("info")
        async with anyio.create_task_group() as group:  # each refused call logs one INFO line
            for _ in range(calls):
                group.start_soon(client.call_tool, "list_jobs", {"limit": 0})
        await anyio.sleep(3.0)  # the rate's tokens come back
        await client.call_tool("list_jobs", {"limit": -1})  # its line says how many were left out
        told = await heard.wait_for("earlier log entries not sent: more than")
        await client_settles()
    refusals = heard.saying("tool list_jobs refused")
    assert len(refusals) < calls, len(refusals)  # not every one: a flood cannot swamp the pipe
    dropped = sum(e["data"].get("dropped", 0) for e in heard.entries)
    assert told[-1]["data"]["dropped"] > 0 and len(refusals) + dropped == calls + 1, (len(refusals), dropped)


async def test_completion_answers_per_ref(tmp_path: Path) -> None:
    async with Client(server_params(write_config(tmp_path), tmp_path)) as client:
        async def values(ref: Any, name: str, value: str = "") -> list[str]:
            return (await client.complete(ref, {"name": name, "value": value})).completion.values

        brief, review = PromptReference(name="research_brief"), PromptReference(name="delegate_and_review")
        jobs, graphs = ResourceTemplateReference(uri="swarm://jobs/{job_id}"), ResourceTemplateReference(
            uri="swarm://graphs/{name}")
        assert await values(brief, "depth", "s") == ["standard"]
        assert await values(brief, "audience", "a d") == ["a decision maker"]
        assert "critical" in await values(review, "kind")
        assert await values(graphs, "name", "re") == ["research"]
        # an argument its ref does not have: no suggestions (before: the values of any ref's namesake)
        assert await values(review, "depth") == []
        assert await values(review, "audience") == []
        assert await values(brief, "kind") == []
        assert await values(jobs, "name") == []
        assert await values(graphs, "depth") == []
