"""The shipped config asks Anthropic for models its API still serves, in the way they accept.

Anthropic retired Claude Sonnet 4.5 on 2026-11-30 (the balanced tier, the `claude` family of every
fallback chain, the reviewer of two delegation kinds and the consensus synthesizer) and deprecated
Opus 4.5 (the premium tier) on 2026-11-23. Their successors, Sonnet 5.5 and Opus 5.5, think on every
call and answer HTTP 400 to a temperature or top_p other than the default, and to a thinking budget:
the shipped Opus entry sent both, and every call sent the caller's temperature (0.2, or 0.0 for a
review). Checked through litellm's real Anthropic route against a loopback Messages API.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from typing import Any

import pytest
from test_review33l_usage_truth import Upstream

from core.config import SwarmConfig, load_config
from core.errors import ConfigError
from providers.base import LLMConfig, Message
from providers.llm.litellm_backend import LiteLLMModel

ASK = [Message(role="user", content="Is the sky blue? Answer in one word.")]
SCHEMA = {"type": "object", "properties": {"verdict": {"type": "string"}}, "required": ["verdict"],
          "additionalProperties": False}


@pytest.fixture(autouse=True)
def anthropic_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-0000-claude55")


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


def messages_api(text: str) -> Any:
    """Anthropic's answer with adaptive thinking on: a thinking block, then the text."""
    def reply(path: str, body: dict[str, Any]) -> dict[str, Any]:
        assert path.endswith("/v1/messages"), path
        return {"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
                "content": [{"type": "thinking", "thinking": "The sky scatters blue light.", "signature": "sig"},
                            {"type": "text", "text": text}],
                "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": 30, "output_tokens": 40}}
    return reply


def shipped(name: str, base: str) -> LiteLLMModel:
    spec = load_config().models[name]
    return LiteLLMModel(name, spec.model_copy(update={"api_base": base}))


@pytest.mark.parametrize(("name", "served", "effort", "price"), [
    ("claude-sonnet-5-5", "claude-sonnet-5-5", "medium", (2.0, 10.0)),
    ("claude-opus-5-5", "claude-opus-5-5", "high", (4.0, 20.0)),
], ids=["sonnet", "opus"])
async def test_the_shipped_claude_models_are_asked_in_the_way_they_accept(
        upstream: Upstream, name: str, served: str, effort: str, price: tuple[float, float]) -> None:
    upstream.reply = messages_api("Yes.")
    llm = shipped(name, upstream.url)
    answer = await llm.complete(ASK, LLMConfig(temperature=0.0, max_tokens=64))
    assert answer.text == "Yes."  # the thinking block is not the answer
    body = upstream.bodies[-1]
    assert body["model"] == served
    # a non-default temperature or top_p, or a thinking budget, is a 400 on these models
    assert not {"temperature", "top_p", "top_k"} & set(body), body
    assert body["thinking"]["type"] == "adaptive" and "budget_tokens" not in body["thinking"], body
    assert body["output_config"] == {"effort": effort}, body
    assert body["messages"][-1]["role"] == "user"  # no assistant prefill (also a 400)
    # the caller's 64 tokens of answer get the effort's thinking on top (thinking counts in max_tokens)
    assert body["max_tokens"] > 64
    [step] = answer.attempts
    assert step.cost_usd == pytest.approx((30 * price[0] + 40 * price[1]) / 1e6)


async def test_a_structured_answer_from_sonnet_5_5_is_not_a_forced_tool_call(upstream: Upstream) -> None:
    """litellm asks older Claude models for JSON by forcing a tool call; Sonnet 5.5 refuses a forced
    tool_choice (400): the shipped model gets Anthropic's native structured output instead."""
    upstream.reply = messages_api('{"verdict": "blue"}')
    llm = shipped("claude-sonnet-5-5", upstream.url)
    answer = await llm.complete(ASK, LLMConfig(json_schema=SCHEMA, temperature=0.0))
    assert json.loads(answer.text) == {"verdict": "blue"}
    body = upstream.bodies[-1]
    assert "tool_choice" not in body and "tools" not in body, body
    assert not {"temperature", "top_p"} & set(body), body


async def test_a_delegation_reviewed_by_claude_reaches_it_with_no_temperature(
        upstream: Upstream, monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole path: a `critical` delegation (Claude, no reviewer) with a key and Anthropic's base
    URL from the environment, and nothing else changed."""
    from swarm.runtime import Runtime

    upstream.reply = messages_api("Blue, by Rayleigh scattering.")
    monkeypatch.setenv("ANTHROPIC_API_BASE", upstream.url)
    runtime = Runtime()
    try:
        result = await runtime.run({"project": "swarm", "action": "delegate",
                                    "input": {"task": "Why is the sky blue?", "kind": "critical"}})
    finally:
        await runtime.aclose()
    assert result["status"] == "COMPLETED", result["error"]
    draft = next(s for s in result["trace"] if s["kind"] == "llm" and s["step"] == "draft" and s["outcome"] == "ok")
    assert draft["model"] == "claude-sonnet-5-5", result["trace"]
    body = upstream.bodies[0]
    assert body["model"] == "claude-sonnet-5-5" and "temperature" not in body, body
    assert "sk-ant-test-0000-claude55" not in json.dumps(result)


def _config(entry: dict[str, Any]) -> SwarmConfig:
    return SwarmConfig.model_validate({
        "providers": {"llm": {"default": "m", "tiers": {"fast": ["m"], "balanced": ["m"], "premium": ["m"]}}},
        "models": {"m": {"family": "claude", "litellm_model": "anthropic/claude-sonnet-5-5", **entry}},
        "routing": {"delegation": {"critical": {"primary": "m", "reviewer": None}}},
    })


def test_sampling_false_with_a_temperature_in_extra_params_is_refused_naming_both() -> None:
    with pytest.raises((ConfigError, ValueError)) as caught:
        _config({"sampling": False, "extra_params": {"temperature": 0.3}})
    text = str(caught.value)
    assert "sampling" in text and "extra_params.temperature" in text, text
    assert _config({"sampling": True, "extra_params": {"temperature": 0.3}}).models["m"].sampling


async def test_no_shipped_model_is_past_a_retirement_date_litellm_knows() -> None:
    """litellm's model list carries providers' retirement dates (deepseek/deepseek-chat 2026-07-24,
    claude-sonnet-4-5 2026-11-30): `swarm doctor` (with --quick too) says a configured model past
    its date, and the shipped config has none today."""
    from swarm.doctor_retirement import check_retirements

    found = await check_retirements(load_config())
    assert found.status == "ok", found


def _with_model(litellm_model: str, api_base: str | None = None) -> SwarmConfig:
    entry: dict[str, Any] = {"family": "x", "litellm_model": litellm_model}
    if api_base:
        entry["api_base"] = api_base
    return SwarmConfig.model_validate({
        "providers": {"llm": {"default": "m", "tiers": {"fast": ["m"], "balanced": ["m"], "premium": ["m"]}}},
        "models": {"m": entry}, "routing": {"delegation": {"critical": {"primary": "m", "reviewer": None}}},
    })


@pytest.mark.parametrize(("litellm_model", "api_base", "today", "status", "said"), [
    ("anthropic/claude-sonnet-4-5", None, "2026-12-06", "fail", "retired 2026-11-30"),
    ("deepseek/deepseek-chat", None, "2026-12-06", "fail", "retired 2026-07-24"),
    ("anthropic/claude-sonnet-4-5", None, "2026-11-01", "warn", "retires 2026-11-30"),
    # a gateway of the user's own may serve the name still
    ("anthropic/claude-sonnet-4-5", "http://127.0.0.1:4000", "2026-12-06", "warn", "at your own api_base"),
    ("anthropic/claude-sonnet-5-5", None, "2026-12-06", "ok", "no configured model"),
    # Vertex AI's bare `gemini-2.5-flash-lite` entry has a date of its own: not the Gemini API's
    ("gemini/gemini-2.5-flash-lite", None, "2026-12-06", "ok", "no configured model"),
], ids=["retired", "deepseek-chat", "soon", "own-gateway", "current", "other-provider"])
async def test_doctor_says_a_model_past_or_near_its_retirement(
        litellm_model: str, api_base: str | None, today: str, status: str, said: str) -> None:
    from swarm.doctor_retirement import check_retirements

    found = await check_retirements(_with_model(litellm_model, api_base), datetime.date.fromisoformat(today))
    assert (found.status, said in found.detail) == (status, True), found
    if status != "ok":
        assert "models.<name>.litellm_model" in found.fix
