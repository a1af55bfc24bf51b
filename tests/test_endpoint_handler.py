"""The project's own ``handler.py`` as a real runpod worker behind the local endpoint.

``python handler.py`` runs unmodified with the ``RUNPOD_WEBHOOK_*`` environment; its config
points the ``local`` model at a loopback fake OpenAI server, so a delegation job makes real
HTTP calls through litellm without a model.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fake_openai import FakeOpenAI

from swarm.endpoint.server import EndpointServer
from swarm.endpoint.state import Settings
from swarm.executors.runpod import RunPodExecutor

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeOpenAI) -> Iterator[EndpointServer]:
    home = tmp_path_factory.mktemp("handler-home")
    config = yaml.safe_load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    local = config["models"]["local"]
    local["api_base"] = f"{fake_llm.url}/v1"
    local.pop("local_server", None)
    config["worker"]["warm"] = ["llm"]  # the image models' background warm-up is tests/test_handler_warm.py's
    config_path = home / "config.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    if (ROOT / "docs").is_dir():
        shutil.copytree(ROOT / "docs", home / "docs", dirs_exist_ok=True)
    env = {
        "SWARM_CONFIG": str(config_path),
        "SWARM_HOME": str(home),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "RUNPOD_LOG_LEVEL": "INFO",
    }
    server = EndpointServer(Settings(endpoint_id="ep-handler", take_hold_s=2, stop_hold_s=2), workers=1, log_dir=home / "logs", worker_env_extra=env)
    with server:
        yield server


def _runner(server: EndpointServer) -> RunPodExecutor:
    return RunPodExecutor(server.api_base, server.settings.endpoint_id, server.settings.api_key, poll_interval_s=0.2, timeout_s=120)


async def test_unknown_action_comes_back_as_a_clear_failed_envelope(endpoint: EndpointServer) -> None:
    envelope = await _runner(endpoint).run({"project": "swarm", "action": "nope", "input": {}})
    assert envelope["status"] == "FAILED"
    assert envelope["error"]["type"] == "InputError"
    assert "unknown action 'nope'" in envelope["error"]["message"] and "delegate" in envelope["error"]["message"]
    assert envelope["project"] == "swarm" and envelope["job_id"].endswith("-u1")
    assert "Traceback" not in str(envelope)


async def test_malformed_job_is_refused_by_the_handler(endpoint: EndpointServer) -> None:
    envelope = await _runner(endpoint).run({"action": "delegate", "input": "not an object"})
    assert envelope["status"] == "FAILED"
    assert envelope["error"]["type"] == "InputError"
    assert "project" in envelope["error"]["message"]


async def test_delegation_runs_through_the_worker(endpoint: EndpointServer, fake_llm: FakeOpenAI) -> None:
    updates: list[Any] = []

    async def progress(stage: str, message: str, fraction: float | None = None) -> None:
        updates.append(stage)

    job = {"project": "swarm", "action": "delegate", "input": {"task": "Say hello.", "kind": "critical"}}
    envelope = await _runner(endpoint).run(job, progress)
    assert envelope["status"] == "COMPLETED", envelope["error"]
    assert envelope["output"]["text"].startswith("ok from")
    assert any(step.get("provider") == "local" and step.get("outcome") == "ok" for step in envelope["trace"])
    assert envelope["trace"][-1]["provider"] == "runpod"
    assert fake_llm.requests, "the worker never called the model server"
