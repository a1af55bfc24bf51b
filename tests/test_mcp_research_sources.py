"""A research result through the MCP door can be checked by its reader: every source and citation
names a resource that opens the cited passage (text, offsets, heading) and the source's whole
text, and the result says what the check removed and warns as job_result does."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp_helpers import use_fake_llm, write_config

from mcp_server.resources import source_markdown
from mcp_server.server import build_server

CHECKPOINTS = ("# LangGraph checkpoints\n\nA checkpointer saves graph state after every step.\n\n"
               "## Savers\n\nThe SQLite saver keeps checkpoints in one file on disk.\n")
RUNPOD = "# RunPod job states\n\nJobs go IN_QUEUE, IN_PROGRESS, then COMPLETED or FAILED.\n"


def brain(messages: Any, config: Any) -> Any:
    if config.step == "plan":
        return {"queries": ["langgraph checkpoint saver", "runpod job states"]}
    if config.step in ("write", "revise"):  # nothing backed, and a source that was never retrieved
        return "Checkpoints are kept on the moon by a robot [1]. See also [9]."
    return {"approved": True, "issues": []}


def _search(tmp_path: Path) -> Any:
    from providers.search.chain import SearchChain
    from providers.search.local_index import LocalIndexSearch

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "checkpoints.md").write_text(CHECKPOINTS)
    (corpus / "runpod.md").write_text(RUNPOD)
    # synced at every search: a test edits a file and asks again
    return SearchChain([("local", LocalIndexSearch([corpus], tmp_path / "idx.sqlite", refresh_interval_s=0))])


async def test_every_citation_opens_its_passage_and_the_result_keeps_what_was_removed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from providers.testing import FunctionLLM

    use_fake_llm(monkeypatch, FunctionLLM(brain), search=_search(tmp_path))
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=60)))) as client:
        result = await client.call_tool("research", {"question": "How are checkpoints saved?", "depth": "quick"})
        assert not result.is_error, result.content[0].text
        out = result.structured_content
        finished = (await client.call_tool("job_result", {"job_id": out["job_id"]})).structured_content["output"]
        opened = {s["resource"]: (await client.read_resource(s["resource"])).contents[0] for s in out["sources"]}
        whole = {s["id"]: (await client.read_resource(s["resource"] + "/text")).contents[0].text for s in out["sources"]}
        with pytest.raises(Exception, match=r"has no source '99'; its sources are 1"):
            await client.read_resource(f"swarm://jobs/{out['job_id']}/sources/99")
        # the document edited since the report: its offsets would cut the wrong text, said nowhere
        cited = next(s for s in out["sources"] if s["url"].endswith("checkpoints.md"))

        (tmp_path / "corpus" / "checkpoints.md").write_text("A new first line.\n" + CHECKPOINTS)
        await client.call_tool("research", {"question": "How are checkpoints saved?", "depth": "quick"})  # re-indexed
        with pytest.raises(Exception, match=r"changed since this report: its cited passages no longer sit at their"
                                            r" offsets \(\d+ moved\); they are quoted as they were at swarm://jobs/"):
            await client.read_resource(cited["resource"] + "/text")
        # and a file renamed away: its url leads nowhere
        (tmp_path / "corpus" / "checkpoints.md").rename(tmp_path / "corpus" / "saving.md")
        await client.call_tool("research", {"question": "How are checkpoints saved?", "depth": "quick"})
        with pytest.raises(Exception, match=r"is no longer in the local index: the file is gone \(renamed or deleted"):
            await client.read_resource(cited["resource"] + "/text")

    # the draft failed the check: the report quotes the sources, and the tool result says so, as job_result does
    assert out["mode"] == "extractive"
    assert any("quotes the sources instead" in w for w in out["warnings"])
    for key in ("warnings", "removed_citations", "repeats_removed"):
        assert out[key] == finished[key], key
    assert out["removed_citations"][0]["source_id"] == 9
    assert out["citations"] and all(c["resource"] == f"swarm://jobs/{out['job_id']}/sources/{c['passage']['source_id']}"
                                    for c in out["citations"])
    by_id = {s["id"]: s for s in out["sources"]}
    for citation in out["citations"]:
        sid, where = citation["passage"]["source_id"], citation["passage"]
        page = opened[citation["resource"]]
        assert page.mime_type == "text/markdown" and by_id[sid]["title"] in page.text
        assert f"characters {where['start']}-{where['end']}" in page.text and citation["claim"] in page.text
        passage = whole[sid][where["start"]:where["end"]]  # the offsets count into the whole text
        quoted = " ".join(re.findall(r"^> ?(.*)$", page.text, re.MULTILINE))
        assert " ".join(passage.split()) in quoted


def test_a_snippet_citation_says_it_is_a_snippet_and_has_no_offsets() -> None:
    source = {"id": 2, "url": "https://example.org/tinyq", "title": "Tinyq", "retrieved_at": "2026-01-01T00:00:00+00:00"}
    passage = {"text": "Tinyq keeps queues in memory.", "start": None, "end": None, "heading": None, "page": None,
               "snippet": True}
    citation = {"claim": "Tinyq keeps queues in memory.", "source_ids": [2],
                "passage": {"source_id": 2, "start": None, "end": None, "snippet": True}}
    page = source_markdown(source, [passage], [citation], "swarm://jobs/j/sources/2/text")
    assert "search snippet (the page was not read: no offsets)" in page
    assert "> Tinyq keeps queues in memory." in page and "- Tinyq keeps queues in memory." in page
    assert "whole text" not in page  # a web page is not kept: its url is the way to it


QUEUES = {
    "tinyq": "Tinyq queues keep every queue message in memory until a worker takes it.",
    "bigq": "Bigq queues write every queue message to disk before a worker sees it.",
    "slowq": "Slowq queues retry a failed queue message three times with a growing delay.",
}


def last_first(messages: Any, config: Any) -> Any:
    """A writer citing only the last of the sources it is shown (in the graph's numbering: [3])."""
    if config.step == "plan":
        return {"queries": ["queue message worker"]}
    if config.step in ("write", "revise"):
        shown = dict(re.findall(r'<source id="(\d+)" title="([^"]*)"', messages[1].content))
        last = max(shown, key=int)
        return f"{QUEUES[shown[last].split()[0].lower()]} [{last}]"
    return {"approved": True, "issues": []}


async def test_the_source_a_report_cites_first_is_source_1_and_its_resource_opens_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from providers.search.chain import SearchChain
    from providers.search.local_index import LocalIndexSearch
    from providers.testing import FunctionLLM

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, sentence in QUEUES.items():
        (corpus / f"{name}.md").write_text(f"# {name.capitalize()} queues\n\n{sentence}\n")
    search = SearchChain([("local", LocalIndexSearch([corpus], tmp_path / "idx.sqlite"))])
    use_fake_llm(monkeypatch, FunctionLLM(last_first), search=search)
    async with Client(build_server(str(write_config(tmp_path, wait_budget_s=60)))) as client:
        result = await client.call_tool("research", {"question": "How does a queue message reach a worker?",
                                                     "depth": "quick", "mode": "abstractive"})
        assert not result.is_error, result.content[0].text
        out = result.structured_content
        first = (await client.read_resource(f"swarm://jobs/{out['job_id']}/sources/1")).contents[0].text

    assert len(out["sources"]) == 3 and out["support"] == 1.0
    cited = out["sources"][0]
    sentence = QUEUES[cited["title"].split()[0].lower()]
    assert out["report"].startswith(f"{sentence} [1]") and "\n- [1] [" + cited["title"] in out["report"]
    assert [(c["claim"], c["source_ids"], c["passage"]["source_id"]) for c in out["citations"]] == [(sentence, [1], 1)]
    assert out["citations"][0]["resource"] == cited["resource"] == f"swarm://jobs/{out['job_id']}/sources/1"
    assert first.startswith(f"# [1] {cited['title']}") and f"> {sentence}" in first and f"- {sentence}" in first
