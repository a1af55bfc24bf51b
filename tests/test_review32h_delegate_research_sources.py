"""``delegate`` with a kind routed to research (``kind="research"``) answers a report with [n]
citations: its output carries the sources and citations, each naming the resource that opens it,
as the research tool's does; its sources and citations were missing, and reading
``swarm://jobs/{id}/sources/1`` answered "has no sources"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_helpers import research_brain, use_fake_llm, write_config

CHECKPOINTS = ("# LangGraph checkpoints\n\nLangGraph checkpoint durability: checkpoints save state after every step.\n")
RUNPOD = "# RunPod job states\n\nRunPod job states: RunPod jobs can fail, or complete.\n"


def _search(tmp_path: Path) -> Any:
    from providers.search.chain import SearchChain
    from providers.search.local_index import LocalIndexSearch

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "checkpoints.md").write_text(CHECKPOINTS)
    (corpus / "runpod.md").write_text(RUNPOD)
    return SearchChain([("local", LocalIndexSearch([corpus], tmp_path / "idx.sqlite", refresh_interval_s=0))])


async def test_a_delegated_research_report_carries_sources_whose_resources_open(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from providers.testing import FunctionLLM

    use_fake_llm(monkeypatch, FunctionLLM(research_brain), search=_search(tmp_path))
    async with Client(build_server_at(tmp_path)) as client:
        result = await client.call_tool("delegate", {"task": "How do checkpoints and RunPod jobs behave?",
                                                     "kind": "research"})
        assert not result.is_error, result.content[0].text
        out = result.structured_content
        job_id = out["job_id"]
        opened = (await client.read_resource(f"swarm://jobs/{job_id}/sources/1")).contents[0].text
        collected = (await client.call_tool("job_result", {"job_id": job_id})).structured_content["output"]
        research = (await client.call_tool("research", {"question": "How do checkpoints and RunPod jobs behave?",
                                                        "depth": "quick"})).structured_content

    assert "[1]" in out["text"], out["text"]
    assert out["sources"] and out["citations"], out
    assert all(s["resource"] == f"swarm://jobs/{job_id}/sources/{s['id']}" for s in out["sources"])
    assert all(c["resource"].startswith(f"swarm://jobs/{job_id}/sources/") for c in out["citations"])
    # the same shape as the research tool's: the same keys in each source and citation
    assert set(out["sources"][0]) == set(research["sources"][0])
    assert set(out["citations"][0]) == set(research["citations"][0])
    # the resource opens the source and the passage it was cited for
    first = next(s for s in out["sources"] if s["id"] == 1)
    assert first["url"] in opened and "> LangGraph checkpoint durability: checkpoints save state" in opened, opened
    assert "Cited for:\n- Checkpoints save state after every step." in opened, opened
    # job_result answers as the tool did, and the text links each cited source
    assert collected["sources"] == out["sources"] and collected["citations"] == out["citations"]
    links = [c for c in result.content if c.type == "resource_link"]
    assert links and {str(link.uri) for link in links} <= {s["resource"] for s in out["sources"]}


async def test_a_plain_delegate_answer_still_has_no_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mcp_helpers import SlowLLM

    use_fake_llm(monkeypatch, SlowLLM(text="plain answer"))
    async with Client(build_server_at(tmp_path)) as client:
        out = (await client.call_tool("delegate", {"task": "hi", "kind": "critical"})).structured_content
        with pytest.raises(Exception, match=r"\(delegate\) has no sources"):
            await client.read_resource(f"swarm://jobs/{out['job_id']}/sources/1")
    assert out["sources"] == [] and out["citations"] == []


def build_server_at(tmp_path: Path) -> Any:
    from mcp_server.server import build_server

    return build_server(str(write_config(tmp_path, wait_budget_s=60)))
