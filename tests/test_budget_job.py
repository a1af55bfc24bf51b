"""Per-job token/cost budget: a job that would pass it stops with a partial result and says so."""

from __future__ import annotations

from typing import Any

from conftest import ROOT

from providers.base import LLMConfig, LLMResponse, Message, TraceStep
from providers.testing import FakeLLM
from swarm.budget import BudgetedLLM, current_meter, job_tier
from swarm.config import BudgetSpec, load_config
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
    class Priced(FakeLLM):
        async def complete(self, messages: list[Message], config: LLMConfig) -> LLMResponse:
            response = await super().complete(messages, config)
            step = response.attempts[0].model_copy(update={"cost_usd": 0.03})
            return response.model_copy(update={"cost_usd": 0.03, "attempts": (step,)})

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
    assert TraceStep(step="x").outcome == "ok"


def test_job_tier_defaults_to_the_default_models_tier() -> None:
    cfg = load_config(ROOT / "config.yaml")
    assert job_tier(cfg, {}) == "balanced"  # deepseek-v3.1-q8 is in the balanced tier
    assert job_tier(cfg, {"tier": "fast"}) == "fast"
    assert cfg.budgets["fast"].max_tokens == 20000  # the shipped config.yaml sets budgets
