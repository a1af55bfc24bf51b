"""At depth quick the writer sees the passage that answers the question: the excerpt budget is
divided by the sources read (3), not by every ranked one (6: 1000 characters each), and a passage
is ranked by how rare the question's words it holds are among the passages, so the words a whole
RunPod page shares ("runpod", "job") no longer tie its opening with its "Job states" section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_research_graph import _context

from graphs.research.action import ResearchInput, research
from graphs.research.passages import select_passages, split_passages
from graphs.research.stems import content_stems
from providers.base import LLMConfig, Message
from providers.search.chain import SearchChain
from providers.search.local_index import LocalIndexSearch
from providers.testing import FunctionLLM

CORPUS = Path(__file__).parents[1] / "docs" / "corpus"
QUESTION = "What job states does a RunPod Serverless job go through?"
PLAN = {"queries": ["runpod job states", "job status timeout"]}
ANSWER = "`IN_QUEUE` -> `IN_PROGRESS` -> one of `COMPLETED`"


def test_the_passage_with_the_rare_words_wins_a_small_budget() -> None:
    terms = set(content_stems(" ".join([QUESTION, *PLAN["queries"]])))
    every = split_passages((CORPUS / "runpod-serverless.md").read_text(encoding="utf-8"))
    chosen = select_passages(every, terms, 1000, "RunPod Serverless: jobs, states and limits")
    assert "Job states" in [p["heading"] for p in chosen], [p["heading"] for p in chosen]


async def test_a_quick_research_gives_the_writer_the_answering_passage(tmp_path: Path) -> None:
    prompts: list[str] = []

    def answer(messages: list[Message], config: LLMConfig) -> Any:
        if config.step == "plan":
            return PLAN
        if config.step == "write":
            prompts.append("\n".join(m.content for m in messages))
            return "RunPod jobs go through states [1]."
        return {"approved": True, "issues": []} if config.step == "review" else {"verdicts": []}

    search = SearchChain([("local", LocalIndexSearch([CORPUS], tmp_path / "idx.sqlite"))])
    ctx, _ = _context(tmp_path, FunctionLLM(answer, provider="deepseek"), search)
    result = await research(ResearchInput(question=QUESTION, depth="quick", mode="abstractive", max_sources=6), ctx)
    assert len(result["sources"]) == 6, result["sources"]  # 6 ranked, 3 read
    read = next(s for s in result["trace"] if s["step"] == "read" and s["kind"] == "node")
    assert read["detail"].startswith("read 3 of 6 sources"), read
    assert prompts and ANSWER in prompts[0], prompts[0][:3000]
    # each source read gets a third of the 6000 characters, not a sixth: the runpod page's excerpt
    # holds more than one sixth's worth around the answer
    start = prompts[0].index("A RunPod Serverless endpoint runs a worker image on demand")
    assert "Known SDK quirks" in prompts[0][start:] or "convenience server" in prompts[0][start:], prompts[0][start:start + 3000]
