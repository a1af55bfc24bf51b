"""What a client shows a model of a research answer: the report as Markdown with a link per
source, not the whole structured result as JSON text (22 KB for a 2 KB report); the structured
content stays complete and valid against the tool's output schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mcp import Client
from mcp.types import ResourceLink, TextContent
from mcp_helpers import research_brain, use_fake_llm, write_config

from mcp_server.outputs import ResearchOutput
from mcp_server.reports import research_blocks
from mcp_server.server import build_server


def test_the_blocks_are_the_report_what_the_check_did_and_a_link_per_source() -> None:
    output = ResearchOutput(
        job_id="j1", status="COMPLETED", report="Jobs can fail [1].\n\n## Sources\n\n[1] [States](<https://x.org/s>)\n",
        report_uri="swarm://jobs/j1/report", mode="abstractive", support=0.5,
        sources=[{"id": 1, "title": "States", "url": "https://x.org/s", "resource": "swarm://jobs/j1/sources/1"}],
        unsupported_sentences=[{"sentence": "The moon is made of cheese."}],
        warnings=["one sentence had no passage behind it"],
    )
    output = output.model_copy(update={"citations": [{"claim": "Jobs can fail.", "source_ids": [1]}]})
    text, link = research_blocks(output)
    assert isinstance(text, TextContent) and isinstance(link, ResourceLink)
    assert text.text.startswith("Jobs can fail [1].\n\n## Sources")
    assert "50% of factual sentences backed" in text.text and "unsupported_sentences in the structured result" in text.text
    assert "Warning: one sentence had no passage behind it" in text.text and "swarm://jobs/j1/report" in text.text
    assert str(link.uri) == "swarm://jobs/j1/sources/1" and link.title == "[1] States"
    assert link.mime_type == "text/markdown"


async def test_the_research_tool_shows_markdown_and_links_and_keeps_the_full_structured_result(
        corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from providers.search.chain import SearchChain
    from providers.search.local_index import LocalIndexSearch
    from providers.testing import FunctionLLM

    search = SearchChain([("local", LocalIndexSearch([corpus], tmp_path / "idx.sqlite"))])
    use_fake_llm(monkeypatch, FunctionLLM(research_brain), search=search)
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=60)))) as client:
        result = await client.call_tool("research", {"question": "How do checkpoints and RunPod jobs work?",
                                                     "depth": "quick"})
        # the client checked structured_content against the tool's outputSchema
        out = result.structured_content
        collected = await client.call_tool("job_result", {"job_id": out["job_id"]})
    assert not result.is_error and out["status"] == "COMPLETED"
    assert out["trace"] and out["citations"] and out["sources"]  # the whole result, for programs
    first, *links = result.content
    assert isinstance(first, TextContent) and first.text.startswith(out["report"].rstrip())
    with pytest.raises(json.JSONDecodeError):
        json.loads(first.text)
    cited = {n for citation in out["citations"] for n in citation["source_ids"]}
    assert cited and [str(link.uri) for link in links if isinstance(link, ResourceLink)] == [
        s["resource"] for s in out["sources"] if s["id"] in cited]  # a link per source the report cites
    assert len(first.text) < len(json.dumps(out)) / 2
    assert [b.model_dump() for b in collected.content] == [b.model_dump() for b in result.content]


def test_a_source_found_but_not_cited_gets_no_link() -> None:
    """A link says "the passages cited from this source": one for a source the report never cites
    showed nothing (a newcomer saw 8 links under a report citing [1] only)."""
    sources = [{"id": n, "title": f"S{n}", "url": f"https://x.org/{n}", "resource": f"swarm://jobs/j1/sources/{n}"}
               for n in (1, 2, 3)]
    output = ResearchOutput(job_id="j1", status="COMPLETED", sources=sources,
                            citations=[{"claim": "A.", "source_ids": [1]}, {"claim": "C, as `x[2]` says.", "source_ids": [3]}],
                            report="A [1]. C, as `x[2]` says [3].\n\n## Sources\n\n[1] [S1](<https://x.org/1>)\n"
                                   "[3] [S3](<https://x.org/3>)\n")
    _, *links = research_blocks(output)
    assert [link.title for link in links if isinstance(link, ResourceLink)] == ["[1] S1", "[3] S3"]
