"""A model that fails and leaves the chain to the next one is logged (a WARNING of ``swarm.llm``),
so the operator's log, and an MCP client that set a log level, hear of a fall-over: it was only in
the job's trace and progress. Real litellm to a loopback OpenAI-compatible server."""

from __future__ import annotations

import logging

import pytest
from fake_openai import Behaviour, FakeOpenAI, make_swarm_config

from providers.base import LLMConfig, Message
from providers.circuit import CircuitBoard
from providers.llm.router import build_llm_router

KEY = "sk-test-r34-fallover-0123456789"


async def test_a_fall_over_is_logged_with_the_model_the_step_and_the_error(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("R34_FALLOVER_KEY", KEY)
    with FakeOpenAI() as server:
        server.script("broken", Behaviour.fail(500))
        server.script("works", Behaviour.answer("fine"))
        spec = {"family": "f", "api_base": server.url + "/v1", "api_key_env": "R34_FALLOVER_KEY", "timeout_s": 10}
        config = make_swarm_config({"a": {**spec, "litellm_model": "openai/broken"},
                                    "b": {**spec, "litellm_model": "openai/works"}}, fallback_chain=["b"])
        router = build_llm_router(config.providers.llm, config.models, circuits=CircuitBoard())
        with caplog.at_level(logging.WARNING, logger="swarm.llm"):
            answer = await router.complete([Message(role="user", content="hi")], LLMConfig(step="draft"))
    assert answer.text == "fine"
    [record] = [r for r in caplog.records if r.name == "swarm.llm" and "chain goes on" in r.getMessage()]
    message = record.getMessage()
    assert record.levelno == logging.WARNING and message.startswith("a failed at draft (")
    assert KEY not in message


async def test_an_unusable_answer_that_falls_over_is_logged_too(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """An answer the caller cannot use (``LLMConfig.accept``) falls over as a failure does."""
    monkeypatch.setenv("R34_FALLOVER_KEY", KEY)
    with FakeOpenAI() as server:
        server.script("vague", Behaviour.answer("maybe"))
        server.script("works", Behaviour.answer("fine"))
        spec = {"family": "f", "api_base": server.url + "/v1", "api_key_env": "R34_FALLOVER_KEY", "timeout_s": 10}
        config = make_swarm_config({"a": {**spec, "litellm_model": "openai/vague"},
                                    "b": {**spec, "litellm_model": "openai/works"}}, fallback_chain=["b"])
        router = build_llm_router(config.providers.llm, config.models, circuits=CircuitBoard())
        accept = lambda text: None if text == "fine" else "not an answer"  # noqa: E731
        with caplog.at_level(logging.WARNING, logger="swarm.llm"):
            answer = await router.complete([Message(role="user", content="hi")], LLMConfig(step="plan", accept=accept))
    assert answer.text == "fine"
    [record] = [r for r in caplog.records if r.name == "swarm.llm" and "chain goes on" in r.getMessage()]
    assert record.getMessage().startswith("a failed at plan (UnusableAnswer: not an answer)")
