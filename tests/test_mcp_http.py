"""Streamable HTTP on a loopback port: health, bearer tokens (401), Host (421) and Origin (403)
checks even for an app built for 0.0.0.0, the body cap (413), and per-client job isolation."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import uvicorn
import yaml
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_helpers import SlowLLM, collect, use_fake_llm, write_config

from core.errors import ConfigError
from mcp_server.http import parse_tokens
from mcp_server.server import build_http_app

ALICE = "alice-token-0123456789abcdef"
BOB = "bob-token-0123456789abcdef"
INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
MCP_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` on a loopback port in this event loop (so monkeypatched fakes apply)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
        if task.done():
            task.result()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def client_for(base: str, token: str | None) -> Client:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=60))
    return Client(streamable_http_client(f"{base}/mcp", http_client=http))


def _app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, upscale_precision: str | None = None) -> Any:
    use_fake_llm(monkeypatch, SlowLLM(delay_s=2.0, text="for alice"))
    config = write_config(tmp_path, wait_budget_s=0.5)
    if upscale_precision is not None:
        data = yaml.safe_load(config.read_text())
        data["providers"]["image"]["upscale"]["precision"] = upscale_precision
        config.write_text(yaml.safe_dump(data, sort_keys=False))
    env = {"SWARM_MCP_TOKENS": f"alice={ALICE},bob={BOB}"}
    # built for 0.0.0.0: the SDK alone would leave Host/Origin unchecked there
    return build_http_app(str(config), host="0.0.0.0", port=8808, env=env)


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    return _app(tmp_path, monkeypatch)


@pytest.fixture
def image_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``app`` with the upscaler's precision pinned: on a fresh SWARM_HOME the first image job
    measures ``precision: auto`` first (about 50 s on an idle 2-core machine, longer beside other
    load), which this test of who may read an image does not need; it ran past one 50 s wait."""
    return _app(tmp_path, monkeypatch, upscale_precision="fp32")


async def test_guards_answer_401_421_403_413_and_health_is_open(app: Any) -> None:
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as http:
        health = await http.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "ok" and health.json()["auth"] is True

        body = json.dumps(INIT)
        assert (await http.post("/mcp", content=body, headers=MCP_HEADERS)).status_code == 401
        wrong = {**MCP_HEADERS, "authorization": "Bearer not-a-valid-token-at-all"}
        assert (await http.post("/mcp", content=body, headers=wrong)).status_code == 401

        ok = {**MCP_HEADERS, "authorization": f"Bearer {ALICE}"}
        bad_host = await http.post("/mcp", content=body, headers={**ok, "host": "evil.example.com"})
        assert bad_host.status_code == 421
        bad_origin = await http.post("/mcp", content=body, headers={**ok, "origin": "https://evil.example.com"})
        assert bad_origin.status_code == 403
        huge = json.dumps({**INIT, "pad": "x" * (4 * 1024 * 1024 + 10)})
        assert (await http.post("/mcp", content=huge, headers=ok)).status_code == 413

        accepted = await http.post("/mcp", content=body, headers=ok)
        assert accepted.status_code == 200, accepted.text


async def test_a_client_cannot_see_another_clients_job(app: Any) -> None:
    async with serving(app) as base:
        async with client_for(base, ALICE) as alice:
            handle = (await alice.call_tool("delegate", {"task": "mine", "kind": "critical"})).structured_content
            assert handle["status"] == "IN_PROGRESS"
            job_id = handle["job_id"]
            async with client_for(base, BOB) as bob:
                peek = await bob.call_tool("job_result", {"job_id": job_id, "wait_s": 0})
                assert peek.is_error and "job_id: " in peek.content[0].text and "is not a job of yours" in peek.content[0].text
                assert (await bob.call_tool("job_cancel", {"job_id": job_id})).is_error
                assert (await bob.call_tool("list_jobs", {})).structured_content["jobs"] == []
                with pytest.raises(Exception, match="job_id: .* is not a job of yours"):
                    await bob.read_resource(f"swarm://jobs/{job_id}")
                # threads are owned the same way: bob can neither list, read nor continue alice's
                thread_id = handle["thread_id"]
                assert (await bob.call_tool("list_threads", {})).structured_content["threads"] == []
                stolen = await bob.call_tool("delegate", {"task": "yours?", "kind": "critical", "thread_id": thread_id})
                assert stolen.is_error and "thread_id: " in stolen.content[0].text and "is not a thread of yours" in stolen.content[0].text
                with pytest.raises(Exception, match="thread_id: .* is not a thread of yours"):
                    await bob.read_resource(f"swarm://threads/{thread_id}")
            done = await alice.call_tool("job_result", {"job_id": job_id, "wait_s": 20})
            assert done.structured_content["status"] == "COMPLETED"
            assert done.structured_content["output"]["text"] == "for alice"
            mine = (await alice.call_tool("list_threads", {})).structured_content["threads"]
            assert [(t["thread_id"], t["turns"]) for t in mine] == [(thread_id, 2)]


async def test_a_client_cannot_read_or_reuse_another_clients_image(image_app: Any, swarm_home: Path) -> None:
    """A reviewer, as bob, read alice's upscaled image by its key, upscaled it again through
    ``key``, and told her job's id from an unknown one by the error's "(it is a folder)"; and
    alice's result named the file on the server's disk (``file:///...``)."""
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
    async with serving(image_app) as base, client_for(base, ALICE) as alice, client_for(base, BOB) as bob:
        started = (await alice.call_tool("upscale_image", {"image": png})).structured_content
        done = (await collect(alice, started["job_id"])).structured_content  # asked again while IN_PROGRESS
        assert done["status"] == "COMPLETED", done
        assert "file:" not in json.dumps(done)  # a file on the server's disk: no use to a client over HTTP
        key = done["output"]["key"]
        folder = key.rsplit("/", 1)[0]
        assert (await alice.read_resource(f"swarm://artifacts/{key}")).contents[0].blob
        unknown = "image_tools/00000000-0000-0000-0000-000000000000"
        for peek in (key, folder, f"{unknown}/upscale.png"):
            with pytest.raises(Exception) as refused:
                await bob.read_resource(f"swarm://artifacts/{peek}")
            said = refused.value.error.message  # type: ignore[attr-defined]
            assert said == f"key: no object {peek!r} in storage: use the key an image tool returned", said
        for args, field in (({"key": key}, "key"), ({"images": [{"key": key}]}, "images[0].key")):
            tool = "upscale_image" if "key" in args else "remove_background"
            reused = await bob.call_tool(tool, args)
            assert reused.is_error and reused.structured_content["error"]["field"] == field, reused.content[0].text
            assert (await bob.call_tool("list_jobs", {})).structured_content["jobs"] == []
        # once alice's job row is pruned (retention_days) her image still is hers: nobody with a
        # token reads a key under a job the store does not know (bob read it once the row was gone)
        with contextlib.closing(sqlite3.connect(swarm_home / "jobs.sqlite")) as db, db:
            db.execute("DELETE FROM jobs WHERE job_id = ?", (started["job_id"],))
        for client in (bob, alice):
            with pytest.raises(Exception) as refused:
                await client.read_resource(f"swarm://artifacts/{key}")
            assert refused.value.error.message.startswith("key: no object")  # type: ignore[attr-defined]


def test_tokens_parse_named_or_bare_and_short_ones_are_refused() -> None:
    assert parse_tokens(f"alice={ALICE}, bob={BOB}", "T") == {"alice": ALICE, "bob": BOB}
    (name,) = parse_tokens(ALICE, "T")
    assert name.startswith("client-") and ALICE not in name
    with pytest.raises(ConfigError, match="shorter than 16 characters"):
        parse_tokens("alice=short", "T")


async def test_without_tokens_http_serves_everyone_as_the_local_owner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_fake_llm(monkeypatch, SlowLLM(text="open"))
    app = build_http_app(str(write_config(tmp_path, wait_budget_s=10)), env={})
    async with serving(app) as base, client_for(base, None) as client:
        done = (await client.call_tool("delegate", {"task": "hi", "kind": "critical"})).structured_content
        assert done["status"] == "COMPLETED" and done["text"] == "open"
        jobs = (await client.call_tool("list_jobs", {})).structured_content["jobs"]
        assert [j["job_id"] for j in jobs] == [done["job_id"]]
