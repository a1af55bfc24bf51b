"""The MCP door over real stdio: start-up stays light, bad input is a tool error, the server
keeps serving afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("litellm", "langgraph", "torch", "llama_cpp", "onnxruntime", "boto3", "rembg", "numpy", "PIL",
         "providers.search.index_store", "providers.web.documents", "httpx")


def server_params(config: Path | None = None, **env: str) -> StdioServerParameters:
    args = ["-m", "mcp_server.server"] + (["--config", str(config)] if config else [])
    return StdioServerParameters(command=sys.executable, args=args, env={**os.environ, **env}, cwd=str(ROOT))


@pytest.mark.parametrize("store", ["fresh", "with a job store"])
def test_tools_list_imports_no_heavy_module(store: str) -> None:
    """Nor the local index's modules (the research tool's description needs only the web backends),
    nor PyYAML's pure-Python parser (libyaml reads the config's secret names: ~30 ms less), nor
    httpx where a job store is there to resume from (~35 ms of every later start)."""
    if store != "fresh":
        from core.config import state_dir
        from mcp_server.jobstore import JobStore

        JobStore(state_dir() / "jobs.sqlite").close()
    probe = r"""
import anyio, json, sys, yaml
from mcp import Client
from mcp_server.server import build_server

pure = []
yaml.safe_load = lambda *a, **k: pure.append(1)

async def main():
    async with Client(build_server()) as client:
        tools = await client.list_tools()
    heavy = [m for m in HEAVY_NAMES if m in sys.modules]
    print(json.dumps({"tools": [t.name for t in tools.tools], "heavy": heavy, "pure_yaml": len(pure)}))

anyio.run(main)
""".replace("HEAVY_NAMES", repr(HEAVY))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert "delegate" in data["tools"] and "research" in data["tools"]
    assert data["heavy"] == []
    assert data["pure_yaml"] == 0


async def test_stdio_tools_have_schemas_and_bad_input_is_a_clear_tool_error() -> None:
    async with Client(server_params()) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        delegate = tools["delegate"]
        assert delegate.output_schema is not None
        assert set(delegate.output_schema["properties"]) >= {"text", "review", "trace"}
        assert "task" in delegate.input_schema["required"]

        empty = await client.call_tool("delegate", {"task": ""})
        assert empty.is_error and empty.content[0].text == "InputError: task: is empty; say it in plain words"

        unknown = await client.call_tool("delegate", {"task": "hi", "kind": "poetry"})
        assert unknown.is_error
        assert "unknown kind 'poetry'; valid: bulk_content, critical, research" in unknown.content[0].text

        too_long = await client.call_tool("delegate", {"task": "x" * 20_001})
        assert too_long.is_error and "the limit is 20,000 (limits.max_task_chars in config)" in too_long.content[0].text

        bad_tier = await client.call_tool("delegate", {"task": "hi", "tier": "ultra"})
        assert bad_tier.is_error and "tier" in bad_tier.content[0].text

        # still serving after all that
        assert "delegate" in {t.name for t in (await client.list_tools()).tools}


def test_broken_config_fails_fast_naming_the_key(tmp_path: Path) -> None:
    broken = tmp_path / "config.yaml"
    broken.write_text((ROOT / "config.yaml").read_text().replace("fallback_chain: [\"deepseek\"", "fallback_chain: [\"deepsek\""))
    out = subprocess.run([sys.executable, "-m", "mcp_server.server", "--config", str(broken)],
                         capture_output=True, text=True, cwd=ROOT, timeout=60, stdin=subprocess.DEVNULL)
    assert out.returncode != 0
    assert "providers.llm.fallback_chain[0]" in out.stderr and "deepsek" in out.stderr


@pytest.mark.parametrize("script", ["swarm-mcp", "swarm"])
def test_console_scripts_are_installed(script: str) -> None:
    assert (Path(sys.executable).parent / script).exists()


#: the client's read timeout: what a client such as Claude Desktop allows one call (~5 s there),
#: widened so that a loaded machine (a starved server process) still answers each call within it
CLIENT_TIMEOUT_S = 20
#: the job outlasts that timeout: a call that blocked until the job ended would time out
JOB_S = CLIENT_TIMEOUT_S + 1


async def test_stdio_job_past_the_client_timeout_finishes_through_job_result(tmp_path: Path) -> None:
    from fake_openai import Behaviour, FakeOpenAI
    from mcp_helpers import write_config

    config = write_config(tmp_path, wait_budget_s=1.0)
    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    with FakeOpenAI() as models:
        # the local model (the only one without a key) answers past the client's timeout
        models.script("smollm2-135m-instruct", Behaviour.answer("worth the wait", delay_s=JOB_S))
        params = server_params(config, SWARM_LOCAL_LLM_PORT=str(models.port), SWARM_HOME=str(tmp_path / "home"))
        async with Client(params, read_timeout_seconds=CLIENT_TIMEOUT_S) as client:
            first = await client.call_tool("delegate", {"task": "take your time", "kind": "critical"},
                                           progress_callback=on_progress)
            assert first.structured_content["status"] == "IN_PROGRESS"
            job_id = first.structured_content["job_id"]
            result: dict = {"status": "IN_PROGRESS"}
            for _ in range(4 * JOB_S):  # each call waits 2 s: far under the client's timeout, even when loaded
                result = (await client.call_tool("job_result", {"job_id": job_id, "wait_s": 2},
                                                 progress_callback=on_progress)).structured_content
                if result["status"] != "IN_PROGRESS":
                    break
            assert result["status"] == "COMPLETED"
            assert result["output"]["text"] == "worth the wait"
    assert any(m.startswith("route:") for m in progress)  # progress reaches whoever waits on the job


#: the issue's goal for tools/list: 3,500 tokens at 4 characters a token (it was ~31,000 characters)
TOOLS_LIST_MAX_CHARS = 3_500 * 4


async def test_tools_list_fits_its_budget_and_keeps_every_limit() -> None:
    """What every conversation pays in context: the tools/list result as the server sends it
    (compact JSON), all default tools included; the limits a model needs are still in the schemas."""
    from mcp_server.server import build_server

    async with Client(build_server()) as client:
        listed = await client.list_tools()
    sizes = {t.name: len(t.model_dump_json(by_alias=True, exclude_none=True)) for t in listed.tools}
    assert {"delegate", "research", "upscale_image", "remove_background", "process_image", "job_result"} <= set(sizes)
    assert sum(sizes.values()) <= TOOLS_LIST_MAX_CHARS, sizes
    tools = {t.name: t for t in listed.tools}
    assert tools["delegate"].input_schema["properties"]["task"]["maxLength"] == 20_000
    assert tools["remove_background"].input_schema["properties"]["images"]["maxItems"] == 16
    assert tools["job_result"].input_schema["properties"]["wait_s"]["maximum"] == 50
    assert tools["delegate"].input_schema["properties"]["tier"]["enum"] == ["fast", "balanced", "premium", None]
    assert "job_result" in tools["research"].description  # what to do with IN_PROGRESS
    assert "title" not in str(tools["delegate"].input_schema)
