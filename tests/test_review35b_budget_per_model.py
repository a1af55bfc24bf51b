"""The job's budget is checked before each model a call asks, with what that model really gets.

A model that always thinks (Claude Opus 5.5) is sent its own ``max_output_tokens`` (16,384), not the
caller's 300; the budget's one check before the call counted the caller's 300, at the job's observed
cost per token ($0 before its first call), so a premium job asked for a 300-token plan could be
billed 16k tokens at $20/M without the check seeing it. Now the router asks the job's budget before
each model, with the cap it sends and its price in config: one that could pass it is passed over
(``skip: over_budget``) for a cheaper one later in the chain; when none is left, ``BudgetExceeded``.
litellm against a loopback Anthropic Messages API and a loopback OpenAI-compatible server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fake_openai import Behaviour, FakeOpenAI, make_swarm_config
from loopback_http import LoopbackHTTP, QuietHandler, read_json, send_json

from core.config import BudgetSpec, load_config
from core.errors import BudgetExceeded
from graphs.budget import BudgetedLLM, add_refused_call, job_scope
from mcp_server.outputs import TraceStepOut
from providers.base import LLMConfig, Message
from providers.circuit import CircuitBoard
from providers.llm.router import build_llm_router
from swarm.dispatcher import dispatch

KEY = "sk-ant-test-0000-budget35b"
CHEAP_KEY_ENV = "SWARM_TEST_CHEAP_KEY"
ASK = [Message(role="user", content="Plan three searches about rivers.")]
#: what the loopback Opus thinks on every call, whatever it was asked for (adaptive)
THOUGHT = 6000


class Messages(LoopbackHTTP):
    """A loopback Anthropic Messages API that thinks ``THOUGHT`` tokens, then answers."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = read_json(self)
                outer.bodies.append(body)
                used = min(int(body.get("max_tokens") or 1), THOUGHT + 20)
                send_json(self, 200, {
                    "id": "msg_1", "type": "message", "role": "assistant", "model": body.get("model"),
                    "content": [{"type": "thinking", "thinking": "Consider.", "signature": "s"},
                                {"type": "text", "text": "OPUS ANSWER"}],
                    "stop_reason": "end_turn", "stop_sequence": None,
                    "usage": {"input_tokens": 40, "output_tokens": used},
                })

        super().__init__(Handler, root="")


@pytest.fixture
def anthropic(monkeypatch: pytest.MonkeyPatch) -> Iterator[Messages]:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv(CHEAP_KEY_ENV, "sk-cheap-test-0123456789")
    server = Messages()
    yield server
    server.close()


@pytest.fixture
def cheap() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        fake.script("cheap", Behaviour.answer("CHEAP ANSWER", prompt_tokens=40, completion_tokens=30))
        yield fake


def shipped(name: str, base: str) -> dict[str, Any]:
    """``name``'s entry of the shipped config.yaml, at the loopback ``base``."""
    return {**load_config().models[name].model_dump(exclude_unset=True), "api_base": base}


def premium(anthropic: Messages, cheap: FakeOpenAI, budget: BudgetSpec, *names: str) -> Any:
    """A premium tier of the shipped Claude 5.5 models ``names``, then a cheap priced model."""
    models = {name: shipped(name, anthropic.url) for name in names}
    models["cheap"] = {"family": "cheapo", "litellm_model": "openai/cheap", "api_base": f"{cheap.url}/v1",
                       "api_key_env": CHEAP_KEY_ENV, "timeout_s": 10,
                       "price": {"input_per_mtok": 0.1, "output_per_mtok": 0.2}}
    cfg = make_swarm_config(models, tiers={"premium": [*names, "cheap"]})
    return cfg.model_copy(update={"budgets": {"premium": budget}})


def budgeted(cfg: Any) -> BudgetedLLM:
    return BudgetedLLM(build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard()))


async def test_a_model_whose_own_cap_would_pass_the_budget_is_passed_over_for_a_cheaper_one(
        anthropic: Messages, cheap: FakeOpenAI) -> None:
    """$0.10 left: Opus may write 16,384 tokens at $20/M ($0.33), whatever the caller's 300 says."""
    cfg = premium(anthropic, cheap, BudgetSpec(max_cost_usd=0.10), "claude-opus-5-5")
    llm = budgeted(cfg)
    with job_scope(cfg, {}, {"tier": "premium"}) as meter:
        answer = await llm.complete(ASK, LLMConfig(tier="premium", max_tokens=300, step="plan"))
    assert answer.text == "CHEAP ANSWER" and answer.model == "cheap"
    assert anthropic.bodies == []  # Opus was never sent the call
    skipped, ok = answer.attempts
    assert (skipped.model, skipped.outcome, skipped.skip) == ("claude-opus-5-5", "skipped", "over_budget")
    assert "16384 output tokens" in (skipped.detail or "") and "max_cost_usd 0.1" in (skipped.detail or "")
    assert (ok.model, ok.outcome) == ("cheap", "ok")
    assert meter.cost_usd < 0.10 and meter.past_budget() is None
    # a skip for the budget is no failure of the model: its circuit stays closed
    assert llm.inner.circuits.state("claude-opus-5-5") == "closed"
    # room for its own cap ($1.00): Opus is asked, with that cap, and bills past the caller's 300
    roomy = premium(anthropic, cheap, BudgetSpec(max_cost_usd=1.00), "claude-opus-5-5")
    with job_scope(roomy, {}, {"tier": "premium"}) as meter:
        answer = await budgeted(roomy).complete(ASK, LLMConfig(tier="premium", max_tokens=300, step="plan"))
    assert answer.model == "claude-opus-5-5" and [b["max_tokens"] for b in anthropic.bodies] == [16384]
    assert meter.output_tokens > 300 and len(cheap.requests) == 1  # the first call's


async def test_a_thinking_budget_on_top_of_the_callers_cap_counts_against_the_token_budget(
        cheap: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model with ``reasoning_effort: high`` is sent the caller's 300 tokens plus 4,096 to think:
    a 2,000-token budget holds the 300 the check counted, not the 4,396 it asks for."""
    monkeypatch.setenv(CHEAP_KEY_ENV, "sk-cheap-test-0123456789")
    base = {"api_base": f"{cheap.url}/v1", "api_key_env": CHEAP_KEY_ENV, "timeout_s": 10}
    cfg = make_swarm_config({
        "thinker": {"family": "deep", "litellm_model": "openai/thinker", "max_output_tokens": 8192,
                    "extra_params": {"reasoning_effort": "high"}, **base},
        "cheap": {"family": "cheapo", "litellm_model": "openai/cheap", **base},
    }, tiers={"balanced": ["thinker", "cheap"]})
    cfg = cfg.model_copy(update={"budgets": {"balanced": BudgetSpec(max_tokens=2000)}})
    with job_scope(cfg, {}, {"tier": "balanced"}):
        answer = await budgeted(cfg).complete(ASK, LLMConfig(tier="balanced", max_tokens=300, step="plan"))
    assert answer.model == "cheap" and [r.model for r in cheap.requests] == ["cheap"]
    skipped = answer.attempts[0]
    assert (skipped.model, skipped.skip) == ("thinker", "over_budget")
    assert "~4405 for this call > max_tokens 2000" in (skipped.detail or ""), skipped.detail


async def test_when_every_model_would_pass_the_budget_the_call_stops_with_each_reason(
        anthropic: Messages, cheap: FakeOpenAI) -> None:
    """$0.05 holds neither Opus (16,384 tokens at $20/M) nor Sonnet (8,192 at $10/M): the call is
    refused before any model is sent it, with each model's reason, and the trace says both."""
    cfg = premium(anthropic, cheap, BudgetSpec(max_cost_usd=0.05), "claude-opus-5-5", "claude-sonnet-5-5")
    cfg = cfg.model_copy(update={"providers": cfg.providers.model_copy(update={"llm": cfg.providers.llm.model_copy(
        update={"tiers": {"premium": ["claude-opus-5-5", "claude-sonnet-5-5"]}})})})
    with job_scope(cfg, {}, {"tier": "premium"}), pytest.raises(BudgetExceeded) as stopped:
        await budgeted(cfg).complete(ASK, LLMConfig(tier="premium", max_tokens=300, step="plan"))
    assert anthropic.bodies == [] and not cheap.requests
    message = str(stopped.value)
    assert "stopped before the 'plan' call" in message and "budgets.premium" in message
    assert "claude-opus-5-5: " in message and "claude-sonnet-5-5: " in message, message
    assert stopped.value.partial is not None and stopped.value.partial["partial"] is True
    result: dict[str, Any] = {"trace": []}
    add_refused_call(result, stopped.value)
    steps = [TraceStepOut.model_validate(s) for s in result["trace"]]  # as the MCP output carries them
    assert [(s.model, s.skip) for s in steps if s.skip] == [("claude-opus-5-5", "over_budget"),
                                                             ("claude-sonnet-5-5", "over_budget")]
    assert steps[-1].provider == "budget" and steps[-1].error_class == "BudgetExceeded"


async def test_a_job_passes_over_a_model_its_price_leaves_no_room_for(anthropic: Messages, cheap: FakeOpenAI,
                                                                      make_context: Any) -> None:
    """A premium delegation with $0.002 to spend: Opus's price for the draft's input alone passes it
    ($4/M over ~1,000 tokens), while the job's cost per token so far ($0: no call yet) said it was
    free. The cheap model drafts; the job's trace (the MCP result's) says why Opus was not asked."""
    cfg = premium(anthropic, cheap, BudgetSpec(max_cost_usd=0.002), "claude-opus-5-5")
    job = {"project": "swarm", "action": "delegate",
           "input": {"task": "Summarise why rivers meander. " * 140, "kind": "critical", "tier": "premium"}}
    router = build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard())
    result = await dispatch(job, make_context(router, config=cfg))
    assert result["status"] == "COMPLETED", result["error"]
    assert anthropic.bodies == [] and "CHEAP ANSWER" in json.dumps(result["output"])
    opus = [s for s in result["trace"] if s.get("model") == "claude-opus-5-5"]
    assert [(s["outcome"], s["skip"]) for s in opus] == [("skipped", "over_budget")], opus
    assert "max_cost_usd 0.002" in opus[0]["detail"]
