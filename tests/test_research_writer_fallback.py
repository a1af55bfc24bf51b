"""Who writes a research report in auto mode when a model fails, and what the result says of it:
a reviewer's DeepSeek 503 on the plan made the whole report quotes ("the writer would be the local
model", a writer never asked), a failed write gave quotes with no warning, and a revision the
local model answered threw away a draft that had passed the check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_research_graph import _context, _local_chain

from core.config import DEFAULT_CONFIG_PATH, load_config
from core.errors import ProviderUnavailable
from graphs.research.action import ResearchInput, research
from providers.base import LLMConfig, Message
from providers.circuit import CircuitBoard
from providers.llm.router import LLMRouter
from providers.testing import FunctionLLM

QUESTION = "How do LangGraph checkpoints resume a run?"
DRAFT = "A checkpointer saves graph state after every step [1]. With durability sync a resumed run re-runs only the interrupted node [1]."
PLAN = {"queries": ["langgraph checkpoint durability"]}


def _router(tmp_path: Path, deepseek_fails: set[str], reviews: list[dict[str, Any]],
            draft: str = DRAFT) -> tuple[LLMRouter, list[tuple[str, str]]]:
    """DeepSeek (its key set) fails the steps named; every other keyed model is unset; local answers."""
    config = load_config(DEFAULT_CONFIG_PATH, env={"SWARM_HOME": str(tmp_path / "home")})
    calls: list[tuple[str, str]] = []

    def model(name: str) -> FunctionLLM:
        def answer(messages: list[Message], llm_config: LLMConfig) -> Any:
            calls.append((name, llm_config.step))
            if name.startswith("deepseek") and llm_config.step in deepseek_fails:
                raise ProviderUnavailable("deepseek", "HTTP 503: busy", model=name)
            if llm_config.step == "plan":
                return PLAN
            if llm_config.step in ("write", "revise"):
                return draft if name.startswith("deepseek") else "a local draft"
            if llm_config.step == "review":
                return reviews.pop(0) if len(reviews) > 1 else reviews[0]
            return {"verdicts": []}

        return FunctionLLM(answer, model=name, provider=config.models[name].family)

    return LLMRouter(config.providers.llm, config.models, {n: model(n) for n in config.models}, CircuitBoard()), calls


@pytest.fixture(autouse=True)
def _deepseek_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-test-0123456789abcdef")
    for name in ("GEMINI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)


async def test_a_plan_that_fell_to_the_local_model_once_still_lets_deepseek_write(corpus: Path, tmp_path: Path) -> None:
    router, calls = _router(tmp_path, {"plan"}, [{"approved": True, "issues": []}])
    ctx, _ = _context(tmp_path, router, _local_chain(corpus, tmp_path))
    result = await research(ResearchInput(question=QUESTION, mode="auto"), ctx)
    # the planner's chain ends before the local model (its plans are unusable): the question is searched
    assert ("local", "plan") not in calls and ("deepseek-v3.1-q8", "write") in calls, calls
    assert result["mode"] == "abstractive" and result["written_by"] == "deepseek-v3.1-q8", result["warnings"]
    plan = next(s for s in result["trace"] if s["step"] == "plan" and s["kind"] == "node")
    assert "deepseek-v3.1-q8: ProviderUnavailable; local not asked" in plan["detail"], plan


async def test_a_write_that_only_the_local_model_answered_says_why_the_report_quotes(corpus: Path, tmp_path: Path) -> None:
    router, calls = _router(tmp_path, {"write"}, [{"approved": True, "issues": []}])
    ctx, _ = _context(tmp_path, router, _local_chain(corpus, tmp_path))
    result = await research(ResearchInput(question=QUESTION, mode="auto"), ctx)
    assert ("local", "write") not in calls and result["mode"] == "extractive"  # its report would be quoted over
    assert any("in auto mode a model writes the report, but no model could write it (deepseek-v3.1-q8: ProviderUnavailable"
               in w for w in result["warnings"]), result["warnings"]


async def test_a_revision_only_the_local_model_answered_leaves_the_checked_draft(corpus: Path, tmp_path: Path) -> None:
    reviews = [{"approved": False, "issues": ["say more"], "suggestion": "longer"}, {"approved": True, "issues": []}]
    router, calls = _router(tmp_path, {"revise"}, reviews)
    ctx, _ = _context(tmp_path, router, _local_chain(corpus, tmp_path))
    result = await research(ResearchInput(question=QUESTION, mode="auto"), ctx)
    assert ("local", "revise") not in calls, calls  # auto mode would not keep its revision
    assert result["mode"] == "abstractive" and "after every step [1]" in result["report"], result["report"]
    assert any(w.startswith("the revision could not be written (deepseek-v3.1-q8: ProviderUnavailable")
               for w in result["warnings"]), result["warnings"]
    # the same text is not checked and reviewed again, nor revised again: one review call was paid
    assert [c for c in calls if c[1] == "review"] == [("deepseek-v3.1-q8", "review")], calls
    assert [c[1] for c in calls].count("revise") == 1  # deepseek's failed try; the local model is not asked


async def test_the_reviewer_is_not_paid_for_in_place_of_claude_when_claude_cannot_be_asked(
        corpus: Path, tmp_path: Path) -> None:
    """DeepSeek-only: the entailment call skipped Claude (its key unset), DeepSeek answered and was
    billed, and its verdicts were thrown away as another family's."""
    undecided = ("A checkpointer saves graph state after every step, with every tool output and user message kept"
                 " in a durable database for auditing [1].")
    router, calls = _router(tmp_path, set(), [{"approved": True, "issues": []}], draft=f"{DRAFT} {undecided}")
    ctx, _ = _context(tmp_path, router, _local_chain(corpus, tmp_path))
    result = await research(ResearchInput(question=QUESTION, mode="abstractive"), ctx)
    assert not [c for c in calls if c[1] == "entail"], calls
    entail = next(s for s in result["trace"] if s["step"] == "entail" and s["kind"] == "node")
    assert entail["outcome"] == "skipped" and "the reviewer claude cannot be asked now (claude-sonnet-5-5: ANTHROPIC_API_KEY is not set)" in entail["detail"], entail
    assert result["grounding"]["undecided"] >= 1


async def test_a_research_review_by_the_writers_own_family_is_said_to_be_one(
        corpus: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DeepSeek reviewed its own report unlabelled, Gemini passed over though its key was set."""
    router, calls = _router(tmp_path, set(), [{"approved": True, "issues": []}])
    ctx, _ = _context(tmp_path, router, _local_chain(corpus, tmp_path))
    result = await research(ResearchInput(question=QUESTION, mode="abstractive"), ctx)
    review = result["review"]
    assert review["reviewer"] == "deepseek-v3.1-q8" and review["self_review"] is True, review
    assert "no independent review" in review["note"]

    monkeypatch.setenv("GEMINI_API_KEY", "AIza-test-0123456789abcdef")
    router, calls = _router(tmp_path, set(), [{"approved": True, "issues": []}])
    ctx, _ = _context(tmp_path, router, _local_chain(corpus, tmp_path), job_id="job-2")
    result = await research(ResearchInput(question=QUESTION, mode="abstractive"), ctx)
    assert ("gemini-2.5-flash-lite", "review") in calls and "self_review" not in result["review"], calls


async def test_a_draft_cut_at_its_token_limit_is_said_to_be(corpus: Path, tmp_path: Path) -> None:
    """A draft cut at the writer's token limit: its unfinished end read as "states a fact without
    citing a source", and nothing said it was cut (delegate says it)."""
    from providers.base import LLMResponse, TraceStep

    def answer(messages: list[Message], llm_config: LLMConfig) -> Any:
        if llm_config.step == "plan":
            return PLAN
        if llm_config.step == "write":
            step = TraceStep(step="write", provider="deepseek", model="deepseek-v3.1-q8", latency_ms=1.0)
            return LLMResponse.from_step(f"{DRAFT} Set `server.limiter:", step, finish_reason="length")
        return {"approved": True, "issues": []} if llm_config.step == "review" else {"verdicts": []}

    ctx, _ = _context(tmp_path, FunctionLLM(answer, provider="deepseek"), _local_chain(corpus, tmp_path))
    result = await research(ResearchInput(question=QUESTION, mode="abstractive"), ctx)
    assert any("the written draft was cut at its token limit" in w for w in result["warnings"]), result["warnings"]
    write = next(s for s in result["trace"] if s["step"] == "write" and s["kind"] == "node")
    assert "token limit" in write["detail"], write
