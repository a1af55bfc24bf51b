"""What a reader of a research report relies on: code and numbers are checked as written, passages
are cut where sentences end (not after a list number), citations read as the report does, only the
sources' words are quoted (no planner statement as a heading, no table row as a sentence), the
passages behind the citations are kept for opening, and the CLI says what the report cannot."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from test_research_graph import Script, _context

from core.errors import InputError
from graphs.research.action import ResearchInput, research
from graphs.research.citations import check_citations, cited_passages
from graphs.research.extractive import extractive_report
from graphs.research.grounding import ground
from graphs.research.passages import snippet_passage, split_passages
from graphs.research.quoting import flatten
from providers.search.chain import SearchChain
from providers.testing import FakeSearch, FunctionLLM


def _passage(text: str) -> dict[str, Any]:
    return {"start": 0, "end": len(text), "heading": None, "page": None, "text": text}


def test_a_wrong_index_inside_code_is_not_read_as_a_citation_and_fails_the_check():
    passages = {1: [_passage("Call `items[2]` to get the third entry of the list in the config.")]}
    wrong = ground("Call `items[7]` to get the third entry of the list in the config [1].\n", passages)
    assert wrong.report.strip() == "" and "items 7" in wrong.unsupported[0]["reason"]
    right = ground("Call `items[2]` to get the third entry of the list in the config [1].\n", passages)
    assert right.support == 1.0 and "`items[2]`" in right.report


def test_a_long_numbered_list_is_cut_between_items_never_after_a_list_number():
    steps = "\n".join(f"{i}. Step number {i} writes one more checkpoint row to the store here" for i in range(1, 15))
    text = "# Checkpoints\n\nHow checkpoints are stored, step by step, in order.\n" + steps
    passages = split_passages(text, 300)
    assert len(passages) > 2
    for passage in passages:
        assert not passage["text"].rstrip().split("\n")[-1].strip().rstrip(".").isdigit(), passage["text"]
        first = passage["text"].lstrip().split("\n")[0]
        assert first[:1].isdigit() or first.startswith("How"), first  # each piece starts at an item
    assert all(text[p["start"]:p["end"]] == p["text"] for p in passages)


def test_a_citation_claim_keeps_the_code_as_the_report_writes_it():
    report = 'Send `{"project" : "swarm" , "action" : "research"}` to the handler , then wait [1].\n'
    checked = check_citations(report, [{"id": 1, "url": "https://example.org/a", "title": "A"}])
    claim = checked.citations[0]["claim"]
    assert '`{"project" : "swarm" , "action" : "research"}`' in claim  # as in the report
    assert "handler, then wait." in claim  # prose spacing still tidied


def test_extractive_sub_query_headings_read_as_searches_not_statements():
    passages = {"1": split_passages("# Breaker\n\nThe circuit breaker opens after 3 failures of one model.\n")}
    report = extractive_report("How does the breaker work?", ["When a model fails repeatedly, the circuit breaker is activated."],
                               [{"id": 1, "snippet": ""}], passages)
    assert "### When a model fails" not in report
    assert "### Search: `When a model fails repeatedly, the circuit breaker is activated.`" in report
    assert ground(report, {1: passages["1"]}).report.count("### Search: `") == 1  # the check keeps it


def test_an_abstractive_heading_with_a_number_or_code_no_source_holds_is_dropped():
    """A section's own number ("1.", "Step 2:") is the writer's order, not a claim; a number in
    the heading's text ("3) Retries since 2019") still has to be in a source."""
    passages = {1: [_passage("The router retries three times before it gives up.")]}
    report = ("## 3) Retries since 2019\n\nThe router retries three times before it gives up [1].\n\n"
              "## Calling `retry_all()`\n\nThe router retries three times before it gives up, really [1].\n\n"
              "## 1. How retries work\n\nIt retries three times before it gives up [1].\n\n"
              "## Step 2: Giving up\n\nThe router gives up after three retries [1].\n")
    checked = ground(report, passages)
    assert "2019" not in checked.report and "retry_all" not in checked.report
    assert "## 1. How retries work" in checked.report and "## Step 2: Giving up" in checked.report
    assert {u["sentence"] for u in checked.unsupported} >= {"3) Retries since 2019", "Calling `retry_all()`"}


def test_table_rows_are_quoted_as_sentences_of_their_cells_and_a_separator_never_stays_alone():
    table = "| key | default |\n|---|---|\n| retries | 3 |\n| timeout_s | 30 |"
    # each data row one sentence naming its cells by their columns (quoting.flatten: a row's answer
    # was never quoted); the rows themselves, pipes and all, never
    assert flatten(f"Settings of the router.\n\n{table}") == \
        "Settings of the router. key: retries; default: 3. key: timeout_s; default: 30."
    passages = {"1": split_passages(f"# Router\n\nThe router retries each model up to three times.\n\n{table}\n")}
    report = extractive_report("router retries settings", [], [{"id": 1, "snippet": ""}], passages)
    assert "|" not in report
    checked = ground("The router retries [1] three times before it gives up.\n\n" + table + "\n",
                     {1: [_passage("The router retries three times before it gives up.")]})
    assert "---" not in checked.report and "|" not in checked.report


def test_cited_passages_keep_the_text_behind_each_citation_and_mark_snippets():
    text = "# Jobs\n\nJobs go IN_QUEUE, then IN_PROGRESS, then COMPLETED or FAILED.\n"
    read = split_passages(text)
    sources = [{"id": 1, "snippet": "", "url": "file:///jobs.md"},
               {"id": 2, "snippet": "Tinyq keeps  queues in memory.", "url": "https://example.org/tinyq"}]
    checked = ground("Jobs go IN_QUEUE, then IN_PROGRESS [1]. Tinyq keeps queues in memory [2].\n",
                     {1: read, 2: [snippet_passage(sources[1]["snippet"])]})
    evidence = sorted(checked.evidence.values(), key=lambda e: e["source_id"])
    assert "snippet" not in evidence[0] and evidence[1]["snippet"] is True and evidence[1]["start"] is None
    citations = [{"claim": "c", "source_ids": [e["source_id"]], "passage": e} for e in evidence]
    kept = cited_passages(citations, {"1": read}, sources)
    assert kept["1"] == [{"text": read[0]["text"], "start": read[0]["start"], "end": read[0]["end"],
                          "heading": "Jobs", "page": None}]
    assert text[kept["1"][0]["start"]:kept["1"][0]["end"]] == kept["1"][0]["text"]
    assert kept["2"] == [{"text": "Tinyq keeps queues in memory.", "start": None, "end": None, "heading": None,
                          "page": None, "snippet": True}]


class _Keyless(FakeSearch):
    """A backend that needs a key it does not have (as Tavily without TAVILY_API_KEY)."""

    def unconfigured_reason(self) -> str | None:
        return "TAVILY_API_KEY is not set"


async def test_backends_that_cannot_be_searched_are_refused_before_any_work(tmp_path):
    brain = Script()
    chain = SearchChain([("local", FakeSearch([])), ("tavily", _Keyless([]))])
    ctx, _ = _context(tmp_path, FunctionLLM(brain), chain)
    with pytest.raises(InputError, match="tavily: TAVILY_API_KEY is not set") as info:
        await research(ResearchInput(question="q", backends=["tavily"]), ctx)
    assert info.value.field == "backends" and brain.seen == {}  # nothing planned, nothing searched
    result = await research(ResearchInput(question="q", backends=["tavily", "local"]), ctx)  # one usable: runs
    assert "plan" in brain.seen and result["report"]


def _cli_args(**extra: Any) -> argparse.Namespace:
    return argparse.Namespace(out=None, json=False, quiet=True, job_id=None, config=None, **extra)


def test_cli_passes_max_sources_zero_on_so_it_is_refused(monkeypatch: pytest.MonkeyPatch):
    from swarm import cli

    jobs: list[dict[str, Any]] = []

    async def capture(args: argparse.Namespace, job: dict[str, Any]) -> int:
        jobs.append(job)
        return 0

    monkeypatch.setattr(cli, "_run_job", capture)
    cli.cmd_research(_cli_args(question="x", depth="quick", mode="auto", max_sources=0))
    cli.cmd_research(_cli_args(question="x", depth="quick", mode="auto", max_sources=None))
    assert jobs[0]["input"]["max_sources"] == 0 and "max_sources" not in jobs[1]["input"]
    with pytest.raises(ValidationError, match="max_sources"):
        ResearchInput(**jobs[0]["input"])


def test_cli_text_mode_prints_the_reports_warnings(capsys: pytest.CaptureFixture[str], tmp_path: Path):
    from swarm import cli

    warning = "the written draft failed the grounding check (support 0.00); the report quotes the sources instead"
    result = {"job_id": "j", "status": "COMPLETED", "output": {"report": "Quoted [1].\n", "warnings": [warning]},
              "trace": [], "totals": {}}
    assert cli._report(_cli_args(), result) == 0
    out, err = capsys.readouterr()
    assert out.startswith("Quoted [1].") and f"warning: {warning}" in err
    assert cli._report(argparse.Namespace(out=str(tmp_path / "r.json"), json=True, quiet=True), result) == 0
    assert json.loads(capsys.readouterr().out)["output"]["warnings"] == [warning]  # JSON mode: in the result


def test_a_lone_identifier_is_no_sub_query_but_a_phrase_naming_one_is():
    from graphs.research.queries import junk_form

    for junk in ("add_mcp_server_query_list", "keywords:runpods"):
        assert junk_form(junk) == "it is an identifier, not a search phrase", junk
    # seen keyless on 2026-12-03: "Search: `keywords:`" made a section that found nothing
    for junk in ("keywords:", "Sub-query 1:"):
        assert junk_form(junk) == "it is a label with nothing after it", junk
    for junk in ("keywords", "query 2", "sub-query", "search query 1"):
        assert junk_form(junk) == "it names the plan's parts, not a subject", junk
    # two such words may be the subject itself, and the question may ask about them (found by review)
    for fine in ("keyword search", "search terms", "search queries"):
        assert junk_form(fine, "How does BM25 compare with dense retrieval?") is None, fine
    assert junk_form("queries", "What makes good search queries?") is None
    for fine in ("keywords: circuit breaker", "max_sources limit", "python-dotenv", "langgraph", "Python 3.11 tomllib", "HTTP/2 support in httpx",
                 "RUNPOD_LOG_LEVEL", "max_tokens", "python-3.12", "swarm-mcp-1.0.0"):  # names a corpus holds
        assert junk_form(fine) is None, fine
