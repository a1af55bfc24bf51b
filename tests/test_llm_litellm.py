"""LiteLLMModel and LLMRouter through real litellm against a loopback OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_openai import Behaviour, FakeOpenAI, RefusedPort, make_swarm_config

from core.errors import (
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    ProviderUnavailable,
)
from providers.base import LLMConfig, Message
from providers.circuit import CircuitBoard
from providers.llm.litellm_backend import LiteLLMModel
from providers.llm.litellm_errors import parse_retry_after
from providers.llm.router import LLMRouter, build_llm_router

KEY_ENV = "SWARM_TEST_FAKE_KEY"
SECRET = "sk-test-0123456789abcdefXYZ"
ASK = [Message(role="user", content="say hi")]
SCHEMA = {"type": "object", "properties": {"verdict": {"type": "string"}}, "required": ["verdict"]}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(autouse=True)
def clean(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    server.reset()
    monkeypatch.setenv(KEY_ENV, SECRET)


def spec(upstream: str, base: str, **extra: object) -> dict[str, object]:
    return {
        "family": extra.pop("family", upstream.split("-")[0]),
        "litellm_model": f"openai/{upstream}",
        "api_base": f"{base}/v1",
        "api_key_env": KEY_ENV,
        "timeout_s": 0.5,
        "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
        **extra,
    }


def two_model_router(primary: dict[str, object], server: FakeOpenAI) -> LLMRouter:
    cfg = make_swarm_config(
        {"primary": primary, "backup": spec("good", server.url, family="backup")},
        fallback_chain=["backup"],
    )
    return build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard())


@pytest.mark.parametrize(
    ("upstream", "error_class"),
    [
        ("status-500", "ProviderUnavailable"),
        ("status-503", "ProviderUnavailable"),
        ("ratelimit-30", "ProviderRateLimited"),
        ("ratelimit", "ProviderRateLimited"),
        ("hang", "ProviderTimeout"),
        ("malformed", "ProviderUnavailable"),
        ("empty", "ProviderError"),
        ("status-401", "ProviderError"),
    ],
)
async def test_failure_falls_over_to_the_next_family(server: FakeOpenAI, upstream: str, error_class: str) -> None:
    router = two_model_router(spec(upstream, server.url), server)
    answer = await router.complete(ASK, LLMConfig())
    assert answer.text == "ok from good"
    failed, ok = answer.attempts
    assert (failed.model, failed.outcome, failed.error_class) == ("primary", "error", error_class)
    assert (ok.model, ok.outcome, ok.provider) == ("backup", "ok", "backup")
    assert len(server.requests_for(upstream)) == 1  # litellm's own retries are off
    assert SECRET not in (failed.detail or "")


async def test_a_refused_key_names_its_variable_and_every_message_reads_once(server: FakeOpenAI) -> None:
    from core.errors import AllProvidersFailed

    model = LiteLLMModel("primary", make_swarm_config({"primary": spec("status-401", server.url)}).models["primary"])
    with pytest.raises(ProviderError) as refused:
        await model.complete(ASK, LLMConfig())
    assert f"HTTP 401: the key in ${KEY_ENV} was refused" in str(refused.value) and SECRET not in str(refused.value)

    import litellm  # a DNS failure that litellm reports as HTTP 500 (aiohttp, Anthropic), its class name twice

    from providers.llm.litellm_errors import translate_error

    dns = litellm.InternalServerError(message="AnthropicException - Cannot connect to host api.anthropic.com:443"
                                      " ssl:<x> [Domain name not found]. Handle with `InternalServerError`.",
                                      llm_provider="anthropic", model="claude")
    error = translate_error(dns, "claude", "claude-sonnet-5-5", 30)
    assert isinstance(error, ProviderUnavailable) and "cannot connect: InternalServerError: AnthropicException" in str(error)
    assert "HTTP 500" not in str(error) and "Handle with" not in str(error)
    assert "api.anthropic.com:443 [Domain name not found]" in str(error) and "ssl:" not in str(error)  # aiohttp's SSLContext repr
    twice = litellm.AuthenticationError(message="AuthenticationError: DeepseekException - bad key", llm_provider="deepseek", model="d")
    assert "AuthenticationError: DeepseekException - bad key" in str(translate_error(twice, "deepseek", "d", 30, "DEEPSEEK_API_KEY"))
    assert "AuthenticationError: AuthenticationError" not in str(translate_error(twice, "deepseek", "d", 30))

    skipped = AllProvidersFailed("llm", [{"model": "gemini-2.5-flash", "outcome": "skipped", "detail": "GEMINI_API_KEY is not set"}])
    assert "gemini-2.5-flash: skipped GEMINI_API_KEY is not set (0 ms)" in str(skipped)


async def test_refused_connection_falls_over(server: FakeOpenAI) -> None:
    with RefusedPort() as refused:
        answer = await two_model_router(spec("good", refused.url), server).complete(ASK, LLMConfig())
    assert [(s.model, s.outcome, s.error_class) for s in answer.attempts] == [
        ("primary", "error", "ProviderUnavailable"), ("backup", "ok", None)
    ]


async def test_a_refused_connection_says_so_and_its_latency_leaves_out_the_litellm_import(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """litellm reports a refused connection to an OpenAI-compatible server as an HTTP 500
    ("Connection error."); and a process's first call, failing, used to bill the import to it."""
    from providers.llm import litellm_loader

    loaded = litellm_loader.load_litellm()

    def slow_import() -> object:  # a fresh process's first call imports litellm (~6 s on 2 cores)
        time.sleep(1.0)
        return loaded

    monkeypatch.setattr(litellm_loader, "load_litellm", slow_import)
    with RefusedPort() as refused:
        answer = await two_model_router(spec("good", refused.url), server).complete(ASK, LLMConfig())
    failed = answer.attempts[0]
    # the step names the model: its detail says what happened, without "first (primary): " again
    assert failed.outcome == "error" and (failed.detail or "").startswith("cannot connect: "), failed
    assert "HTTP 500" not in (failed.detail or "") and failed.latency_ms < 1000, failed


async def test_hang_times_out_at_the_configured_timeout(server: FakeOpenAI) -> None:
    model = LiteLLMModel("primary", make_swarm_config({"primary": spec("hang", server.url)}).models["primary"])
    with pytest.raises(ProviderTimeout, match="within 0.5 s"):
        await model.complete(ASK, LLMConfig())


async def test_a_server_that_keeps_the_request_alive_times_out_at_the_configured_timeout(server: FakeOpenAI) -> None:
    """A blank line every 0.25 s (DeepSeek's API while a request queues) never lets a read wait:
    ``timeout_s`` bounds the whole call, and the chain falls over to the next model in time."""
    server.script("queued", Behaviour.keepalive(3.0))
    model = LiteLLMModel("primary", make_swarm_config({"primary": spec("queued", server.url)}).models["primary"])
    with pytest.raises(ProviderTimeout, match="within 0.5 s"):  # the server would answer after 3 s
        await model.complete(ASK, LLMConfig())
    answer = await two_model_router(spec("queued", server.url), server).complete(ASK, LLMConfig())
    assert answer.text == "ok from good"
    assert [(s.model, s.outcome) for s in answer.attempts] == [("primary", "error"), ("backup", "ok")]
    server.script("queued", Behaviour.keepalive(0.6, text="in time"))  # within the limit it answers
    patient = LiteLLMModel("p", make_swarm_config({"p": spec("queued", server.url, timeout_s=3)}).models["p"])
    assert (await patient.complete(ASK, LLMConfig())).text == "in time"


async def test_an_answer_without_usage_has_unknown_cost_not_zero(server: FakeOpenAI) -> None:
    server.script("nousage", Behaviour.answer("fine", usage=False))
    answer = await LiteLLMModel("m", make_swarm_config({"m": spec("nousage", server.url)}).models["m"]).complete(
        ASK, LLMConfig())
    assert answer.text == "fine" and answer.cost_usd is None
    assert "no token usage" in (answer.attempts[0].detail or "")


async def test_an_empty_answer_says_what_was_billed_and_how_long_it_took(server: FakeOpenAI) -> None:
    server.script("blank", Behaviour("empty", text="", delay_s=0.2, prompt_tokens=100))
    model = LiteLLMModel("m", make_swarm_config({"m": spec("blank", server.url)}).models["m"])
    with pytest.raises(ProviderError, match=r"empty answer \(100 input and 0 output tokens billed\)") as err:
        await model.complete(ASK, LLMConfig())
    assert err.value.latency_ms is not None and err.value.latency_ms >= 200  # the call's own time (was unset:
    # the router then used its own clock, which holds a first call's 5-7 s of litellm imports)

async def test_short_retry_after_is_retried_on_the_same_model(server: FakeOpenAI) -> None:
    server.script("flaky", Behaviour.rate_limited(0.05), Behaviour.answer("recovered"))
    answer = await two_model_router(spec("flaky", server.url), server).complete(ASK, LLMConfig())
    assert answer.text == "recovered"
    assert [(s.model, s.attempt, s.outcome) for s in answer.attempts] == [
        ("primary", 1, "error"), ("primary", 2, "ok")
    ]
    assert "Retry-After 0.05 s" in (answer.attempts[0].detail or "")


async def test_rate_limit_carries_retry_after(server: FakeOpenAI) -> None:
    model = LiteLLMModel("p", make_swarm_config({"p": spec("ratelimit-7", server.url)}).models["p"])
    with pytest.raises(ProviderRateLimited) as err:
        await model.complete(ASK, LLMConfig())
    assert err.value.retry_after == 7.0


async def test_unset_key_skips_without_a_request(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_swarm_config(
        {"primary": spec("good", server.url, api_key_env="SWARM_TEST_UNSET_KEY"),
         "backup": spec("backup-model", server.url, family="backup")},
        fallback_chain=["backup"],
    )
    monkeypatch.delenv("SWARM_TEST_UNSET_KEY", raising=False)
    answer = await build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard()).complete(ASK, LLMConfig())
    assert answer.attempts[0].outcome == "skipped"
    assert answer.attempts[0].detail == "SWARM_TEST_UNSET_KEY is not set"
    assert server.requests_for("good") == []
    with pytest.raises(ProviderUnavailable, match="SWARM_TEST_UNSET_KEY is not set"):
        await LiteLLMModel("primary", cfg.models["primary"]).complete(ASK, LLMConfig())


async def test_request_carries_key_tokens_cost_and_extra_params(server: FakeOpenAI) -> None:
    cfg = make_swarm_config(
        {"m": spec("good", server.url, max_output_tokens=100, extra_params={"temperature": 1, "top_p": 0.5})}
    )
    answer = await LiteLLMModel("m", cfg.models["m"]).complete(ASK, LLMConfig(max_tokens=500, temperature=0.1))
    sent = server.requests_for("good")[0]
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    assert sent.body["max_tokens"] == 100
    assert sent.body["temperature"] == 1 and sent.body["top_p"] == 0.5
    assert (answer.input_tokens, answer.output_tokens) == (11, 7)
    assert answer.cost_usd == pytest.approx((11 * 1.0 + 7 * 2.0) / 1e6)
    assert answer.attempts[0].cost_usd == answer.cost_usd


async def test_a_call_limit_caps_the_answer_and_a_thinking_budget_comes_on_top(server: FakeOpenAI) -> None:
    thinking = {"thinking": {"type": "enabled", "budget_tokens": 4096}, "temperature": 1}
    cfg = make_swarm_config({"plain": spec("good", server.url, max_output_tokens=512),
                             "thinks": spec("good", server.url, max_output_tokens=8192, extra_params=thinking)})
    await LiteLLMModel("plain", cfg.models["plain"]).complete(ASK, LLMConfig(max_tokens=128))
    assert server.requests_for("good")[0].body["max_tokens"] == 128
    # Anthropic refuses max_tokens <= budget_tokens: the planner's 128 answer tokens come after the
    # thinking (the loopback server speaks OpenAI, which has no `thinking`: read the request built)
    thinks = LiteLLMModel("thinks", cfg.models["thinks"])
    assert thinks._params(ASK, LLMConfig(max_tokens=128), "key")["max_tokens"] == 4096 + 128
    assert thinks._params(ASK, LLMConfig(max_tokens=6000), "key")["max_tokens"] == 8192
    assert thinks._params(ASK, LLMConfig(), "key")["max_tokens"] == 8192
    # a reasoning model configured with reasoning_effort thinks too: litellm's budget for it on top
    for effort, budget in (("low", 1024), ("HIGH", 4096), ("none", 0), ("unheard-of", 16384), (False, 0),
                           ({"effort": "medium"}, 2048)):
        cfg = make_swarm_config({"r": spec("good", server.url, max_output_tokens=32768,
                                           extra_params={"reasoning_effort": effort})})
        assert LiteLLMModel("r", cfg.models["r"])._params(ASK, LLMConfig(max_tokens=128), "k")["max_tokens"] == budget + 128


@pytest.mark.parametrize(
    ("mode", "response_format", "schema_in_prompt"),
    [
        ("json_schema", {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA}}, False),
        ("json_object_schema", {"type": "json_object", "schema": SCHEMA}, False),
        ("json_object", {"type": "json_object"}, True),
        ("prompt", None, True),
    ],
)
async def test_structured_output_modes(
    server: FakeOpenAI, mode: str, response_format: dict[str, object] | None, schema_in_prompt: bool
) -> None:
    server.script("good", Behaviour.answer('{"verdict": "fine"}'))
    cfg = make_swarm_config({"m": spec("good", server.url, structured_output=mode)})
    messages = [Message(role="system", content="You review."), *ASK]
    answer = await LiteLLMModel("m", cfg.models["m"]).complete(messages, LLMConfig(json_schema=SCHEMA))
    assert json.loads(answer.text) == {"verdict": "fine"}
    body = server.requests_for("good")[0].body
    assert body.get("response_format") == response_format
    # llama.cpp's repeat penalty breaks its grammar; only the grammar mode turns it off.
    assert ("repeat_penalty" in body) is (mode == "json_object_schema")
    system = body["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("You review.")
    assert ('"required":["verdict"]' in system["content"]) is schema_in_prompt
    assert len(body["messages"]) == 2


async def test_free_text_params_reach_free_text_only(server: FakeOpenAI) -> None:
    """Penalties against loops go with free text; a grammar-constrained JSON call keeps its
    repeat_penalty 1.0 (a penalty breaks llama.cpp's grammar)."""
    free = {"frequency_penalty": 0.5, "extra_body": {"repeat_penalty": 1.3}}
    cfg = make_swarm_config({"m": spec("good", server.url, structured_output="json_object_schema", free_text_params=free)})
    model = LiteLLMModel("m", cfg.models["m"])
    await model.complete(ASK, LLMConfig())
    server.script("good", Behaviour.answer('{"verdict": "fine"}'))
    await model.complete(ASK, LLMConfig(json_schema=SCHEMA))
    text_call, json_call = (r.body for r in server.requests_for("good"))
    assert text_call["frequency_penalty"] == 0.5 and text_call["repeat_penalty"] == 1.3
    assert "frequency_penalty" not in json_call and json_call["repeat_penalty"] == 1.0


LOOP = "Intro to the answer. " + "The same sentence comes again and again. And so does this one. " * 40


async def test_a_looping_answer_is_cut_where_it_repeats_and_the_server_stops(server: FakeOpenAI) -> None:
    server.script("good", Behaviour.answer(LOOP, token_delay_s=0.002))
    cfg = make_swarm_config({"m": spec("good", server.url, stop_on_loop=True, timeout_s=5)})
    answer = await LiteLLMModel("m", cfg.models["m"]).complete(ASK, LLMConfig(step="write"))
    assert answer.text == "Intro to the answer. The same sentence comes again and again. And so does this one."
    assert answer.finish_reason == "loop" and "stopped where the answer began to repeat itself" in answer.attempts[0].detail
    sent = server.requests_for("good")[0]
    assert sent.body["stream"] is True
    assert answer.output_tokens == 4 + 2 * 12 + 7  # the words received up to the third "The same sentence ..."
    assert answer.input_tokens > 0 and answer.cost_usd == pytest.approx((answer.input_tokens + 2 * 35) / 1e6)
    for _ in range(200):  # the server sees the hang-up at its next chunk
        if sent.stream_ended:
            break
        await asyncio.sleep(0.01)
    assert sent.hung_up and sent.chunks_sent < 100  # it stopped sending: 323 words were scripted


@pytest.mark.parametrize(("loop", "kept"), [
    # a run-on loop never ends a sentence; a loop of short lines has no sentence long enough to count
    ("Rivers matter. And the river flows to the sea" + " and the river flows to the sea" * 60,
     "Rivers matter. And the river flows to the sea"),
    ("Cities:\n- Paris\n- London\n" + "- Paris\n- London\n" * 60, "Cities:\n- Paris\n- London"),
    # the same sentence with other citation markers and case is the same sentence
    ("Rivers reach the sea [1]. " + "Rivers reach the sea [2]. rivers reach the sea [3]! " * 30, "Rivers reach the sea [1]."),
])
async def test_loops_that_end_no_sentence_or_differ_in_markers_are_cut_too(server: FakeOpenAI, loop: str, kept: str) -> None:
    server.script("good", Behaviour.answer(loop, token_delay_s=0.002))
    cfg = make_swarm_config({"m": spec("good", server.url, stop_on_loop=True, timeout_s=5)})
    answer = await LiteLLMModel("m", cfg.models["m"]).complete(ASK, LLMConfig(step="write"))
    assert answer.text == kept and answer.finish_reason == "loop"
    sent = server.requests_for("good")[0]
    for _ in range(200):
        if sent.stream_ended:
            break
        await asyncio.sleep(0.01)
    assert sent.hung_up and sent.chunks_sent < len(loop.split()) // 3


async def test_repetition_that_is_no_loop_arrives_whole(server: FakeOpenAI) -> None:
    text = ("Very, very, very good. Row, row, row your boat. Zeros: 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0."
            " Ha ha ha ha ha. The river flows; the river flows; the end.\n"
            # lines that differ by an operator or an index are different sentences
            "result = compute(a, b) + 1\nresult = compute(a, b) - 1\nresult = compute(a, b) * 1\n"
            "buffer[0] = initial_value;\nbuffer[1] = initial_value;\nbuffer[2] = initial_value;\n"
            # code repeats itself by nature: nothing inside a fence counts
            "```python\n" + 'print("hello, world!")\n' * 4 + "```\nThat is all.")
    server.script("good", Behaviour.answer(text))
    cfg = make_swarm_config({"m": spec("good", server.url, stop_on_loop=True, timeout_s=5)})
    answer = await LiteLLMModel("m", cfg.models["m"]).complete(ASK, LLMConfig())
    assert answer.text == text and answer.finish_reason == "stop"


async def test_a_streamed_answer_that_does_not_loop_arrives_whole_and_json_calls_do_not_stream(server: FakeOpenAI) -> None:
    text = "Checkpoints save state. " * 2 + "A circuit opens after three failures.\n- one\n- one\n- one"
    server.script("good", Behaviour.answer(text), Behaviour.answer('{"verdict": "fine"}'))
    cfg = make_swarm_config({"m": spec("good", server.url, stop_on_loop=True, timeout_s=5)})
    model = LiteLLMModel("m", cfg.models["m"])
    answer = await model.complete(ASK, LLMConfig())
    assert answer.text == text.strip() and answer.finish_reason == "stop"  # twice, and short lines, are no loop
    assert answer.output_tokens == len(text.split()) and not server.requests_for("good")[0].hung_up
    verdict = await model.complete(ASK, LLMConfig(json_schema=SCHEMA))
    assert json.loads(verdict.text) == {"verdict": "fine"} and "stream" not in server.requests_for("good")[1].body
    assert (verdict.input_tokens, verdict.output_tokens) == (11, 7)  # the server's own count


@pytest.mark.parametrize("streamed", [False, True])
async def test_an_answer_past_max_tokens_is_cut_at_the_cap_and_says_so(server: FakeOpenAI, streamed: bool) -> None:
    """A server that ignores max_tokens sent 5 MB; it went whole into the check, the trace and the result."""
    from providers.llm.litellm_request import CHARS_PER_TOKEN_CAP

    words = [f"w{n:05d} " for n in range(3000)]  # 21,000 characters, all different: no loop
    server.script("good", Behaviour.answer("".join(words), token_delay_s=0.001))
    cfg = make_swarm_config({"m": spec("good", server.url, stop_on_loop=streamed, timeout_s=5)})
    answer = await LiteLLMModel("m", cfg.models["m"]).complete(ASK, LLMConfig(max_tokens=100))
    cap = 100 * CHARS_PER_TOKEN_CAP
    assert answer.text == "".join(words)[:cap].strip() and answer.finish_reason == "length"
    assert f"cut at {cap}" in (answer.attempts[0].detail or "") and "max_tokens" in (answer.attempts[0].detail or "")
    sent = server.requests_for("good")[0]
    assert sent.body["max_tokens"] == 100 and bool(sent.body.get("stream")) is streamed
    if streamed:  # it hung up instead of reading the rest
        for _ in range(200):
            if sent.stream_ended:
                break
            await asyncio.sleep(0.01)
        assert sent.hung_up and sent.chunks_sent < 1000
    # within the cap an answer is whole
    server.script("good", Behaviour.answer("".join(words[:100])))
    answer = await LiteLLMModel("m", cfg.models["m"]).complete(ASK, LLMConfig(max_tokens=100))
    assert answer.text == "".join(words[:100]).strip() and answer.finish_reason == "stop"


async def test_a_stream_the_server_cut_short_is_asked_again_whole(server: FakeOpenAI) -> None:
    text = "Rivers carry water to the sea. Most start in the mountains."
    server.script("good", Behaviour.answer(text, stream_cut_after=3), Behaviour.answer(text))
    cfg = make_swarm_config({"m": spec("good", server.url, stop_on_loop=True, timeout_s=5)})
    answer = await LiteLLMModel("m", cfg.models["m"]).complete(ASK, LLMConfig())
    assert answer.text == text and (answer.input_tokens, answer.output_tokens) == (11, 7)
    first, second = server.requests_for("good")
    assert first.body["stream"] is True and first.chunks_sent == 3 and "stream" not in second.body
    assert "ended early (3 tokens); asked again without streaming" in (answer.attempts[0].detail or "")  # in the trace


async def test_the_retry_of_a_cut_stream_gets_a_timeout_of_its_own(server: FakeOpenAI) -> None:
    """A stream cut after ~0.9 s, then a whole answer in ~0.9 s, under timeout_s 1.5: each request fits."""
    text = "Rivers carry water to the sea. Most start in the mountains."
    server.script("busy", Behaviour.answer(text, stream_cut_after=3, token_delay_s=0.3), Behaviour.answer(text, delay_s=0.9))
    cfg = make_swarm_config({"m": spec("busy", server.url, stop_on_loop=True, timeout_s=1.5)})
    answer = await LiteLLMModel("m", cfg.models["m"]).complete(ASK, LLMConfig())
    assert answer.text == text and len(server.requests_for("busy")) == 2

async def test_the_first_calls_latency_leaves_out_the_litellm_import(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    from providers.llm import litellm_loader

    server.script("good", Behaviour.answer("hello"))
    cfg = make_swarm_config({"m": spec("good", server.url)})
    model = LiteLLMModel("m", cfg.models["m"])
    await model.complete(ASK, LLMConfig())  # the fake server's and litellm's own first-call costs
    loaded = litellm_loader.load_litellm()

    def slow_import() -> object:  # as in a fresh process, whose first call imports litellm (~6 s on 2 cores)
        time.sleep(1.0)
        return loaded

    monkeypatch.setattr(litellm_loader, "load_litellm", slow_import)
    answer = await model.complete(ASK, LLMConfig())
    assert answer.text == "hello" and answer.attempts[0].latency_ms < 1000, answer.attempts  # the server answers in ms


def test_loading_litellm_at_debug_log_level_writes_nothing_to_stdout() -> None:
    """``swarm --json`` and the stdio MCP server own stdout; litellm's handler writes its records
    below WARNING there, from its import on."""
    import subprocess
    import sys

    code = ("import logging, sys\n"
            "logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)\n"
            "from providers.llm.litellm_loader import load_litellm\n"
            "load_litellm()\n"
            "logging.getLogger('LiteLLM').info('an info record of litellm')\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "LITELLM_LOG"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).parent.parent, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == ""


@pytest.mark.parametrize("beta_up", [True, False])
async def test_the_review_goes_to_another_family_and_a_self_review_says_so(
        server: FakeOpenAI, make_context: Any, monkeypatch: pytest.MonkeyPatch, beta_up: bool) -> None:
    """The route's reviewer (gamma) has no key; the fallback chain lists the drafter's family
    (alpha) before beta. The review goes to beta, another family; with beta down too, alpha
    reviews its own draft and the verdict and the trace say it is no independent review."""
    from core.config import SwarmConfig
    from swarm.dispatcher import dispatch

    monkeypatch.delenv("SWARM_TEST_NO_SUCH_KEY", raising=False)
    verdict = {"approved": True, "score": 8, "issues": [], "suggestion": ""}
    server.script("alpha-1", Behaviour.answer("an alpha draft"), Behaviour.answer(json.dumps(verdict)))
    server.script("beta-1", Behaviour.answer(json.dumps(verdict)) if beta_up else Behaviour.fail(500))
    cfg = SwarmConfig.model_validate({
        "providers": {"llm": {"default": "alpha-1", "tiers": {"fast": ["alpha-1"], "balanced": ["alpha-1"],
                                                              "premium": ["alpha-1"]},
                              "fallback_chain": ["alpha-1", "beta-1"]}},
        "models": {"alpha-1": spec("alpha-1", server.url), "beta-1": spec("beta-1", server.url),
                   "gamma-1": spec("gamma-1", server.url, api_key_env="SWARM_TEST_NO_SUCH_KEY")},
        "routing": {"delegation": {"critical": {"primary": "alpha-1", "reviewer": "gamma-1"}}},
    })
    router = build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard())
    result = await dispatch({"project": "swarm", "action": "delegate", "input": {"task": "Say hi.", "kind": "critical"}},
                            make_context(router, config=cfg))
    assert result["status"] == "COMPLETED", result["error"]
    review = result["output"]["review"]
    reviews = [(s["model"], s["outcome"]) for s in result["trace"] if s["step"] == "review" and s["kind"] == "llm"]
    if beta_up:
        assert review["reviewer"] == "beta-1" and "self_review" not in review
        assert reviews == [("gamma-1", "skipped"), ("beta-1", "ok")]
    else:
        assert review["reviewer"] == "alpha-1" and review["self_review"] is True
        assert "drafter's own family (alpha)" in review["note"]
        assert reviews == [("gamma-1", "skipped"), ("beta-1", "error"), ("alpha-1", "ok")]
        node = next(s for s in result["trace"] if s["step"] == "review" and s["kind"] == "node")
        assert "self-review" in node["detail"]


async def test_health_check_probes_the_server(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_swarm_config({"m": spec("good", server.url)})
    assert await LiteLLMModel("m", cfg.models["m"]).health_check() is True
    assert server.requests[-1].path == "/v1/models"
    with RefusedPort() as refused:
        down = make_swarm_config({"m": spec("good", refused.url)})
        assert await LiteLLMModel("m", down.models["m"]).health_check() is False
    monkeypatch.delenv(KEY_ENV)
    assert await LiteLLMModel("m", cfg.models["m"]).health_check() is False


async def test_a_key_echoed_by_the_upstream_is_redacted(server: FakeOpenAI) -> None:
    model = LiteLLMModel("m", make_swarm_config({"m": spec("status-401", server.url)}).models["m"])
    with pytest.raises(ProviderError) as err:
        await model.complete(ASK, LLMConfig())
    assert "Incorrect API key provided: [REDACTED]" in str(err.value)
    assert SECRET not in str(err.value)


async def test_error_messages_are_redacted(server: FakeOpenAI) -> None:
    model = LiteLLMModel("m", make_swarm_config({"m": spec("status-400", server.url)}).models["m"])
    with pytest.raises(ProviderError) as err:
        await model.complete(ASK, LLMConfig())
    assert type(err.value) is ProviderError
    assert "HTTP 400" in str(err.value)
    assert SECRET not in str(err.value)


def test_parse_retry_after_accepts_seconds_and_dates() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


async def test_shipped_config_with_no_keys_answers_from_the_local_model(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    from core.config import DEFAULT_CONFIG_PATH, load_config
    from providers.llm.local_server import LocalServerManager

    for name in ("DEEPSEEK_API_KEY", "GEMINI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SWARM_LOCAL_LLM_PORT", str(server.port))  # "the local server" is already up
    cfg = load_config(DEFAULT_CONFIG_PATH)
    servers = LocalServerManager(log_dir=tmp_path)
    router = build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard(), local_servers=servers)
    assert router.resolve_chain(LLMConfig()) == ["deepseek-v3.1-q8", "gemini-2.5-flash-lite", "claude-sonnet-5-5", "local"]
    answer = await router.complete(ASK, LLMConfig(tier="premium"))
    assert answer.text == "ok from smollm2-135m-instruct"
    assert [(s.model, s.outcome, s.detail) for s in answer.attempts[:-1]] == [
        ("claude-opus-5-5", "skipped", "ANTHROPIC_API_KEY is not set"),
        ("deepseek-v3.1-q8", "skipped", "DEEPSEEK_API_KEY is not set"),
        ("gemini-2.5-flash-lite", "skipped", "GEMINI_API_KEY is not set"),
        ("claude-sonnet-5-5", "skipped", "ANTHROPIC_API_KEY is not set"),
    ]
    assert answer.attempts[-1].model == "local" and answer.attempts[-1].cost_usd == 0.0
    assert servers.status()["local"]["owned"] is False
    health = await router.health()
    assert health["local"]["available"] is True
    assert health["deepseek-v3.1-q8"] == {
        "available": False, "reason": "DEEPSEEK_API_KEY is not set", "circuit": health["deepseek-v3.1-q8"]["circuit"]
    }
    assert await router.health_check() is True


async def test_a_grammar_schema_is_fitted_to_the_models_token_cap(server: FakeOpenAI) -> None:
    """A 135M local model filled the review's 600-character suggestion with "1, 2, 3, ..." at one
    character a token and was cut at its 512-token cap, the JSON unclosed (14 s, verdict lost).
    A grammar gets the schema's strings cut alike so its longest answer fits the cap; a caller
    that sized the answer itself (max_tokens) and the schema of a hosted model are sent as given."""
    from graphs.delegation.prompts import VERDICT_SCHEMA
    from providers.llm.litellm_request import fit_schema

    cfg = make_swarm_config({
        "local": spec("good", server.url, structured_output="json_object_schema", max_output_tokens=512),
        "hosted": spec("good", server.url, structured_output="json_schema", max_output_tokens=512),
    })
    for name in ("local", "hosted"):
        server.script("good", Behaviour.answer('{"approved": true, "score": 7, "issues": [], "suggestion": ""}'))
        await LiteLLMModel(name, cfg.models[name]).complete(ASK, LLMConfig(json_schema=VERDICT_SCHEMA))
    server.script("good", Behaviour.answer('{"approved": true, "score": 7, "issues": [], "suggestion": ""}'))
    await LiteLLMModel("local", cfg.models["local"]).complete(ASK, LLMConfig(json_schema=VERDICT_SCHEMA, max_tokens=400))
    local, hosted, sized = (r.body["response_format"] for r in server.requests_for("good"))
    sent = local["schema"]["properties"]
    assert sent["suggestion"]["maxLength"] < 200 and sent["issues"]["items"]["maxLength"] < 60
    # the longest verdict the fitted grammar admits, written out, is within 512 characters
    longest = json.dumps({"approved": False, "score": 10,
                          "issues": ["x" * sent["issues"]["items"]["maxLength"]] * sent["issues"]["maxItems"],
                          "suggestion": "y" * sent["suggestion"]["maxLength"]})
    assert len(longest) <= 512
    assert hosted["json_schema"]["schema"] == VERDICT_SCHEMA and sized["schema"] == VERDICT_SCHEMA
    # nothing to scale: an unbounded string, or a schema that fits already
    assert fit_schema({"type": "object", "properties": {"a": {"type": "string"}}}, 10) == \
        {"type": "object", "properties": {"a": {"type": "string"}}}
    assert fit_schema(VERDICT_SCHEMA, 4000) is VERDICT_SCHEMA


@pytest.mark.parametrize(("schema", "budget", "fitted"), [
    # a short string keeps its length; the long one takes the cut
    ({"type": "object", "properties": {"code": {"type": "string", "maxLength": 5}, "text": {"type": "string", "maxLength": 2000}}},
     300, {"code": 5, "text": 267}),
    # never below its minLength
    ({"type": "object", "properties": {"text": {"type": "string", "minLength": 100, "maxLength": 2000}}}, 50, {"text": 100}),
    # an enum's values are what they are
    ({"type": "object", "properties": {"k": {"type": "string", "enum": ["aaaa", "bb"], "maxLength": 4},
                                       "text": {"type": "string", "maxLength": 2000}}}, 300, {"k": 4, "text": 267}),
])
def test_fit_schema_cuts_only_what_it_may(schema: dict[str, Any], budget: int, fitted: dict[str, int]) -> None:
    from providers.llm.litellm_request import fit_schema

    got = fit_schema(schema, budget)["properties"]
    assert {name: sub["maxLength"] for name, sub in got.items()} == fitted


@pytest.mark.parametrize("schema", [
    {"type": "array", "items": [{"type": "string", "maxLength": 900}], "maxItems": 1},  # tuple items
    {"type": "object", "properties": {"a": True, "b": {"type": "string", "maxLength": 900}}},  # a boolean schema
    {"anyOf": [{"type": "string", "maxLength": 900}, {"type": "null"}]},
])
def test_fit_schema_sends_a_shape_it_does_not_read_as_given(schema: dict[str, Any]) -> None:
    """They raised AttributeError, which escaped the router as an internal error."""
    from providers.llm.litellm_request import fit_schema

    assert fit_schema(schema, 100) == schema


@pytest.mark.parametrize("body", [b"<html><body>502 Bad Gateway from nginx</body></html>", b'{"id": "x", "choices": []}'])
@pytest.mark.parametrize("model", ["anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash-lite"])
async def test_an_answer_litellm_cannot_read_is_said_as_one_for_every_provider(model: str, body: bytes) -> None:
    """A reviewer's proxy answered 200 with a page or JSON of the wrong shape: Claude's read "cannot
    connect" (once with litellm's Python traceback and file paths in the trace), Gemini's "HTTP
    422" with litellm's "File an issue" link; DeepSeek's same body read "unreadable answer"."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import litellm

    from core.errors import ProviderUnavailable
    from providers.llm.litellm_errors import translate_error

    class Answer(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(Exception) as raised:
            await litellm.acompletion(model=model, api_base=f"http://127.0.0.1:{server.server_port}", num_retries=0,
                                      api_key="sk-test-0123456789abcdef", messages=[{"role": "user", "content": "hi"}])
    finally:
        server.shutdown()
    error = translate_error(raised.value, model.split("/")[0], model, 30)
    said = str(error)
    assert isinstance(error, ProviderUnavailable) and "unreadable answer: " in said, said
    for wrong in ("cannot connect", "HTTP 422", "Traceback", "File an issue", ".py"):
        assert wrong not in said, said


@pytest.mark.parametrize("said", ["Server disconnected", "Connection reset by peer",
                                  "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"])
def test_a_network_failure_with_litellms_traceback_is_still_cannot_connect(said: str) -> None:
    """A traceback in litellm's text made any connection error read "unreadable answer"."""
    import litellm

    from providers.llm.litellm_errors import translate_error

    exc = litellm.APIConnectionError(message=f"AnthropicException - {said}\nTraceback (most recent call last):\n"
                                             '  File "/x/litellm/main.py", line 1\n', llm_provider="anthropic", model="c")
    error = str(translate_error(exc, "claude", "claude-sonnet-5-5", 30))
    assert "cannot connect" in error and "unreadable" not in error and "Traceback" not in error, error


def test_anthropics_overloaded_529_is_said_as_such() -> None:
    """litellm reports Anthropic's 529 (overloaded) as a 500: the trace said "HTTP 500"."""
    import litellm

    from core.errors import ProviderUnavailable
    from providers.llm.litellm_errors import translate_error

    exc = litellm.InternalServerError(message='AnthropicException - {"type":"error","error":{"type":"overloaded_error",'
                                              '"message":"Overloaded"}}', llm_provider="anthropic", model="c")
    error = translate_error(exc, "claude", "claude-sonnet-5-5", 30)
    assert isinstance(error, ProviderUnavailable) and "HTTP 529" in str(error) and "HTTP 500" not in str(error)
