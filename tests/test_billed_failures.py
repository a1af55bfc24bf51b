"""Tokens billed for a call that still failed (an empty answer, reasoning with no answer) are on
its trace step with their cost, in the job's totals and seen by its budget: the failed step
said "(120 input and 40 output tokens billed)" in its detail but counted 0 tokens and no cost,
so a job could spend past its budget on answers it threw away. litellm against loopback servers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fake_openai import Behaviour, FakeOpenAI, make_swarm_config

from core.config import BudgetSpec
from core.errors import AllProvidersFailed, BudgetExceeded
from graphs.budget import BudgetedLLM, job_scope
from providers.base import LLMConfig, Message
from providers.circuit import CircuitBoard
from providers.llm.router import build_llm_router
from swarm.dispatcher import dispatch

KEY_ENV = "SWARM_TEST_BILLED_KEY"
ASK = [Message(role="user", content="say hi")]
PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
#: what each failed call billed: the loopback fake's empty answer bills the prompt alone
BILLED_IN, BILLED_OUT = 120, 40
BILLED = {"empty": (BILLED_IN, 0), "reasoning": (BILLED_IN, BILLED_OUT)}


def cost(input_tokens: int, output_tokens: int) -> float:
    return (input_tokens * PRICE["input_per_mtok"] + output_tokens * PRICE["output_per_mtok"]) / 1e6


class _ReasoningOnly(BaseHTTPRequestHandler):
    """A chat completion whose message holds reasoning and no answer (a thinking model that ran
    out of tokens while thinking), with the usage it billed."""

    def do_POST(self) -> None:  # noqa: N802 - the http.server hook
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps({
            "id": "c1", "object": "chat.completion", "created": 1, "model": "thinker",
            "choices": [{"index": 0, "finish_reason": "length",
                         "message": {"role": "assistant", "content": "", "reasoning_content": "Let me think..."}}],
            "usage": {"prompt_tokens": BILLED_IN, "completion_tokens": BILLED_OUT, "total_tokens": BILLED_IN + BILLED_OUT},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    monkeypatch.setenv(KEY_ENV, "sk-billed-test-0123456789")
    with FakeOpenAI() as fake:
        fake.script("blank", Behaviour("empty", text="", prompt_tokens=BILLED_IN))
        yield fake


@pytest.fixture
def thinker() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _ReasoningOnly)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def spec(upstream: str, base: str, family: str) -> dict[str, Any]:
    return {"family": family, "litellm_model": f"openai/{upstream}", "api_base": base, "api_key_env": KEY_ENV,
            "timeout_s": 5, "price": PRICE}


def config(primary_base: str, upstream: str, server: FakeOpenAI, backup: str = "good") -> Any:
    return make_swarm_config({"primary": spec(upstream, primary_base, "first"),
                              "backup": spec(backup, f"{server.url}/v1", "second")}, fallback_chain=["backup"])


@pytest.mark.parametrize("case", ["empty", "reasoning"])
async def test_the_failed_step_carries_the_billed_tokens_and_cost(server: FakeOpenAI, thinker: str, case: str) -> None:
    base, upstream = (f"{server.url}/v1", "blank") if case == "empty" else (thinker, "thinker")
    cfg = config(base, upstream, server)
    router = build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard())
    answer = await router.complete(ASK, LLMConfig())
    failed, ok = answer.attempts
    assert (failed.model, failed.outcome, ok.model, ok.outcome) == ("primary", "error", "backup", "ok")
    said = "empty answer" if case == "empty" else "reasoning only, no answer"
    billed_in, billed_out = BILLED[case]
    assert f"{said} ({billed_in} input and {billed_out} output tokens billed)" in (failed.detail or "")
    assert (failed.input_tokens, failed.output_tokens) == (billed_in, billed_out)
    assert failed.cost_usd == pytest.approx(cost(billed_in, billed_out))


async def test_job_totals_count_what_a_failed_call_billed(server: FakeOpenAI, make_context: Any) -> None:
    cfg = config(f"{server.url}/v1", "blank", server)
    router = build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard())
    job = {"project": "swarm", "action": "delegate", "input": {"task": "Say hi.", "kind": "critical"}}
    result = await dispatch(job, make_context(router, config=cfg))
    assert result["status"] == "COMPLETED", result["error"]
    totals = result["totals"]
    assert totals["input_tokens"] == BILLED_IN + 11 and totals["output_tokens"] == 7  # + the backup's answer
    assert totals["cost_usd"] == pytest.approx(cost(BILLED_IN, 0) + cost(11, 7), abs=1e-6)


async def test_the_budget_sees_what_failed_calls_billed(server: FakeOpenAI) -> None:
    """Both models answered with nothing, billing 120 tokens each: with the next call's estimate
    (~50 tokens) that passes the 280-token budget, so the next call is refused before it is sent."""
    cfg = config(f"{server.url}/v1", "blank", server, backup="blank")
    cfg = cfg.model_copy(update={"budgets": {"balanced": BudgetSpec(max_tokens=280)}})
    llm = BudgetedLLM(build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard()))
    with job_scope(cfg, {}, {"tier": "balanced"}) as meter:
        with pytest.raises(AllProvidersFailed) as failed:
            await llm.complete(ASK, LLMConfig(max_tokens=50, step="draft"))
        assert [(a.input_tokens, a.output_tokens) for a in failed.value.attempts] == [(BILLED_IN, 0)] * 2
        assert meter.tokens == 2 * BILLED_IN and meter.cost_usd == pytest.approx(2 * cost(BILLED_IN, 0))
        sent = len(server.requests)
        with pytest.raises(BudgetExceeded, match="240 tokens used"):
            await llm.complete(ASK, LLMConfig(max_tokens=50, step="revise"))
        assert len(server.requests) == sent  # refused before any model was called


async def test_a_fallback_the_billed_attempt_before_it_leaves_no_room_for_is_not_sent(server: FakeOpenAI) -> None:
    """The budget was asked once per call: the primary's empty answer billed 120 tokens and the
    backup was sent all the same, past the 150-token budget. Now the fallback is asked for too."""
    cfg = config(f"{server.url}/v1", "blank", server)
    cfg = cfg.model_copy(update={"budgets": {"balanced": BudgetSpec(max_tokens=150)}})
    llm = BudgetedLLM(build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard()))
    with job_scope(cfg, {}, {"tier": "balanced"}) as meter:
        with pytest.raises(BudgetExceeded, match="'draft' call's fallback to backup") as stopped:
            await llm.complete(ASK, LLMConfig(max_tokens=50, step="draft"))
    assert [r.model for r in server.requests] == ["blank"]  # the backup ("good") was never asked
    assert "120 tokens used + ~52 for this call > max_tokens 150" in str(stopped.value)
    assert meter.tokens == BILLED_IN and stopped.value.partial["used"]["input_tokens"] == BILLED_IN
    assert [(s["model"], s["outcome"]) for s in stopped.value.trace] == [("primary", "error")]
    # room for it: the same chain falls over as before
    roomy = cfg.model_copy(update={"budgets": {"balanced": BudgetSpec(max_tokens=400)}})
    llm = BudgetedLLM(build_llm_router(roomy.providers.llm, roomy.models, circuits=CircuitBoard()))
    with job_scope(roomy, {}, {"tier": "balanced"}):
        answer = await llm.complete(ASK, LLMConfig(max_tokens=50, step="draft"))
    assert [(a.model, a.outcome) for a in answer.attempts] == [("primary", "error"), ("backup", "ok")]


def test_a_job_that_called_no_provider_cost_nothing_not_an_unknown_amount():
    """Walkthrough: an unknown model or bad base64 failed before any call, and said 'cost unknown'."""
    from swarm.dispatcher import totals_of

    refused = [{"step": "dispatch", "kind": "node", "outcome": "error"}]
    assert totals_of(refused)["cost_usd"] == 0.0 and totals_of([])["cost_usd"] == 0.0
    # a call whose price nobody knows keeps the total unknown; skipped providers were not called
    unpriced = [{"step": "draft", "kind": "llm", "outcome": "ok", "cost_usd": None},
                {"step": "draft", "kind": "llm", "outcome": "skipped", "cost_usd": None}]
    assert totals_of(unpriced)["cost_usd"] is None and totals_of(unpriced)["provider_calls"] == 1
    assert totals_of(unpriced[1:])["cost_usd"] == 0.0


async def test_a_job_stopped_before_a_fallback_keeps_the_billed_step_and_its_cost(server: FakeOpenAI,
                                                                                 make_context: Any) -> None:
    cfg = config(f"{server.url}/v1", "blank", server)
    cfg = cfg.model_copy(update={"budgets": {"balanced": BudgetSpec(max_tokens=150)}})
    router = build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard())
    job = {"project": "swarm", "action": "delegate", "input": {"task": "Say hi.", "kind": "critical", "tier": "balanced"}}
    result = await dispatch(job, make_context(router, config=cfg))
    assert result["status"] == "FAILED" and result["error"]["type"] == "BudgetExceeded", result["error"]
    assert "fallback to backup" in result["error"]["message"]
    billed = [s for s in result["trace"] if s.get("model") == "primary"]
    assert [(s["outcome"], s["input_tokens"]) for s in billed] == [("error", BILLED_IN)]
    assert result["totals"]["input_tokens"] == BILLED_IN and not server.requests_for("good")



async def test_a_consensus_position_stopped_before_its_fallback_keeps_the_billed_attempt(server: FakeOpenAI,
                                                                                        make_context: Any) -> None:
    """Review: the refused fallback's earlier billed attempt was in neither the trace nor the totals
    of a consensus job (the ask node read only a chain's attempts), while the meter counted it."""
    cfg = config(f"{server.url}/v1", "blank", server)
    cfg = cfg.model_copy(update={"budgets": {"balanced": BudgetSpec(max_tokens=150)}})
    router = build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard())
    job = {"project": "swarm", "action": "consensus",
           "input": {"question": "Say hi?", "tier": "balanced", "models": ["primary"]}}
    result = await dispatch(job, make_context(router, config=cfg))
    billed = [s for s in result["trace"] if s.get("model") == "primary" and s.get("kind") == "llm"]
    assert [(s["outcome"], s["input_tokens"]) for s in billed] == [("error", BILLED_IN)], result["trace"]
    assert result["totals"]["input_tokens"] == BILLED_IN and not server.requests_for("good")
