"""Source numbers as the reader meets them: a report citing the fourth and the second source found
reads [1] and [2], its Sources list and every id of the result (citations, their passages, the
removals, the cited passages) name the same sources, a replayed job gives the same numbers, and
a job stopped by its budget is numbered as a finished one."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from core.config import DEFAULT_CONFIG_PATH, load_config
from core.errors import BudgetExceeded
from graphs.context import JobContext, Providers
from graphs.research.action import ResearchInput, research
from graphs.research.citations import check_citations, renumber_report
from graphs.research.numbering import citation_order, number_by_citation
from providers.base import LLMConfig, Message
from providers.search.chain import SearchChain
from providers.search.local_index import LocalIndexSearch
from providers.testing import FunctionLLM

#: four documents on queues: the sentences the writer copies from each
DOCS = {
    "Tinyq queues": "Tinyq queues keep every queue message in memory until a worker takes it.",
    "Bigq queues": "Bigq queues write every queue message to disk before a worker sees it.",
    "Slowq queues": "Slowq queues retry a failed queue message three times with a growing delay.",
    "Fastq queues": "Fastq queues hand each queue message to the first idle worker at once.",
}
MORE = {title: f"{title.split()[0]} workers acknowledge each queue message they finish." for title in DOCS}
QUESTION = "How do queue message systems hand work to a worker?"


def _corpus(tmp_path: Path) -> SearchChain:
    root = tmp_path / "corpus"
    root.mkdir()
    for title, sentence in DOCS.items():
        (root / f"{title.split()[0].lower()}.md").write_text(f"# {title}\n\n{sentence} {MORE[title]}\n", encoding="utf-8")
    return SearchChain([("local", LocalIndexSearch([root], tmp_path / "idx.sqlite"))])


class OutOfOrder:
    """A writer citing the last source it is shown first, then the second, then both in one
    marker, with ``queues[n]`` in a code block that is no citation; the first and third sources
    go uncited."""

    def __init__(self, review: Any = None) -> None:
        self.shown: dict[int, str] = {}
        self.review = review or {"approved": True, "issues": []}

    def __call__(self, messages: list[Message], config: LLMConfig) -> Any:
        if config.step == "plan":
            return {"queries": ["queue message worker"]}
        if config.step == "write":
            self.shown = {int(i): t for i, t in re.findall(r'<source id="(\d+)" title="([^"]*)"', messages[1].content)}
            last, second = max(self.shown), sorted(self.shown)[1]
            return (f"{DOCS[self.shown[last]]} [{last}]\n\n"
                    f"{DOCS[self.shown[second]]} [{second}]\n\n"
                    f"{MORE[self.shown[last]]} [{second}, {last}]\n\n```python\nqueues[{last}].put(message)\n```\n")
        if config.step == "review":
            if isinstance(self.review, Exception):
                raise self.review
            return self.review
        return {"verdicts": []}


def _context(tmp_path: Path, llm: Any, search: Any, checkpointer: Any = None, job_id: str = "numbering") -> JobContext:
    config = load_config(DEFAULT_CONFIG_PATH, env={"SWARM_HOME": str(tmp_path / "home")})
    providers = Providers(config=config, factories={"llm": lambda: llm, "search": lambda: search})
    return JobContext(job_id=job_id, config=config, providers=providers, checkpointer=checkpointer)


def _body_markers(report: str) -> list[int]:
    body = re.sub(r"```.*?```", "", report.split("## Sources")[0], flags=re.DOTALL)
    return [int(n) for group in re.findall(r"\[([\d, ]+)\]", body) for n in group.split(",")]


async def test_cited_sources_are_numbered_in_order_of_first_citation_and_every_id_agrees(tmp_path: Path) -> None:
    brain = OutOfOrder()
    result = await research(ResearchInput(question=QUESTION, mode="abstractive"), _context(tmp_path, FunctionLLM(brain), _corpus(tmp_path)))
    assert len(brain.shown) == 4 and result["mode"] == "abstractive" and result["support"] == 1.0
    ranked = [brain.shown[i] for i in sorted(brain.shown)]  # the titles in the graph's own numbering
    first, second = ranked[3], ranked[1]
    expected = [first, second, ranked[0], ranked[2]]  # cited in order of first citation, then the rest as found

    assert [s["id"] for s in result["sources"]] == [1, 2, 3, 4]
    assert [s["title"] for s in result["sources"]] == expected
    report = result["report"]
    assert _body_markers(report) == [1, 2, 1, 2]  # [4], [2], [2, 4] as written
    assert "queues[4].put" in report  # code is left as written
    listed = re.findall(r"^- \[(\d+)\] \[([^\]]+)\]", report.split("## Sources")[1], re.MULTILINE)
    assert listed == [("1", first), ("2", second)]
    by_claim = {c["claim"]: c for c in result["citations"]}
    assert by_claim[DOCS[first]]["source_ids"] == [1] and by_claim[DOCS[second]]["source_ids"] == [2]
    assert all(c["passage"]["source_id"] in c["source_ids"] for c in result["citations"])
    assert [s["id"] for s in result["sources"] if s["title"] == first] == [1]
    assert DOCS[first] in " ".join(p["text"] for p in result["cited_passages"]["1"])
    assert DOCS[second] in " ".join(p["text"] for p in result["cited_passages"]["2"])
    assert set(result["cited_passages"]) == {"1", "2"}


async def test_a_replayed_job_gives_the_same_numbers(tmp_path: Path) -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    saver = InMemorySaver()
    llm, search = FunctionLLM(OutOfOrder()), _corpus(tmp_path)
    done = await research(ResearchInput(question=QUESTION, mode="abstractive"), _context(tmp_path, llm, search, saver))
    calls = len(llm.calls)
    again = await research(ResearchInput(question=QUESTION, mode="abstractive"), _context(tmp_path, llm, search, saver))
    assert len(llm.calls) == calls  # read from the checkpoint, nothing asked again
    for key in ("report", "sources", "citations", "cited_passages", "unsupported_sentences", "removed_citations"):
        assert again[key] == done[key], key
    assert _body_markers(again["report"])[:2] == [1, 2]


async def test_a_job_stopped_by_its_budget_is_numbered_as_a_finished_one(tmp_path: Path) -> None:
    brain = OutOfOrder(review=BudgetExceeded("the job's token budget would be passed"))
    with pytest.raises(BudgetExceeded) as info:
        await research(ResearchInput(question=QUESTION, mode="abstractive"), _context(tmp_path, FunctionLLM(brain), _corpus(tmp_path)))
    partial = info.value.partial
    ranked = [brain.shown[i] for i in sorted(brain.shown)]
    assert partial["partial"] is True and _body_markers(partial["report"])[:2] == [1, 2]
    assert [s["title"] for s in partial["sources"]][:2] == [ranked[3], ranked[1]]
    assert {c["claim"]: c["source_ids"] for c in partial["citations"]}[DOCS[ranked[3]]] == [1]


SOURCES = [{"id": i, "url": f"https://example.org/{i}", "title": f"Source {i}", "snippet": f"snippet {i}"} for i in range(1, 6)]


def _state(draft: str, **more: Any) -> dict[str, Any]:
    checked = check_citations(draft, SOURCES)
    return {"sources": SOURCES, "report": checked.report, "citations": checked.citations, **more}


def test_every_id_of_the_state_moves_together_and_invented_ids_stay() -> None:
    state = _state(
        "Fifth fact [5]. Third fact [3, 5]. A heading-free claim [9].\n\n```\nx = data[3]\n```\n",
        passages={"3": [{"text": "three"}], "5": [{"text": "five"}]},
        excerpts={"1": "one", "5": "five"},
        unsupported_sentences=[{"sentence": "Gone.", "source_ids": [5, 9], "reason": "r"}],
        removed_citations=[{"marker": "[3, 9]", "source_id": 9, "reason": "no source 9 was retrieved (sources are 1-5)"}],
        repeats_removed=[{"text": "Fifth fact [5].", "reason": "repeats an earlier sentence"}],
        review={"approved": False, "issues": ["the claim citing [5] is vague", "`list[3]` is code"]},
        trace=[{"step": "check"}],
    )
    assert citation_order(state) == {5: 1, 3: 2, 1: 3, 2: 4, 4: 5}
    numbered = number_by_citation(state)
    assert numbered["report"].startswith("Fifth fact [1]. Third fact [1, 2].")
    assert "x = data[3]" in numbered["report"]  # code, not a citation
    assert numbered["report"].endswith("## Sources\n\n- [1] [Source 5](<https://example.org/5>)\n"
                                       "- [2] [Source 3](<https://example.org/3>)\n")
    assert [(s["id"], s["title"]) for s in numbered["sources"]] == [
        (1, "Source 5"), (2, "Source 3"), (3, "Source 1"), (4, "Source 2"), (5, "Source 4")]
    assert [c["source_ids"] for c in numbered["citations"]] == [[1], [1, 2]]
    assert numbered["passages"] == {"2": [{"text": "three"}], "1": [{"text": "five"}]}
    assert numbered["excerpts"] == {"3": "one", "1": "five"}
    assert numbered["unsupported_sentences"][0]["source_ids"] == [1, 9]
    assert numbered["removed_citations"][0] | {"marker": "[2, 9]"} == numbered["removed_citations"][0]
    assert numbered["removed_citations"][0]["source_id"] == 9
    assert numbered["repeats_removed"][0]["text"] == "Fifth fact [1]."
    assert numbered["review"]["issues"] == ["the claim citing [1] is vague", "`list[3]` is code"]
    assert numbered["trace"] == state["trace"] and state["sources"] == SOURCES  # a copy; the state is left as it was
    assert number_by_citation(numbered) == numbered  # numbered state stays as it is


def test_a_report_already_in_order_is_left_as_it_is() -> None:
    state = _state("First [1]. Second [2]. Both [1-2].")
    assert number_by_citation(state) == state
    assert renumber_report(state["report"], {}) == state["report"]


def test_a_report_citing_nothing_keeps_the_order_found() -> None:
    state = _state("Nothing cited here.")
    assert citation_order(state) == {i: i for i in range(1, 6)}
    assert number_by_citation({"sources": []}) == {"sources": []}
