"""Per-job token/cost budget: a job that would pass it stops with a partial result and says so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from conftest import ROOT

from core.config import BudgetSpec, load_config
from graphs.budget import BudgetedLLM, current_meter, job_tier
from providers.base import LLMConfig, LLMResponse, Message, TraceStep
from providers.testing import FakeLLM
from swarm.dispatcher import dispatch

REJECT = {"approved": False, "score": 3, "issues": ["too short"], "suggestion": "longer"}
APPROVE = {"approved": True, "score": 9, "issues": [], "suggestion": ""}


def config_with_budget(tier: str = "balanced", **limits: Any) -> Any:
    base = load_config(ROOT / "config.yaml")
    return base.model_copy(update={"budgets": {tier: BudgetSpec(**limits)}})


def job(**extra: Any) -> dict[str, Any]:
    return {"project": "swarm", "action": "delegate", "input": {"task": "Write about rivers. " * 5, **extra}}


async def test_token_budget_stops_before_the_review_with_the_draft(make_context: Any) -> None:
    # the draft call uses ~20 input + 40 output words; the review prompt alone estimates past 60
    llm = FakeLLM(["word " * 40, APPROVE])
    result = await dispatch(job(), make_context(llm, config=config_with_budget(max_tokens=80)))
    assert result["status"] == "FAILED"
    assert result["error"]["type"] == "BudgetExceeded"
    assert "'review'" in result["error"]["message"] and "budgets.balanced" in result["error"]["message"]
    assert len(llm.calls) == 1  # the refused call was never made
    output = result["output"]
    assert output["partial"] is True and output["stopped_at"] == "review"
    assert output["text"].startswith("word word") and output["text_from"] == "draft"
    steps = [(s["step"], s["kind"], s["outcome"], s["provider"]) for s in result["trace"]]
    assert steps[0] == ("draft", "llm", "ok", "fake")
    assert ("review", "llm", "skipped", "budget") in steps
    assert steps[-1][0] == "dispatch"
    assert result["totals"]["output_tokens"] == 40
    # the finished draft node and its author are kept, as a failed chain keeps them
    assert ("draft", "node", "ok", "graph") in steps and output["model"] == "fake", (steps, output)


async def test_a_job_stopped_by_its_budget_is_stopped_again_when_resumed(make_context: Any) -> None:
    """The same job id run again resumed at review with a fresh meter and finished at twice its
    budget: a job that kept crashing had no cap at all."""
    llm = FakeLLM(["word " * 40, APPROVE, APPROVE])
    make = make_context(llm, config=config_with_budget(max_tokens=80))
    first = await dispatch({**job(), "job_id": "budget-resume-1"}, make)
    assert first["error"]["type"] == "BudgetExceeded" and len(llm.calls) == 1
    again = await dispatch({**job(), "job_id": "budget-resume-1"}, make)
    assert again["status"] == "FAILED" and again["error"]["type"] == "BudgetExceeded", again["status"]
    used = first["totals"]["input_tokens"] + first["totals"]["output_tokens"]
    assert f"({used} tokens used" in again["error"]["message"] and len(llm.calls) == 1  # the draft's, counted again


class Priced(FakeLLM):
    """A FakeLLM whose every answer is billed $0.03."""

    async def complete(self, messages: list[Message], config: LLMConfig) -> LLMResponse:
        response = await super().complete(messages, config)
        step = response.attempts[0].model_copy(update={"cost_usd": 0.03})
        return response.model_copy(update={"cost_usd": 0.03, "attempts": (step,)})


async def test_a_job_stopped_by_its_cost_budget_is_stopped_again_when_resumed(make_context: Any) -> None:
    """What the earlier run's calls cost counts on resume, as their tokens do: a resumed job with
    a fresh meter's $0 spent let the review through, past ``max_cost_usd``."""
    llm = Priced(["a draft", APPROVE, APPROVE])
    make = make_context(llm, config=config_with_budget(max_cost_usd=0.05))
    first = await dispatch({**job(), "job_id": "budget-resume-cost"}, make)
    assert first["error"]["type"] == "BudgetExceeded" and first["output"]["stopped_at"] == "review"
    assert len(llm.calls) == 1 and first["output"]["used"]["cost_usd"] == 0.03
    again = await dispatch({**job(), "job_id": "budget-resume-cost"}, make)
    assert again["status"] == "FAILED" and again["error"]["type"] == "BudgetExceeded", again["status"]
    assert "($0.0300 spent" in again["error"]["message"] and len(llm.calls) == 1  # the draft's cost, counted again


async def test_budget_stop_in_revise_keeps_node_steps(make_context: Any) -> None:
    llm = FakeLLM(["first draft", REJECT, "second draft", APPROVE])
    cfg = config_with_budget(max_tokens=170)
    result = await dispatch(job(), make_context(llm, config=cfg))
    assert result["error"]["type"] == "BudgetExceeded", result
    assert result["output"]["stopped_at"] == "revise" and result["output"]["text"] == "first draft"
    kinds = [(s["step"], s["kind"]) for s in result["trace"]]
    assert kinds[:4] == [("draft", "llm"), ("draft", "node"), ("review", "llm"), ("review", "node")]
    assert len(llm.calls) == 2


async def test_cost_budget_and_tier_from_input(make_context: Any) -> None:
    llm = Priced(["a draft", APPROVE])
    cfg = config_with_budget("fast", max_cost_usd=0.02)
    result = await dispatch(job(tier="fast"), make_context(llm, config=cfg))
    assert result["error"]["type"] == "BudgetExceeded" and "max_cost_usd 0.02" in result["error"]["message"]
    assert result["output"]["used"]["cost_usd"] == 0.03
    # the same job on a tier without a budget runs to the end
    result = await dispatch(job(tier="premium"), make_context(Priced(["a draft", APPROVE]), config=cfg))
    assert result["status"] == "COMPLETED"


async def test_within_budget_completes_unchanged(make_context: Any) -> None:
    result = await dispatch(job(), make_context(FakeLLM(["draft", APPROVE]), config=config_with_budget(max_tokens=10_000)))
    assert result["status"] == "COMPLETED"
    assert [s["outcome"] for s in result["trace"]] == ["ok"] * 5


async def test_wrapper_passes_through_outside_a_job() -> None:
    inner = FakeLLM(["x"])
    wrapped = BudgetedLLM(inner)
    assert current_meter.get() is None
    response = await wrapped.complete([Message(role="user", content="hi " * 10_000)], LLMConfig())
    assert response.text == "x" and wrapped.calls is inner.calls  # attributes reach the inner provider
    assert await wrapped.health_check() is True
    # the one call reached the inner provider as sent: no meter, so no estimate refused it
    assert inner.calls == [([Message(role="user", content="hi " * 10_000)], LLMConfig())]


def test_job_tier_defaults_to_the_default_models_tier() -> None:
    cfg = load_config(ROOT / "config.yaml")
    assert job_tier(cfg, {}) == "balanced"  # deepseek-v3.1-q8 is in the balanced tier
    assert job_tier(cfg, {"tier": "fast"}) == "fast"
    assert cfg.budgets["fast"].max_tokens == 20000  # the shipped config.yaml sets budgets


# --- research: a stop keeps what the searches and reads found ---------------------------------


def _research_context(tmp_path: Any, llm: Any, max_tokens: int) -> Any:
    from langgraph.checkpoint.memory import InMemorySaver

    from graphs.context import JobContext, Providers
    from providers.search.chain import SearchChain
    from providers.search.local_index import LocalIndexSearch

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "checkpoints.md").write_text(
        "# LangGraph checkpoints\n\nA checkpointer saves graph state after every step.\n", encoding="utf-8"
    )
    (corpus / "runpod.md").write_text("# RunPod job states\n\nJobs go IN_QUEUE, then COMPLETED.\n", encoding="utf-8")
    cfg = load_config(ROOT / "config.yaml", env={"SWARM_HOME": str(tmp_path / "home")})
    cfg = cfg.model_copy(update={"budgets": {"balanced": BudgetSpec(max_tokens=max_tokens)}})
    search = SearchChain([("local", LocalIndexSearch([corpus], tmp_path / "idx.sqlite"))])
    saver = InMemorySaver()

    async def make(job_id: str) -> JobContext:
        return JobContext(job_id=job_id, config=cfg, providers=Providers(cfg, {"llm": lambda: llm, "search": lambda: search}),
                          checkpointer=saver)

    return make


def _research_brain(messages: list[Message], config: LLMConfig) -> Any:
    if config.step == "plan":
        return {"queries": ["langgraph checkpoint", "runpod job states"]}
    if config.step in ("write", "revise"):
        return "Checkpoints save state after every step [1]. Jobs end COMPLETED [2]."
    return APPROVE


RESEARCH = {"project": "swarm", "action": "research", "input": {"question": "How do LangGraph checkpoints work?"}}


async def test_research_budget_stop_before_write_returns_the_sources_found(tmp_path: Any) -> None:
    from providers.testing import FunctionLLM

    llm = FunctionLLM(_research_brain)
    result = await dispatch(RESEARCH, _research_context(tmp_path, llm, max_tokens=300))  # the plan (~241 with its cap) fits, the write does not
    assert result["error"]["type"] == "BudgetExceeded" and "'write'" in result["error"]["message"], result["error"]
    output = result["output"]
    assert output["partial"] is True and output["stopped_at"] == "write" and output["report"] is None
    assert {Path(s["url"]).name for s in output["sources"]} == {"checkpoints.md", "runpod.md"}
    assert output["queries"][1:] == ["langgraph checkpoint", "runpod job states"]
    steps = [(s["step"], s["kind"], s["outcome"]) for s in result["trace"]]
    # every completed node's steps (searches and reads included), then the refused call
    assert steps[:2] == [("plan", "llm", "ok"), ("plan", "node", "ok")]
    assert sum(kind == "search" for _, kind, _ in steps) == 3 and ("read", "node", "ok") in steps
    assert steps[-2:] == [("write", "llm", "skipped"), ("dispatch", "node", "error")]
    assert len(steps) == len({json.dumps(s, sort_keys=True) for s in result["trace"]})  # no step twice
    assert result["totals"]["provider_calls"] >= 6


async def test_research_budget_stop_before_review_returns_the_checked_report(tmp_path: Any) -> None:
    from providers.testing import FunctionLLM

    llm = FunctionLLM(_research_brain)
    result = await dispatch(RESEARCH, _research_context(tmp_path, llm, max_tokens=520))
    assert result["error"]["type"] == "BudgetExceeded" and "'review'" in result["error"]["message"], result["error"]
    output = result["output"]
    assert output["stopped_at"] == "review" and output["report"].startswith("Checkpoints save state")
    assert [c["n"] if isinstance(c, dict) and "n" in c else c for c in output["citations"]]
    assert ("write", "llm", "ok") in [(s["step"], s["kind"], s["outcome"]) for s in result["trace"]]


async def test_research_writer_chain_exhausted_degrades_to_the_sources_found(tmp_path: Any) -> None:
    """Every writer model failing is not a failed job: the report lists the sources it found."""
    from core.errors import AllProvidersFailed
    from providers.testing import FunctionLLM

    def brain(messages: list[Message], config: LLMConfig) -> Any:
        if config.step == "write":
            raise AllProvidersFailed("llm", [TraceStep(step="write", provider="local", outcome="error",
                                                       error_class="ProviderUnavailable", detail="refused")])
        return _research_brain(messages, config)

    result = await dispatch(RESEARCH, _research_context(tmp_path, FunctionLLM(brain), max_tokens=100_000))
    assert result["status"] == "COMPLETED", result["error"]
    # the grounded extractive report stands in for the missing draft: the sources' own words, cited
    assert result["output"]["mode"] == "extractive"
    assert "A checkpointer saves graph state after every step [1]." in result["output"]["report"]
    assert "checkpoints.md" in result["output"]["report"] and len(result["output"]["sources"]) == 2
    assert ("write", "llm", "error") in [(s["step"], s["kind"], s["outcome"]) for s in result["trace"]]


async def test_a_tier_config_does_not_list_is_refused_naming_it(make_context: Any) -> None:
    """A config without ``premium`` ran a premium job on the fallback chain's models, said nowhere."""
    from core.config import SwarmConfig

    raw = load_config(ROOT / "config.yaml").model_dump()
    del raw["providers"]["llm"]["tiers"]["premium"]
    llm = FakeLLM(["a draft", APPROVE])
    result = await dispatch(job(tier="premium"), make_context(llm, config=SwarmConfig.model_validate(raw)))
    assert result["status"] == "FAILED" and result["error"]["type"] == "InputError" and llm.calls == []
    assert result["error"]["message"] == ("tier: tier 'premium' has no models in this config (providers.llm.tiers has"
                                          " fast, balanced); give one of those, or add it to config.yaml")


async def test_a_job_that_finished_past_its_budget_says_so(make_context: Any) -> None:
    """A call is let through on an estimate; what it then wrote took the job past max_tokens,
    and the job came back COMPLETED with no warning."""
    llm = FakeLLM(["word " * 60])
    result = await dispatch(job(kind="critical"), make_context(llm, config=config_with_budget(max_tokens=70)))
    assert result["status"] == "COMPLETED", result["error"]
    used = result["totals"]["input_tokens"] + result["totals"]["output_tokens"]
    assert used > 70
    assert any(w.startswith(f"the job used {used:,} tokens, over max_tokens 70 of budgets.balanced")
               for w in result["output"]["warnings"]), result["output"]
