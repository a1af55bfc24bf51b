"""The extractive report quotes passages that answer the question, not every passage that shares
a word with it.

Keyless, "How does langgraph checkpointing work?" against this project's docs came back with the
LangGraph checkpoint passages and, in the same section, SearXNG's set-up ("...the worker's
address", for "work"), the project overview ("a RunPod Serverless worker") and "`research(...)`
runs a LangGraph graph" (for "langgraph" alone); the overview's line opened the report. Every
sentence was backed by the passage it cites: padding, not an answer.
"""

from __future__ import annotations

import re
from pathlib import Path

from test_research_graph import _context, _local_chain

from graphs.research.action import ResearchInput, research
from graphs.research.extractive import extractive_report
from graphs.research.passages import split_passages
from graphs.research.subjects import asked_terms, without_frame
from providers.testing import FakeLLM

DOCS = Path(__file__).resolve().parent.parent / "docs" / "corpus"
TINYQ = (
    "# Tinyq\n\nTinyq is a small job queue for Python.\n\n"
    "## Retries\n\nTinyq retries a failed job three times before it gives up.\n\n"
    "A retried job waits 10 s, then 20 s, then 40 s.\n\n"
    "## Dashboard\n\nTinyq serves a dashboard: the Tinyq dashboard lists each Tinyq queue.\n\n"
    "## Configuration\n\nConfigure Tinyq with a tinyq.toml file beside the application.\n\n"
    "## Logging\n\nConfigure the log level with the LOG_LEVEL variable.\n"
)
BIGQ = "# Bigq\n\nBigq retries a failed job five times, then keeps it in a dead-letter queue for a day.\n"
SOURCES = [{"id": 1, "snippet": ""}, {"id": 2, "snippet": ""}]
PASSAGES = {"1": split_passages(TINYQ), "2": split_passages(BIGQ)}


def _quoted(report: str) -> list[str]:
    """The report's quoted lines (the opening's and each section's), Sources left out."""
    return [line for line in report.split("## Sources")[0].splitlines() if line.startswith("- ")]


def test_how_it_works_asks_how_and_its_other_words_say_what_about():
    assert without_frame("How does langgraph checkpointing work?") == "How does langgraph checkpointing?"
    assert without_frame("how tinyq retries work") == "how tinyq retries"
    assert without_frame("How does work stealing work in tokio?") == "How does work stealing in tokio?"
    for kept in ("Does it work?", "What does work mean?", "How do I get work done?"):
        assert without_frame(kept) == kept
    assert asked_terms("How do I configure Tinyq?") == {"tinyq"}  # "configure": any question's word


def test_a_passage_that_shares_only_an_ordinary_word_with_the_question_is_not_quoted():
    report = extractive_report("How do I configure Tinyq?", [], SOURCES, PASSAGES)
    assert "tinyq.toml" in report
    assert "LOG_LEVEL" not in report, report  # says "configure" of something else


def test_a_passage_that_says_only_what_the_sources_are_about_is_not_quoted():
    """"Tinyq" is in most passages: one that says it and not "retry" says nothing of retries."""
    report = extractive_report("How do Tinyq retries work?", [], SOURCES, PASSAGES)
    assert "retries a failed job" in report and "A retried job waits" in report, report
    assert "dashboard" not in report, report


def test_the_question_is_answered_from_the_sources_on_its_subject():
    """Bigq's passage says "times", "retries", "failed" and "job", of another queue."""
    report = extractive_report("How many times does Tinyq retry a failed job?", [], SOURCES, PASSAGES)
    assert "Tinyq retries a failed job three times" in report
    assert "Bigq" not in report and "[2]" not in report, report


async def test_how_langgraph_checkpointing_works_is_answered_with_checkpoints_only(tmp_path):
    """The lead's walk through the MCP server, keyless, against this project's own docs."""
    ctx, _ = _context(tmp_path, FakeLLM([{"queries": []}]), _local_chain(DOCS, tmp_path))
    result = await research(ResearchInput(question="How does langgraph checkpointing work?", mode="extractive"), ctx)
    report = result["report"]
    quoted = _quoted(report)
    assert len(quoted) >= 3 and "durability" in report, report
    off = [line for line in quoted if not re.search(r"checkpoint", line, re.IGNORECASE)]
    assert not off, off  # was SearXNG's set-up, the project overview and "runs a LangGraph graph"
    titles = {s["id"]: s["title"] for s in result["sources"]}
    first_ids = {int(n) for n in re.findall(r"\[(\d+)\]", quoted[0])}
    assert {titles[i] for i in first_ids} == {"LangGraph: state, checkpoints and fan-out"}, quoted[0]


def test_a_topic_page_that_names_its_library_once_is_still_quoted():
    """The most said word of a short question was taken for its subject and dropped: of a page on
    httpx timeouts that says "HTTPX" once, "What is the default httpx timeout?" quoted that one
    sentence and left out "The default timeout is 5 seconds"."""
    doc = ("# Timeouts\n\nHTTPX is careful to enforce timeouts everywhere by default.\n\n"
           "## Default\n\nThe default timeout is 5 seconds of network inactivity.\n\n"
           "## Per request\n\nYou can set timeouts on a client instance, or override them per request.\n\n"
           "## Connect\n\nThe connect timeout limits the time allowed to establish a connection.\n")
    passages = {"1": split_passages(doc), "2": split_passages("# Requests\n\nRequests has no timeout by default.\n")}
    report = extractive_report("What is the default httpx timeout?", [], SOURCES, passages)
    assert "The default timeout is 5 seconds" in report, report
