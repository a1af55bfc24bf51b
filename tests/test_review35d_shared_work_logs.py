"""MCP logging of what serves every job, and the rate of an HTTP client, over real streamable HTTP
with the SDK's client (one server, in this process, on a loopback port). Each test failed before:

- the local model server is found (or started) by the first job that needs it and then serves every
  job; its records ("reusing the server already on port N", "starting local model ...") went to the
  MCP client of that first job, as if they were its job's. Now they are the server's own (the
  operator's log only); the first client hears its own job's records, a second client none of them,
  and records made after the shared start still go to the client whose job made them. A start that
  fails still fails the job that waited for it, with the same error;
- over HTTP a 2026-07-28 request is an exchange of its own, and each had a log rate of its own: a
  client sending 30 requests at once got 30 times the rate. Now a client's requests share one rate
  (the client its bearer token names), the dropped entries are counted and said once, and another
  client's rate is its own.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from fake_openai import Behaviour, FakeOpenAI
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_helpers import write_config
from mcp_types import LOG_LEVEL_META_KEY
from test_mcp_http import serving
from test_review34b_mcp_client_log import LOCAL_MODEL, Heard, client_settles

from mcp_server import client_log
from mcp_server.server import build_http_app

#: setLevel is deprecated at 2026-07-28 (SEP-2577): a handshake-era client still has it
pytestmark = pytest.mark.filterwarnings("ignore::mcp.shared.exceptions.MCPDeprecationWarning")

ALICE = "alice-token-35d-0123456789abcdef"
BOB = "bob-token-35d-0123456789abcdef"
KEYS = ("DEEPSEEK_API_KEY", "GEMINI_API_KEY", "ANTHROPIC_API_KEY", "TAVILY_API_KEY", "OPENAI_API_KEY")
#: what the local model manager logs when the first job finds the server on its port
ADOPTED = "reusing the server already on port"


def client_for(base: str, heard: Heard, token: str | None = None, mode: str = "legacy") -> Client:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=120))
    return Client(streamable_http_client(f"{base}/mcp", http_client=http), mode=mode,  # type: ignore[arg-type]
                  logging_callback=heard)


def local_model_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, models: FakeOpenAI) -> Any:
    """The MCP server over HTTP, every chain ending at the local model (no key set), whose server is
    ``models`` on its port: the first job to call it adopts it for every job."""
    for key in KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SWARM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SWARM_LOCAL_LLM_PORT", str(models.port))
    return build_http_app(str(write_config(tmp_path, wait_budget_s=90)), host="127.0.0.1", port=8808, env={})


async def delegated(client: Client) -> dict[str, Any]:
    result = await client.call_tool("delegate", {"task": "say hi", "kind": "critical"})
    assert result.structured_content is not None, result
    return result.structured_content


def job_ids(heard: Heard) -> set[str]:
    return {e["data"]["job_id"] for e in heard.entries if "job_id" in e["data"]}


async def test_the_shared_local_server_is_no_clients_and_each_client_hears_its_own_job(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="swarm")  # the operator's level: what exists to be sent
    first, second = Heard(), Heard()
    with FakeOpenAI() as models:
        models.script(LOCAL_MODEL, *[Behaviour.fail(500)] * 8)  # each job fails: its own records say so
        async with serving(local_model_app(tmp_path, monkeypatch, models)) as base:
            async with client_for(base, first) as one, client_for(base, second) as two:
                await one.set_logging_level("debug")
                await two.set_logging_level("debug")
                mine = await delegated(one)  # its first model call finds the local server
                await client_settles()
                heard_before = len(second.entries)
                theirs = await delegated(two)  # after the shared start: its records are its own
                await client_settles()
    assert mine["status"] == "FAILED" and theirs["status"] == "FAILED", (mine, theirs)
    assert any(ADOPTED in r.getMessage() for r in caplog.records), "the server was not adopted by this job"
    # the adoption is the server's own record: in the operator's log, sent to no client
    assert first.saying(ADOPTED) == [] and second.saying(ADOPTED) == [], (first.entries, second.entries)
    assert first.saying("local model") == [] and second.saying("local model") == []
    assert heard_before == 0, second.entries  # the second client heard nothing of the first's job
    assert job_ids(first) == {mine["job_id"]}, first.entries  # its own job's records, and only those
    assert job_ids(second) == {theirs["job_id"]}, second.entries
    assert first.saying(f"job {mine['job_id']} failed") and second.saying(f"job {theirs['job_id']} failed")


async def test_a_shared_start_that_fails_still_fails_the_job_that_waited_for_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="swarm")
    heard = Heard()
    with FakeOpenAI() as models:
        models.canary_ok = False  # the server on the port answers /models, not a completion
        async with serving(local_model_app(tmp_path, monkeypatch, models)) as base:
            async with client_for(base, heard) as client:
                await client.set_logging_level("warning")
                failed = await delegated(client)
                told = await heard.wait_for(f"job {failed['job_id']} failed")
    assert failed["status"] == "FAILED", failed
    assert "answers /models but not a completion" in str(failed["error"]), failed["error"]
    assert told[0]["data"]["job_id"] == failed["job_id"]  # the job's own failure still reaches its client


def asking(level: str) -> dict[str, Any]:
    return {LOG_LEVEL_META_KEY: level}


async def refused(client: Client) -> None:
    result = await client.call_tool("list_jobs", {"limit": 0}, meta=asking("info"))  # logs one INFO line
    assert result.is_error, result


async def test_over_http_a_clients_requests_share_one_rate_and_another_client_has_its_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="swarm")
    # a slow rate, so that a loaded machine cannot send the requests slower than it refills
    monkeypatch.setattr(client_log, "RATE_PER_S", 1.0)
    monkeypatch.setattr(client_log, "BURST", 5)
    calls = 30  # six times the burst, each request a rate of its own before
    alice, bob = Heard(), Heard()
    app = build_http_app(str(write_config(tmp_path)), host="127.0.0.1", port=8808,
                         env={"SWARM_MCP_TOKENS": f"alice={ALICE},bob={BOB}"})
    async with serving(app) as base:
        async with client_for(base, alice, ALICE, "auto") as one, client_for(base, bob, BOB, "auto") as two:
            async with anyio.create_task_group() as group:
                for _ in range(calls):
                    group.start_soon(refused, one)
            await refused(two)  # alice's rate is spent, bob's is his own
            await anyio.sleep(2.5)  # a token comes back
            await refused(one)  # its entry says how many were left out
            told = await alice.wait_for("earlier log entries not sent: more than")
    refusals = alice.saying("tool list_jobs refused")
    dropped = sum(e["data"].get("dropped", 0) for e in alice.entries)
    assert len(refusals) < calls, len(refusals)  # not one rate per request
    assert told and told[-1]["data"]["dropped"] > 0, alice.entries[-3:]
    assert len(refusals) + dropped == calls + 1, (len(refusals), dropped)  # each counted once
    assert len(bob.saying("tool list_jobs refused")) == 1, bob.entries
