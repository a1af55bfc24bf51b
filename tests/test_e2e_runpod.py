"""End to end through RunPod's path: an MCP client over stdio -> `swarm-mcp` with the RunPod
runner -> the local endpoint -> two real runpod worker processes running `handler.py` ->
dispatcher -> graph -> back. The `local` model is a loopback fake OpenAI server; the image
action runs the real u2netp weights."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import shipped_config
import yaml
from fake_openai import Behaviour, FakeOpenAI
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from providers.image import pull as weights_pull
from swarm.endpoint.server import EndpointServer
from swarm.endpoint.state import Settings

ROOT = Path(__file__).resolve().parents[1]
MODELS = Path(tempfile.gettempdir()) / "swarm-test-models"
PHOTO = (ROOT / "tests" / "fixtures" / "grace_hopper_256.jpg").read_bytes()


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, fake_llm: FakeOpenAI) -> Iterator[dict[str, Any]]:
    assert weights_pull.pull(["u2netp"], MODELS)["ok"]
    home = tmp_path_factory.mktemp("runpod-e2e")
    config_path = shipped_config.write(home, shipped_config.with_local_model_at(fake_llm.url))
    shutil.copytree(ROOT / "docs", home / "docs", dirs_exist_ok=True)
    shared = {
        "SWARM_CONFIG": str(config_path),
        "SWARM_HOME": str(home),  # one artifact store for workers and MCP server alike
        "SWARM_MODELS_DIR": str(MODELS),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    settings = Settings(endpoint_id="ep-e2e", take_hold_s=2, stop_hold_s=2)
    server = EndpointServer(settings, workers=2, log_dir=home / "logs", worker_env_extra=shared)
    with server:
        yield {"server": server, "env": shared, "home": home}


def mcp_params(stack: dict[str, Any], **env_extra: str) -> StdioServerParameters:
    server: EndpointServer = stack["server"]
    env = {
        **os.environ,
        **stack["env"],
        "RUNPOD_API_BASE": server.api_base,
        "RUNPOD_ENDPOINT_ID": server.settings.endpoint_id,
        "RUNPOD_API_KEY": server.settings.api_key,
        **env_extra,
    }
    return StdioServerParameters(command=str(Path(sys.executable).parent / "swarm-mcp"), args=[], env=env, cwd=str(ROOT))


async def test_delegate_and_an_image_action_run_on_runpod_workers(stack: dict[str, Any], fake_llm: FakeOpenAI) -> None:
    fake_llm.script("smollm2-135m-instruct", Behaviour.answer("answered by a RunPod worker"))
    async with Client(mcp_params(stack)) as client:
        result = await client.call_tool("delegate", {"task": "Say hello.", "kind": "critical"})
        assert not result.is_error, result.content[0].text
        data = result.structured_content
        assert data["text"] == "answered by a RunPod worker"
        kinds = [(s["step"], s["model"] or s["provider"], s["outcome"]) for s in data["trace"]]
        assert ("draft", "local", "ok") in kinds
        assert any(s["step"] == "runpod" for s in data["trace"]), kinds  # it really went through the endpoint

        image = await client.call_tool("remove_background", {"image": base64.b64encode(PHOTO).decode()})
        assert not image.is_error, image.content[0].text
        out = image.structured_content
        stored = Path(stack["home"]) / "artifacts" / out["key"]
        assert stored.is_file() and stored.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_an_mcp_job_on_runpod_shows_the_workers_progress(stack: dict[str, Any], fake_llm: FakeOpenAI) -> None:
    """The MCP server follows a RunPod job itself (it survives a restart); what the worker reports
    with ``progress_update`` reaches the client as progress, as it does through ``swarm delegate``."""
    # the draft lasts 5 s: on a loaded machine a 2 s draft could pass between two status polls (seen once in CI)
    fake_llm.script("smollm2-135m-instruct", Behaviour.answer("slow answer", delay_s=5.0))
    messages: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    async with Client(mcp_params(stack)) as client:
        result = await client.call_tool("delegate", {"task": "Say hello slowly.", "kind": "critical"},
                                        progress_callback=on_progress)
    assert not result.is_error, result.content[0].text
    assert any("drafting with local" in m for m in messages), messages  # the worker's own words


async def test_twenty_concurrent_jobs_complete_across_two_workers(stack: dict[str, Any], fake_llm: FakeOpenAI) -> None:
    from swarm.executors.runpod import RunPodExecutor

    fake_llm.script("smollm2-135m-instruct", Behaviour.answer("ok", delay_s=0.2))
    server: EndpointServer = stack["server"]
    runner = RunPodExecutor(server.api_base, server.settings.endpoint_id, server.settings.api_key, poll_interval_s=0.2, timeout_s=180)
    jobs = [{"project": "swarm", "action": "delegate", "input": {"task": f"job {i}", "kind": "critical"}} for i in range(20)]
    results = await asyncio.gather(*(runner.run(job) for job in jobs))
    failed = [r["error"] for r in results if r["status"] != "COMPLETED"]
    assert not failed, failed
    details = [s["detail"] for r in results for s in r["trace"] if s["step"] == "runpod"]
    workers = {d.rsplit(" on ", 1)[-1] for d in details if " on " in d}
    assert len(details) == 20 and len(workers) == 2, details  # both workers took jobs


async def test_handler_error_is_a_clear_tool_error_without_traceback(stack: dict[str, Any]) -> None:
    async with Client(mcp_params(stack)) as client:
        # refused by the worker's dispatcher (the door refuses a text too long or an unknown kind
        # itself, before a job)
        result = await client.call_tool("upscale_image", {"image": "not*base64"})
    assert result.is_error
    text = result.content[0].text
    assert "InputError: image: " in text and "base64" in text and "Traceback" not in text


async def test_an_mcp_job_on_runpod_polled_while_it_runs_shows_the_steps_its_worker_finished(
        stack: dict[str, Any], fake_llm: FakeOpenAI) -> None:
    """A reviewed delegation on the endpoint whose draft is done while its review has not answered:
    ``job_result`` answers IN_PROGRESS with the draft in ``trace``, as a local job's handle does
    (the worker sends the steps it has finished with its progress; RunPod's status carried words only)."""
    fake_llm.script("smollm2-135m-instruct", Behaviour.answer("the draft"), Behaviour.hang(600))  # the review hangs
    config = yaml.safe_load(Path(stack["env"]["SWARM_CONFIG"]).read_text(encoding="utf-8"))
    config["runner"]["wait_budget_s"] = 1  # the MCP server's own: delegate answers with a handle at once
    short_wait = Path(stack["home"]) / "config-mcp-short-wait.yaml"
    short_wait.write_text(yaml.safe_dump(config), encoding="utf-8")
    async with Client(mcp_params(stack, SWARM_CONFIG=str(short_wait))) as client:
        started = await client.call_tool("delegate", {"task": "Draft a greeting, then review it.", "kind": "bulk_content"})
        assert not started.is_error, started.content[0].text
        polled = started.structured_content
        job_id = polled["job_id"]
        try:
            for _ in range(150):  # each poll waits up to 2 s: minutes on a loaded machine, no timing asserted
                # the review's first progress can reach the client before the update that carries the
                # finished draft (the worker publishes a step when LangGraph hands it over): poll on
                reviewing = (polled.get("progress") or {}).get("stage") == "review"
                if polled["status"] != "IN_PROGRESS" or (reviewing and any(s["step"] == "draft" for s in polled["trace"])):
                    break
                polled = (await client.call_tool("job_result", {"job_id": job_id, "wait_s": 2})).structured_content
        finally:
            await client.call_tool("job_cancel", {"job_id": job_id})  # the review would hang for 10 minutes
            fake_llm.script("smollm2-135m-instruct", Behaviour.answer("ok"))
    assert polled["status"] == "IN_PROGRESS" and polled["progress"]["stage"] == "review", polled  # reviewing now
    steps = [(s["step"], s["model"] or s["provider"], s["outcome"]) for s in polled["trace"]]
    assert ("draft", "local", "ok") in steps, steps  # the draft its worker finished, with provider and model
    assert all(s["step"] != "runpod" for s in polled["trace"])  # the runpod step comes with the result
