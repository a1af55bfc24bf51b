"""What a model reads of a tool's answer is the result in words, not the structured result's JSON
again: the answer (or the image's key), who made it, the steps that ran, the totals and the ids a
next call needs. ``job_result`` answers with the tool's own text: a failed job as the tool's own
error (``isError``), a running job as the tool's handle. The structured content is unchanged."""

from __future__ import annotations

import base64
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import ImageContent, ResourceLink, TextContent
from mcp_helpers import SlowLLM, collect, use_fake_llm, write_config

from mcp_server.server import build_server

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(tempfile.gettempdir()) / "swarm-test-models"
VERDICT = {"approved": True, "score": 8, "issues": [], "suggestion": ""}


def _not_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


def _writer(messages: Any, config: Any) -> Any:
    return VERDICT if config.step == "review" else "Rivers run to the sea.\nThe sea does not fill."


async def test_a_delegated_answer_reads_as_the_answer_then_its_trace_and_ids(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The text was the JSON of the result: the answer one escaped string among 50 lines of trace."""
    from providers.testing import FunctionLLM

    use_fake_llm(monkeypatch, FunctionLLM(_writer, model="writer"))
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=30)))) as client:
        tool = await client.call_tool("delegate", {"task": "two lines on rivers"})
        collected = await client.call_tool("job_result", {"job_id": tool.structured_content["job_id"]})

    done = tool.structured_content
    assert not tool.is_error and done["status"] == "COMPLETED" and done["text"].startswith("Rivers run")
    [block] = tool.content
    assert isinstance(block, TextContent) and _not_json(block.text)
    text = block.text
    assert text.startswith("Rivers run to the sea.\nThe sea does not fill.\n"), text
    assert "written by writer; review: approved, score 8" in text
    assert "trace: " in text and "draft llm writer ok" in text and "review llm writer ok" in text
    assert f"{done['totals']['input_tokens']} in / {done['totals']['output_tokens']} out tokens" in text
    assert f"job_id: {done['job_id']}" in text and f"thread_id: {done['thread_id']}" in text
    # job_result: the same words, the whole envelope as structured content
    assert not collected.is_error and [b.text for b in collected.content] == [text]  # type: ignore[union-attr]
    assert collected.structured_content["output"]["text"] == done["text"]


async def test_a_running_job_reads_as_what_to_call_next(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    gate = asyncio.Event()
    use_fake_llm(monkeypatch, SlowLLM(gate=gate))
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=0.05)))) as client:
        tool = await client.call_tool("delegate", {"task": "hello"})
        polled = await client.call_tool("job_result", {"job_id": tool.structured_content["job_id"], "wait_s": 0})
        gate.set()
        await collect(client, tool.structured_content["job_id"], deadline_s=30)

    job_id = tool.structured_content["job_id"]
    assert tool.structured_content["status"] == "IN_PROGRESS"
    for result in (tool, polled):
        text = result.content[0].text  # type: ignore[union-attr]
        assert _not_json(text) and not result.is_error
        assert f'job_result(job_id="{job_id}"' in text and text.rstrip().endswith(f"job_id: {job_id}"), text


def _all_down(messages: Any, config: Any) -> Any:
    from core.errors import AllProvidersFailed
    from providers.base import TraceStep

    raise AllProvidersFailed("llm", [TraceStep(step=config.step, provider="litellm", model="deepseek-v3.1-q8",
                                               outcome="error", error_class="ProviderUnavailable", latency_ms=50.0)])


async def test_job_result_of_a_failed_job_answers_as_the_tools_own_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """job_result answered a FAILED job ``isError: false`` with its JSON: a client polling it read
    success where the tool itself had answered an error."""
    from providers.testing import FunctionLLM

    use_fake_llm(monkeypatch, FunctionLLM(_all_down))
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=30)))) as client:
        tool = await client.call_tool("delegate", {"task": "hello"})
        job_id = tool.structured_content["job_id"]
        collected = await client.call_tool("job_result", {"job_id": job_id, "wait_s": 0})

    assert tool.is_error and collected.is_error
    text = collected.content[0].text  # type: ignore[union-attr]
    assert text == tool.content[0].text  # type: ignore[union-attr]
    assert text.startswith("AllProvidersFailed: ") and "deepseek-v3.1-q8 error ProviderUnavailable 50.0 ms" in text
    assert collected.structured_content["status"] == "FAILED" and collected.structured_content["job_id"] == job_id


async def test_an_image_result_reads_as_what_was_made_and_its_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first block was the result's JSON (50 lines of trace fields) before the picture."""
    from providers.image import pull as weights_pull

    assert weights_pull.pull(["u2netp"], SHARED)["ok"]
    monkeypatch.setenv("SWARM_MODELS_DIR", str(SHARED))
    photo = base64.b64encode((FIXTURES / "grace_hopper_256.jpg").read_bytes()).decode()
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=600)))) as client:
        tool = await client.call_tool("remove_background", {"image": photo, "model": "u2netp"})

    done = tool.structured_content
    assert not tool.is_error and done["status"] == "COMPLETED", tool.content
    first, *blocks = tool.content
    assert isinstance(first, TextContent) and _not_json(first.text)
    width, height = done["details"]["width"], done["details"]["height"]
    assert first.text.startswith(f"Done by u2netp: {width}x{height} image stored as key {done['key']}\n"), first.text
    assert "trace: remove_background image u2netp ok" in first.text and f"job_id: {done['job_id']}" in first.text
    assert [type(b) for b in blocks] == [TextContent, ImageContent, ResourceLink]
