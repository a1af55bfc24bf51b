"""MCP logging for protocol 2026-07-28, over real stdio and streamable HTTP with the SDK's client.

2026-07-28 removed ``logging/setLevel``: a client asks per request, with
``io.modelcontextprotocol/logLevel`` in the request's ``_meta``, and the server MUST NOT send
``notifications/message`` for a request that did not ask; what it sends rides that request's own
response stream. Before, this server sent a 2026-07-28 client nothing whatever it asked (its
``logging/setLevel`` handler ignored that era and nothing read the ``_meta`` level). Now a request
that asks gets its own work's records at or above its level, on its stream, before its response
(the stream ends with it: an entry sent later is dropped), redacted and rate-limited as for a
handshake-era client; one that does not ask gets none.
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
from mcp_helpers import SlowLLM, use_fake_llm, write_config
from mcp_types import LOG_LEVEL_META_KEY
from test_mcp_http import serving
from test_review34b_mcp_client_log import (
    DEEPSEEK_MODEL,
    LOCAL_MODEL,
    PLANTED_KEY,
    WAIT_S,
    Heard,
    client_settles,
    server_params,
)

from mcp_server import client_log
from mcp_server.server import build_http_app

MODERN = "2026-07-28"


def asking(level: str) -> dict[str, Any]:
    return {LOG_LEVEL_META_KEY: level}


async def refused_list_jobs(client: Client, meta: dict[str, Any] | None = None) -> None:
    result = await client.call_tool("list_jobs", {"limit": 0}, meta=meta)
    assert result.is_error, result


async def test_a_request_that_asks_hears_its_work_at_its_level_and_one_that_does_not_hears_nothing(
        tmp_path: Path) -> None:
    config = write_config(tmp_path, wait_budget_s=60)
    heard, deaf = Heard(), Heard()
    with FakeOpenAI() as models:
        models.script(DEEPSEEK_MODEL, Behaviour.fail(401))  # "Incorrect API key provided: <the key>"
        models.script(LOCAL_MODEL, Behaviour.fail(500))
        async with Client(server_params(config, tmp_path, models), logging_callback=heard) as client:
            assert client.protocol_version == MODERN
            await refused_list_jobs(client)  # no logLevel in its _meta: nothing
            failed = await client.call_tool("delegate", {"task": "say hi", "kind": "critical"}, meta=asking("warning"))
            job_id = failed.structured_content["job_id"]
            warned = await heard.wait_for(f"job {job_id} failed")
            await refused_list_jobs(client, asking("info"))
            refused = await heard.wait_for("tool list_jobs refused")
            await refused_list_jobs(client, asking("alert"))  # alert is more severe than info: nothing
            await client_settles()
        # a client that never asks: nothing, whatever its work logs
        async with Client(server_params(config, tmp_path, models), logging_callback=deaf) as quiet:
            await quiet.call_tool("delegate", {"task": "say hi", "kind": "critical"})
            await refused_list_jobs(quiet)
            await client_settles()
    assert failed.structured_content["status"] == "FAILED", failed
    assert len(warned) == 1 and warned[0]["level"] == "warning" and warned[0]["logger"] == "swarm.dispatcher", warned
    assert warned[0]["data"]["job_id"] == job_id
    assert len(refused) == 1 and refused[0]["level"] == "info" and refused[0]["logger"] == "swarm.mcp", heard.entries
    assert len(heard.saying("tool list_jobs refused")) == 1, heard.entries  # not the first's, nor the alert one's
    # at "warning": the INFO lines of the same job (the local model adopted, its retry) are not sent
    job_entries = [e for e in heard.entries if e["data"].get("job_id") == job_id]
    assert {e["level"] for e in job_entries} <= {"warning", "error", "critical"}, job_entries
    assert PLANTED_KEY not in str(heard.entries) and "planted34b" not in str(heard.entries)
    assert deaf.entries == []


async def test_what_its_job_logs_after_the_response_is_not_sent(tmp_path: Path) -> None:
    """A call that hands back a job before the job ends: the job's records made while the call ran
    reach it; the job's failure, logged after the response, has no stream to ride and is not sent
    (to no other request either)."""
    config = write_config(tmp_path, wait_budget_s=8.0)
    heard = Heard()
    with FakeOpenAI() as models:
        models.script(DEEPSEEK_MODEL, Behaviour.fail(401))  # at once, while the call waits
        # well past the wait budget (its retry without streaming fails at once)
        models.script(LOCAL_MODEL, Behaviour("status", status=500, delay_s=12.0), Behaviour.fail(500))
        async with Client(server_params(config, tmp_path, models), logging_callback=heard) as client:
            handed = await client.call_tool("delegate", {"task": "say hi", "kind": "critical"}, meta=asking("warning"))
            job_id = handed.structured_content["job_id"]
            during = await heard.wait_for("deepseek-v3.1-q8 failed at draft")
            with anyio.fail_after(WAIT_S):
                while (await client.call_tool("job_status", {"job_id": job_id}, meta=asking("warning"))
                       ).structured_content["status"] != "FAILED":
                    await anyio.sleep(0.2)
            await client_settles()
    assert handed.structured_content["status"] != "FAILED", handed  # a handle: the job was still running
    assert len(during) == 1 and during[0]["level"] == "warning" and during[0]["data"]["job_id"] == job_id, heard.entries
    assert PLANTED_KEY not in str(heard.entries)
    assert heard.saying(f"job {job_id} failed") == [], heard.entries


async def test_a_flood_of_asking_requests_shares_the_clients_rate_and_the_dropped_are_counted(
        tmp_path: Path) -> None:
    calls = 300  # six times what one client is sent at once (client_log.BURST)
    heard = Heard()
    async with Client(server_params(write_config(tmp_path), tmp_path), logging_callback=heard) as client:
        assert client.protocol_version == MODERN
        async with anyio.create_task_group() as group:  # each refused call logs one INFO line
            for _ in range(calls):
                group.start_soon(refused_list_jobs, client, asking("info"))
        await anyio.sleep(3.0)  # the rate's tokens come back
        await refused_list_jobs(client, asking("info"))  # its line says how many were left out
        told = await heard.wait_for("earlier log entries not sent: more than")
        await client_settles()
    refusals = heard.saying("tool list_jobs refused")
    assert len(refusals) < calls, len(refusals)  # not every one: a flood cannot swamp the pipe
    dropped = sum(e["data"].get("dropped", 0) for e in heard.entries)
    assert told and told[-1]["data"]["dropped"] > 0, heard.entries[-3:]
    assert len(refusals) + dropped == calls + 1, (len(refusals), dropped)


async def test_over_http_the_entries_ride_the_requests_own_stream_and_only_its_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Over stateless HTTP each request is its own exchange (2026-07-28 has no other stream): a
    request that asks is answered on an SSE stream that carries its entries before its response;
    one that does not gets none."""
    caplog.set_level(logging.INFO, logger="swarm")  # the operator's level: what exists to be sent
    use_fake_llm(monkeypatch, SlowLLM(text="fine"))
    app = build_http_app(str(write_config(tmp_path)), host="127.0.0.1", port=8808, env={})
    heard = Heard()
    async with serving(app) as base:
        http = httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=60))
        async with Client(streamable_http_client(f"{base}/mcp", http_client=http), logging_callback=heard) as client:
            assert client.protocol_version == MODERN and client.server_capabilities.logging is not None
            await refused_list_jobs(client)
            assert heard.entries == []
            await refused_list_jobs(client, asking("debug"))
            refused = await heard.wait_for("tool list_jobs refused")
            await client.call_tool("list_jobs", {"limit": -1}, meta=asking("debug"))
            await client_settles()
    assert len(refused) == 1 and refused[0]["level"] == "info" and refused[0]["logger"] == "swarm.mcp", heard.entries
    assert len(heard.saying("tool list_jobs refused")) == 2, heard.entries
    assert heard.saying("config reloaded") == []


def test_a_request_asks_only_with_an_rfc_5424_level() -> None:
    class Ctx:
        def __init__(self, meta: Any) -> None:
            self.meta = meta

    assert client_log.asked_level(Ctx({LOG_LEVEL_META_KEY: "notice"})) == "notice"
    for meta in (None, {}, {LOG_LEVEL_META_KEY: "verbose"}, {LOG_LEVEL_META_KEY: 3}, ["debug"]):
        assert client_log.asked_level(Ctx(meta)) is None, meta
