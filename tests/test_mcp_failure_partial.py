"""A failed MCP tool call keeps what the job made: the error lists every attempt, the partial
draft and the trace's totals are in the error result, and it points at ``job_result``. A
consensus whose synthesizer failed says why (``synthesis_status``, ``synthesis_error``,
``warnings``) instead of an empty synthesis."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_helpers import use_fake_llm, write_config

from mcp_server.server import build_server

VERDICT = {"approved": False, "score": 3, "issues": ["too short"], "suggestion": "add a line"}


def _revision_down(messages: Any, config: Any) -> Any:
    """Drafts and reviews; every model of the revision's chain fails."""
    from core.errors import AllProvidersFailed
    from providers.base import TraceStep

    if config.step == "revise":
        raise AllProvidersFailed("llm", [
            TraceStep(step="revise", provider="litellm", model=model, outcome="error", error_class="ProviderUnavailable",
                      latency_ms=latency)
            for model, latency in (("deepseek-v3.1-q8", 120.0), ("local", 30.0))])
    return VERDICT if config.step == "review" else "the first draft, paid for"


async def test_a_failed_delegate_returns_its_partial_draft_attempts_and_trace(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from providers.testing import FunctionLLM

    use_fake_llm(monkeypatch, FunctionLLM(_revision_down, model="drafter"))
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=10)))) as client:
        result = await client.call_tool("delegate", {"task": "write two lines", "kind": "bulk_content"})
        assert result.is_error
        text = result.content[0].text
        job_id = text.rsplit("job_id: ", 1)[1].split()[0]
        collected = (await client.call_tool("job_result", {"job_id": job_id, "wait_s": 0})).structured_content

    # one clear error, every attempt with its error class and latency
    assert "AllProvidersFailed" in text
    assert "deepseek-v3.1-q8 error ProviderUnavailable 120.0 ms" in text and "local error ProviderUnavailable 30.0 ms" in text
    # said in the error and in the trace line, not a third time in an "attempts:" line between them
    assert text.count("deepseek-v3.1-q8") == 2 and "\nattempts: " not in text, text
    # the partial draft, readable, and where the rest of it is
    assert "partial result (stopped at revise)" in text and "the first draft, paid for" in text
    assert f"partial result available: job_result({job_id})" in text
    # the trace: each step with its latency, and the totals
    totals = collected["totals"]
    assert f"{totals['input_tokens']} in / {totals['output_tokens']} out tokens" in text
    assert "draft llm drafter ok" in text and "review llm drafter ok" in text
    assert collected["output"]["partial"] is True  # the same job, as job_result has it
    # and the whole failed job as structured content on the error result itself
    failed = result.structured_content or {}
    assert failed.get("status") == "FAILED" and failed["output"]["partial"] is True
    assert failed["totals"] == totals and failed["trace"]


async def test_a_failed_job_without_a_partial_does_not_promise_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.errors import AllProvidersFailed
    from providers.testing import FunctionLLM

    def down(messages: Any, config: Any) -> Any:
        raise AllProvidersFailed("llm", [])

    use_fake_llm(monkeypatch, FunctionLLM(down))
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=10)))) as client:
        result = await client.call_tool("delegate", {"task": "write two lines", "kind": "bulk_content"})
    assert result.is_error
    text = result.content[0].text
    assert "AllProvidersFailed" in text and "job_id: " in text
    assert "partial result" not in text


def test_the_failure_carries_a_structured_result_a_door_can_send() -> None:
    """``raise_for_failure``'s error holds the failed job as structured content (the error, the
    partial output, the public trace and totals) on an ``isError`` result."""
    from mcp.server.mcpserver.exceptions import ToolError

    from mcp_server.results import ToolFailed, raise_for_failure

    step = {"step": "draft", "kind": "llm", "provider": "fake", "model": "m", "latency_ms": 12.345, "outcome": "ok",
            "input_tokens": 5, "output_tokens": 3, "cost_usd": 0.001, "secret_field": "dropped"}
    envelope = {"job_id": "j-1", "status": "FAILED", "trace": [step],
                "totals": {"input_tokens": 5, "output_tokens": 3, "cost_usd": 0.001, "provider_calls": 1},
                "error": {"type": "AllProvidersFailed", "message": "every model failed"},
                "output": {"partial": True, "text": "x" * 5000, "stopped_at": "revise"}}
    with pytest.raises(ToolError) as raised:
        raise_for_failure(envelope)
    assert isinstance(raised.value, ToolFailed)
    result = raised.value.result
    assert result.is_error
    structured = result.structured_content or {}
    assert structured["status"] == "FAILED" and structured["error"]["type"] == "AllProvidersFailed"
    assert structured["output"]["text"] == "x" * 5000 and structured["totals"]["cost_usd"] == 0.001
    assert structured["trace"][0]["latency_ms"] == 12.3 and "secret_field" not in structured["trace"][0]
    text = str(raised.value)
    assert len(text) < 3000 and "x" * 100 in text and "job_result(j-1)" in text  # short, the rest one call away


async def test_consensus_says_why_its_synthesis_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.errors import AllProvidersFailed
    from providers.testing import FunctionLLM

    def answer(messages: Any, config: Any) -> Any:
        if config.step == "synthesize":
            raise AllProvidersFailed("llm", [])
        return f"position of {config.prefer}"

    use_fake_llm(monkeypatch, FunctionLLM(answer))
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=10)))) as client:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        result = await client.call_tool("consensus", {"question": "Ship on Friday?"})
    assert not result.is_error, result.content
    out = result.structured_content or {}
    assert out["synthesis"] == "" and out["positions"]
    assert out["synthesis_status"] == "unavailable" and out["synthesis_error"]
    assert out["warnings"] and out["warnings"][0].startswith("no synthesis; the one position stands: ")
    assert {"synthesis_status", "synthesis_error", "warnings"} <= set(listed["consensus"].output_schema["properties"])


def test_a_partial_result_with_nothing_to_read_says_so_instead_of_an_empty_heading() -> None:
    """A research cancelled before its report read "partial result:" with nothing under it."""
    from mcp_server.results import failure_text

    result = {"job_id": "j1", "status": "CANCELLED", "error": {"type": "JobCancelled", "message": "job j1 was cancelled"},
              "output": {"partial": True, "stopped_at": "write", "report": None,
                         "sources": [{"id": 1, "title": "RunPod", "url": "file:///x.md"}]},
              "trace": [], "totals": {}}
    text = failure_text(result)
    assert ("partial result (stopped at write): nothing to show yet; what was kept is in the structured output"
            in text), text
    drafted = failure_text({**result, "output": {"partial": True, "stopped_at": "review", "text": "the draft"}})
    assert "partial result (stopped at review):\nthe draft" in drafted
