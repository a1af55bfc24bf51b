"""Whose config decides a delegation's ``kind``: this machine's when jobs run here (refused before a
job exists), the RunPod worker's when they are sent there (it may route kinds this side lacks).

The forwarded path is real: the MCP server in this process with the RunPod runner, the local
endpoint, and one real runpod worker running ``handler.py`` with a config that has a route
(``poetry``) the MCP server's config lacks; its ``local`` model is a loopback fake OpenAI server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import shipped_config
import yaml
from fake_openai import Behaviour, FakeOpenAI
from mcp import Client
from mcp_helpers import write_config

from mcp_server.server import build_server
from swarm.endpoint.server import EndpointServer

ROOT = Path(__file__).resolve().parents[1]
WORKER_ONLY = "poetry"


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeOpenAI) -> Iterator[EndpointServer]:
    home = tmp_path_factory.mktemp("worker-home")
    config = shipped_config.with_local_model_at(fake_llm.url)
    config["routing"]["delegation"][WORKER_ONLY] = {"primary": "local", "reviewer": None}
    with shipped_config.worker_endpoint(home, shipped_config.write(home, config), "ep-kinds") as server:
        yield server


def _forwarding_config(tmp_path: Path, endpoint: EndpointServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """This side's config (no ``poetry`` route), its jobs sent to ``endpoint``."""
    path = write_config(tmp_path, wait_budget_s=60)
    config = yaml.safe_load(path.read_text())
    assert WORKER_ONLY not in config["routing"]["delegation"]
    config["runner"]["kind"] = "runpod"
    config["runner"]["runpod"].update(endpoint_id=endpoint.settings.endpoint_id, base_url=endpoint.api_base,
                                      api_key_env="SWARM_TEST_RUNPOD_KEY")
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv("SWARM_TEST_RUNPOD_KEY", endpoint.settings.api_key)
    monkeypatch.setenv("SWARM_HOME", str(tmp_path / "home"))
    return str(path)


def _steps(result: Any) -> list[str]:
    return [step["provider"] for step in result.structured_content["trace"]]


async def test_a_kind_only_the_workers_config_routes_runs_on_the_worker(
        tmp_path: Path, endpoint: EndpointServer, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_llm.script("smollm2-135m-instruct", Behaviour.answer("a verse from the worker"))
    async with Client(build_server(_forwarding_config(tmp_path, endpoint, monkeypatch))) as client:
        result = await client.call_tool("delegate", {"task": "Write a line.", "kind": WORKER_ONLY})
    assert not result.is_error, result.content[0].text
    assert result.structured_content["text"] == "a verse from the worker"
    assert "runpod" in _steps(result)


async def test_a_kind_the_worker_has_no_route_for_is_its_refusal_naming_the_field_and_its_kinds(
        tmp_path: Path, endpoint: EndpointServer, monkeypatch: pytest.MonkeyPatch) -> None:
    async with Client(build_server(_forwarding_config(tmp_path, endpoint, monkeypatch))) as client:
        result = await client.call_tool("delegate", {"task": "Write a line.", "kind": "banana"})
    assert result.is_error
    said = ("InputError: kind: unknown kind 'banana'; valid: bulk_content, critical, poetry, research"
            " (routing.delegation in config)")
    assert result.content[0].text.splitlines()[0] == said, result.content[0].text
    failed = result.structured_content
    assert failed["job_id"] and failed["error"]["type"] == "InputError"  # a job the worker refused
    assert _steps(result)[-2:] == ["dispatcher", "runpod"]  # the worker's own step came back
    assert "Traceback" not in result.content[0].text


async def test_with_the_local_runner_an_unknown_kind_is_refused_before_a_job(tmp_path: Path) -> None:
    async with Client(build_server(str(write_config(tmp_path)))) as client:
        result = await client.call_tool("delegate", {"task": "Write a line.", "kind": WORKER_ONLY})
        listed = await client.call_tool("list_jobs", {})
    assert result.is_error and result.structured_content["job_id"] is None
    assert result.content[0].text == ("InputError: kind: unknown kind 'poetry'; valid: bulk_content, critical,"
                                      " research (routing.delegation in config)")
    assert listed.structured_content["jobs"] == []
