"""research through the MCP door (fake models over a real local index): progress notifications
arrive during the job, the result carries the report and sources, and the report resource pages it."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client
from mcp_helpers import research_brain, use_fake_llm, write_config

from mcp_server.server import build_server


async def test_research_job_sends_progress_and_its_report_is_a_resource(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from providers.search.chain import SearchChain
    from providers.search.local_index import LocalIndexSearch
    from providers.testing import FunctionLLM

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "checkpoints.md").write_text("# LangGraph checkpoints\n\nA checkpointer saves graph state after every step.\n")
    (corpus / "runpod.md").write_text("# RunPod job states\n\nJobs go IN_QUEUE, IN_PROGRESS, then COMPLETED or FAILED.\n")
    search = SearchChain([("local", LocalIndexSearch([corpus], tmp_path / "idx.sqlite"))])
    use_fake_llm(monkeypatch, FunctionLLM(research_brain), search=search)
    messages: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=60)))) as client:
        result = await client.call_tool("research", {"question": "How do checkpoints and RunPod jobs work?",
                                                     "depth": "quick"}, progress_callback=on_progress)
        assert not result.is_error, result.content[0].text
        out = result.structured_content
        report = (await client.read_resource(out["report_uri"])).contents[0].text
        quoted = await client.call_tool("research", {"question": "How do checkpoints work?", "depth": "quick",
                                                     "mode": "extractive"})
        assert not quoted.is_error, quoted.content[0].text
    assert out["status"] == "COMPLETED" and "[1]" in out["report"]
    assert out["mode"] == "abstractive" and out["support"] == 1.0 and out["unsupported_sentences"] == []
    extractive = quoted.structured_content
    assert extractive["mode"] == "extractive" and "saves graph state after every step [1]" in extractive["report"]
    assert {s["title"] for s in out["sources"]} >= {"LangGraph checkpoints"}
    assert report == out["report"]
    assert len(messages) >= 3, messages  # plan, search, write, ... each a notification
    assert any(m.startswith("done") for m in messages)
