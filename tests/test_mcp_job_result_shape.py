"""A job collected with job_result reads like the tool's own answer: the same output fields (a
research's citations open their passages, an image has its key), the same content blocks, and
the same public trace (rounded latencies, each step's time)."""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.types import ImageContent, ResourceLink, TextContent
from mcp_helpers import collect, research_brain, use_fake_llm, write_config

from mcp_server.outputs import JobOutcome
from mcp_server.server import build_server

FIXTURES = Path(__file__).parent / "fixtures"
SHARED = Path(tempfile.gettempdir()) / "swarm-test-models"
HEAD = set(JobOutcome.model_fields)




def _search(corpus: Path, tmp_path: Path) -> Any:
    from providers.search.chain import SearchChain
    from providers.search.local_index import LocalIndexSearch

    return SearchChain([("local", LocalIndexSearch([corpus], tmp_path / "idx.sqlite"))])


async def test_a_research_past_the_wait_ends_in_job_result_as_the_tool_answers(
        corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """job_result gave the stored output: citations and sources without ``resource``, no
    ``report_uri``, the raw ``cited_passages``; a research past the tool's wait could not be checked."""
    from providers.testing import FunctionLLM

    use_fake_llm(monkeypatch, FunctionLLM(research_brain), search=_search(corpus, tmp_path))
    ask = {"question": "How do checkpoints and RunPod jobs work?", "depth": "quick", "idempotency_key": "q-1"}
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=0.01)))) as client:
        started = (await client.call_tool("research", ask)).structured_content
        assert started["status"] == "IN_PROGRESS", started
        collected = await client.call_tool("job_result", {"job_id": started["job_id"], "wait_s": 50})
        tool = (await client.call_tool("research", ask)).structured_content  # the same job, as the tool returns it
        opened = {c["resource"]: (await client.read_resource(c["resource"])).contents[0].text
                  for c in collected.structured_content["output"]["citations"]}

    done = collected.structured_content
    assert done["status"] == tool["status"] == "COMPLETED" and done["job_id"] == tool["job_id"]
    assert done["output"] == {k: v for k, v in tool.items() if k not in HEAD}
    assert done["trace"] == tool["trace"] and done["totals"] == tool["totals"]
    assert done["output"]["report_uri"] == f"swarm://jobs/{done['job_id']}/report"
    assert "cited_passages" not in done["output"]
    assert opened and all(c["claim"] in opened[c["resource"]] for c in done["output"]["citations"])

    # what a reader sees: the report as Markdown, then a link to each source's cited passages
    first, *links = collected.content
    assert isinstance(first, TextContent) and first.text.startswith(tool["report"].rstrip())
    assert [str(link.uri) for link in links if isinstance(link, ResourceLink)] == [
        s["resource"] for s in tool["sources"]]


async def test_an_image_collected_by_job_result_has_the_tools_fields_and_blocks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """job_result gave ``output.image_key`` and the raw fields where the tool gives ``key``,
    ``details`` and ``image_base64``."""
    from providers.image import pull as weights_pull

    assert weights_pull.pull(["u2netp"], SHARED)["ok"]
    monkeypatch.setenv("SWARM_MODELS_DIR", str(SHARED))
    photo = base64.b64encode((FIXTURES / "grace_hopper_256.jpg").read_bytes()).decode()
    ask = {"image": photo, "model": "u2netp", "return_base64": True, "idempotency_key": "cut-1"}
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=0.01)))) as client:
        started = (await client.call_tool("remove_background", ask)).structured_content
        assert started["status"] == "IN_PROGRESS", started
        collected = await collect(client, started["job_id"])  # the first image job measures precision: auto first
        tool = await client.call_tool("remove_background", ask)

    done, own = collected.structured_content, tool.structured_content
    assert done["status"] == own["status"] == "COMPLETED"
    assert done["output"] == {k: v for k, v in own.items() if k not in HEAD}
    assert done["output"]["key"].startswith("image_tools/") and done["output"]["image_base64"]
    assert done["trace"] == own["trace"]
    blocks = [type(b) for b in collected.content[1:]]
    assert blocks == [type(b) for b in tool.content[1:]] == [TextContent, ImageContent, ResourceLink]
    assert [b.model_dump() for b in collected.content[1:]] == [b.model_dump() for b in tool.content[1:]]


async def test_the_public_trace_is_rounded_and_dated_in_the_tool_and_in_job_result(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Latencies came out as 0.0023650063667446375; the tool's steps had no ``at``, job_result's had."""
    from mcp_helpers import SlowLLM

    use_fake_llm(monkeypatch, SlowLLM(delay_s=0.01))
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=30)))) as client:
        tool = (await client.call_tool("delegate", {"task": "hello", "kind": "critical"})).structured_content
        done = (await client.call_tool("job_result", {"job_id": tool["job_id"]})).structured_content
    assert tool["trace"] and done["trace"] == tool["trace"]
    for step in tool["trace"]:
        assert step["latency_ms"] == round(step["latency_ms"], 1), step
        assert step["at"] and step["at"].endswith("+00:00"), step
    assert any(step["model"] == "slow-fake" and step["latency_ms"] >= 10 for step in tool["trace"])
