"""A chain's all-fail and partial-result paths, through litellm against the loopback fake: every
attempt listed in order with its reason and latency, the key masked; a body that is not JSON under
HTTP 200 said as what it was, not as litellm's made-up "HTTP 500"; a delegation whose reviewers all
failed says, where the caller reads (``warnings``), that its answer is unreviewed; and a consensus
member whose stand-in is not counted twice says why it gave no answer."""

from __future__ import annotations

from typing import Any

import pytest
from fake_openai import Behaviour, FakeOpenAI, RefusedPort, make_swarm_config

from core.config import SwarmConfig
from core.errors import AllProvidersFailed
from graphs.context import JobContext, Providers
from providers.base import LLMConfig, Message
from providers.circuit import CircuitBoard
from providers.llm.router import build_llm_router
from swarm.dispatcher import dispatch

#: the shape of an OpenAI project key, as an upstream's error body may echo it
KEY = "sk-proj-" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0"
ASK = [Message(role="user", content="hi")]


class KeyEchoing(FakeOpenAI):
    """The fake, whose ``leaky`` model fails with HTTP 500 and a body that holds a key."""

    async def _respond(self, how: Behaviour, model: str, body: dict[str, Any], request_key: str = "",
                       recorded: Any = None) -> Any:
        from starlette.responses import JSONResponse

        if model == "leaky":
            return JSONResponse({"error": {"message": f"upstream exploded using {KEY}"}}, status_code=500)
        return await super()._respond(how, model, body, request_key, recorded)


def _spec(base: str, upstream: str, timeout_s: float = 5) -> dict[str, Any]:
    return {"family": f"fam-{upstream}", "litellm_model": f"openai/{upstream}", "api_base": f"{base}/v1",
            "timeout_s": timeout_s}


def _models(server: FakeOpenAI, names: dict[str, str]) -> dict[str, Any]:
    return {name: {**_spec(server.url, upstream), "family": name} for name, upstream in names.items()}


def _context(config: SwarmConfig) -> Any:
    router = build_llm_router(config.providers.llm, config.models, circuits=CircuitBoard())

    async def make(job_id: str) -> JobContext:
        return JobContext(job_id=job_id, config=config, providers=Providers(config, {"llm": lambda: router}))

    return make


async def test_a_chain_that_failed_three_ways_lists_each_attempt_in_order_with_the_key_masked() -> None:
    with KeyEchoing() as server, RefusedPort() as refused:
        models = {"first": _spec(refused.url, "x"), "second": _spec(server.url, "leaky"),
                  "third": _spec(server.url, "hang", timeout_s=1)}
        cfg = make_swarm_config(models, default="first", fallback_chain=["second", "third", "second"])
        router = build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard())
        with pytest.raises(AllProvidersFailed) as raised:
            await router.complete(ASK, LLMConfig())
    error = raised.value
    said = error.to_dict()
    assert KEY not in str(said) and "[REDACTED]" in said["message"], said
    steps = [(a["provider"], a["model"], a["error_class"]) for a in said["attempts"]]
    assert steps == [("fam-x", "first", "ProviderUnavailable"), ("fam-leaky", "second", "ProviderUnavailable"),
                     ("fam-hang", "third", "ProviderTimeout")]  # the same model twice is asked once
    assert "cannot connect" in said["attempts"][0]["detail"] and "HTTP 500" in said["attempts"][1]["detail"]
    assert said["attempts"][2]["latency_ms"] >= 900 and "no answer within 1 s" in said["attempts"][2]["detail"]
    message = said["message"]
    assert message.index("first:") < message.index("second:") < message.index("third:")


async def test_a_body_that_is_not_json_under_http_200_is_an_unreadable_answer_not_an_http_500() -> None:
    """The OpenAI-compatible path read "HTTP 500: ... Expecting property name enclosed in double
    quotes": a status the server never sent, where Claude's and Gemini's read "unreadable answer"."""
    with FakeOpenAI() as server:
        cfg = make_swarm_config({"proxy": _spec(server.url, "malformed"), "good": _spec(server.url, "fine")},
                                default="proxy", fallback_chain=["good"])
        router = build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard())
        answer = await router.complete(ASK, LLMConfig())
    assert answer.model == "good" and answer.text == "ok from fine"  # fallen over, not passed on
    failed = answer.attempts[0]
    assert failed.model == "proxy" and failed.outcome == "error" and failed.error_class == "ProviderUnavailable"
    assert failed.detail is not None and failed.detail.startswith("unreadable answer: "), failed.detail
    assert "HTTP 500" not in failed.detail, failed.detail


async def test_a_delegation_whose_reviewers_all_failed_warns_that_its_answer_is_unreviewed() -> None:
    """The draft came back COMPLETED with ``warnings: []``: the CLI printed it as if reviewed."""
    with FakeOpenAI() as server:
        server.script("ds", Behaviour.answer("the draft text"), Behaviour.fail(500))
        server.script("cl", Behaviour.fail(500))
        server.script("small", Behaviour.fail(503))
        config = SwarmConfig.model_validate({
            "providers": {"llm": {"default": "ds-chat", "tiers": {"balanced": ["ds-chat"]},
                                  "fallback_chain": ["cl-sonnet", "local"]}},
            "models": _models(server, {"ds-chat": "ds", "cl-sonnet": "cl", "local": "small"}),
            "routing": {"delegation": {"critical": {"primary": "ds-chat", "reviewer": "cl-sonnet"}}},
        })
        job = {"project": "swarm", "action": "delegate", "input": {"task": "write", "kind": "critical"}}
        result = await dispatch(job, _context(config))
    assert result["status"] == "COMPLETED", result["error"]
    output = result["output"]
    assert output["text"] == "the draft text" and output["review"]["status"] == "unavailable"
    [warning] = [w for w in output["warnings"] if "unreviewed" in w]
    assert warning.startswith("no review; the answer stands unreviewed"), warning
    # the trace holds both steps: the draft that answered, then every reviewer that failed
    steps = [(s["step"], s["kind"], s.get("model"), s["outcome"]) for s in result["trace"]]
    assert steps[:2] == [("draft", "llm", "ds-chat", "ok"), ("draft", "node", None, "ok")]
    assert [s[2] for s in steps if s[:2] == ("review", "llm")] == ["cl-sonnet", "local", "ds-chat"]
    assert ("review", "node", None, "error") in steps


async def test_a_consensus_member_whose_stand_in_is_not_counted_twice_says_why_it_gave_no_answer() -> None:
    """Two of three failed (HTTP 500), the one that answered stood in for both: their ``failed``
    entries read "mb gave no answer", why only in the trace."""
    with FakeOpenAI() as server:
        server.script("b", Behaviour.fail(500))
        server.script("c", Behaviour.fail(503))
        config = SwarmConfig.model_validate({
            "providers": {"llm": {"default": "ma", "tiers": {"balanced": ["ma"]}, "fallback_chain": []}},
            "models": _models(server, {"ma": "a", "mb": "b", "mc": "c"}),
            "routing": {"delegation": {"critical": {"primary": "ma", "reviewer": None}},
                        "consensus": {"models": ["ma", "mb", "mc"], "synthesizer": "ma"}},
        })
        job = {"project": "swarm", "action": "consensus", "input": {"question": "ship on Friday?"}}
        result = await dispatch(job, _context(config))
    assert result["status"] == "COMPLETED", result["error"]
    output = result["output"]
    assert [p["model"] for p in output["positions"]] == ["ma"] and output["synthesis"] == "ok from a"
    assert any("only one of 3 models answered" in w for w in output["warnings"]), output["warnings"]
    failed = {f["asked"]: f["error"] for f in output["failed"]}
    assert set(failed) == {"mb", "mc"}
    assert "mb: ProviderUnavailable HTTP 500" in failed["mb"], failed["mb"]
    assert "mc: ProviderUnavailable HTTP 503" in failed["mc"], failed["mc"]


PRICE = {"input_per_mtok": 1000.0, "output_per_mtok": 2000.0}


class ToolCalling(FakeOpenAI):
    """The fake, whose ``tool`` model answers with a tool call and no text (none was offered)."""

    async def _respond(self, how: Behaviour, model: str, body: dict[str, Any], request_key: str = "",
                       recorded: Any = None) -> Any:
        from starlette.responses import JSONResponse

        if model == "tool":
            call = {"id": "c1", "type": "function", "function": {"name": "search", "arguments": "{}"}}
            return JSONResponse({
                "id": "x", "object": "chat.completion", "created": 1, "model": model,
                "choices": [{"index": 0, "finish_reason": "tool_calls",
                             "message": {"role": "assistant", "content": None, "tool_calls": [call]}}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})
        return await super()._respond(how, model, body, request_key, recorded)


async def test_a_stream_cut_off_by_its_timeout_midway_keeps_what_it_was_billed() -> None:
    """A streamed answer (``stop_on_loop``) that timed out after 8 tokens read 0 tokens and an
    unknown cost on its failed step: the job's totals and budget never saw what it was billed."""
    with FakeOpenAI() as server:
        server.script("slow", Behaviour.answer(" ".join(f"w{i}" for i in range(100)), token_delay_s=0.1))
        models = {"streamer": {**_spec(server.url, "slow", timeout_s=1), "stop_on_loop": True, "price": PRICE},
                  "good": _spec(server.url, "fine")}
        cfg = make_swarm_config(models, default="streamer", fallback_chain=["good"])
        router = build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard())
        answer = await router.complete(ASK, LLMConfig())
        [request] = server.requests_for("slow")
    failed = answer.attempts[0]
    assert failed.model == "streamer" and failed.error_class == "ProviderTimeout"
    assert request.chunks_sent >= 3 and failed.output_tokens == request.chunks_sent, (failed, request.chunks_sent)
    assert failed.input_tokens > 0 and failed.cost_usd is not None and failed.cost_usd > 0, failed
    assert answer.model == "good"


async def test_a_tool_call_with_no_text_is_said_as_one_and_fallen_over() -> None:
    """No tools are offered: a model that calls one anyway read "empty answer"."""
    with ToolCalling() as server:
        models = {"caller": {**_spec(server.url, "tool"), "price": PRICE}, "good": _spec(server.url, "fine")}
        cfg = make_swarm_config(models, default="caller", fallback_chain=["good"])
        router = build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard())
        answer = await router.complete(ASK, LLMConfig())
    failed = answer.attempts[0]
    assert answer.model == "good" and failed.model == "caller" and failed.outcome == "error"
    assert failed.detail is not None and failed.detail.startswith("tool calls only, no answer"), failed.detail
    assert (failed.input_tokens, failed.output_tokens) == (10, 5) and failed.cost_usd == pytest.approx(0.02)
