"""Tokens and cost in the trace tell the truth: what each hosted API's ``usage`` says, through the
real litellm path, against a loopback server that answers in each provider's own shape.

Usage shapes as the providers document them: DeepSeek's ``prompt_cache_hit_tokens`` /
``prompt_cache_miss_tokens`` beside OpenAI's ``prompt_tokens_details.cached_tokens`` and
``completion_tokens_details.reasoning_tokens``; Anthropic's ``cache_creation_input_tokens`` /
``cache_read_input_tokens`` apart from ``input_tokens``; Gemini's ``thoughtsTokenCount`` apart
from ``candidatesTokenCount`` (both billed as output).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from core.config import SwarmConfig
from providers.base import LLMConfig, Message, TraceStep
from providers.llm.litellm_backend import LiteLLMModel

ASK = [Message(role="user", content="Say hello to the reader, please.")]
PRICE = {"input_per_mtok": 1.0, "output_per_mtok": 2.0}
#: an OpenAI-compatible usage as DeepSeek's API sends it (64 of 100 prompt tokens from its cache)
DEEPSEEK_USAGE = {
    "prompt_tokens": 100, "completion_tokens": 30, "total_tokens": 130,
    "prompt_tokens_details": {"cached_tokens": 64}, "prompt_cache_hit_tokens": 64, "prompt_cache_miss_tokens": 36,
    "completion_tokens_details": {"reasoning_tokens": 10},
}

Reply = Callable[[str, dict[str, Any]], Any]


class Upstream:
    """A loopback HTTP server: ``reply(path, body)`` gives a JSON body, or a list of SSE events
    for a streamed request; every request body is kept in ``bodies``."""

    def __init__(self) -> None:
        self.reply: Reply = lambda path, body: {}
        self.bodies: list[dict[str, Any]] = []
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                upstream.bodies.append(body)
                answer = upstream.reply(self.path, body)
                self.send_response(200)
                if isinstance(answer, list):  # server-sent events, then the connection closes
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("connection", "close")
                    self.end_headers()
                    self.wfile.write("".join(answer).encode())
                    self.close_connection = True
                    return
                data = json.dumps(answer).encode()
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


def model(litellm_model: str, base: str, **extra: Any) -> LiteLLMModel:
    entry = {"family": "f", "litellm_model": litellm_model, "api_base": base, "timeout_s": 10, **extra}
    config = SwarmConfig.model_validate({
        "providers": {"llm": {"default": "m", "tiers": {"fast": ["m"], "balanced": ["m"], "premium": ["m"]}}},
        "models": {"m": entry}, "routing": {"delegation": {"critical": {"primary": "m", "reviewer": None}}},
    })
    return LiteLLMModel("m", config.models["m"])


def chat(usage: dict[str, Any] | None, text: str = "Hello there, reader.") -> dict[str, Any]:
    answer = {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
    return {**answer, "usage": usage} if usage else answer


def chunk(delta: dict[str, Any], finish: str | None = None, usage: dict[str, Any] | None = None,
          choices: bool = True) -> str:
    data: dict[str, Any] = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if choices else []}
    if usage:
        data["usage"] = usage
    return f"data: {json.dumps(data)}\n\n"


def stream(pieces: list[str], usage: dict[str, Any] | None, thought: tuple[str, ...] = ()) -> Reply:
    """An OpenAI-compatible stream: reasoning pieces, answer pieces, and a last usage-only chunk
    when the request asks for one (``stream_options.include_usage``), as OpenAI's and DeepSeek's do."""
    def reply(path: str, body: dict[str, Any]) -> list[str]:
        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"reasoning_content": t}) for t in thought]
        events += [chunk({"content": p}) for p in pieces] + [chunk({}, "stop")]
        if usage and (body.get("stream_options") or {}).get("include_usage"):
            events.append(chunk({}, usage=usage, choices=False))
        return [*events, "data: [DONE]\n\n"]
    return reply


def only_step(answer: Any) -> TraceStep:
    [step] = answer.attempts
    assert (step.input_tokens, step.output_tokens, step.cost_usd) == (
        answer.input_tokens, answer.output_tokens, answer.cost_usd)
    return step


async def test_a_streamed_answer_counts_the_tokens_its_server_reported(upstream: Upstream) -> None:
    """A streamed answer's usage was never asked for nor read: 100 prompt tokens (64 of them from
    DeepSeek's cache) and 30 billed output tokens (10 of them reasoning) read as the tokenizer's
    count of the prompt and one token per text piece (4)."""
    upstream.reply = stream(["Hello ", "there, ", "reader", "."], DEEPSEEK_USAGE)
    llm = model("deepseek/deepseek-chat", upstream.url, stop_on_loop=True, price=PRICE)
    answer = await llm.complete(ASK, LLMConfig())
    assert answer.text == "Hello there, reader."
    assert upstream.bodies[-1]["stream"] is True
    assert upstream.bodies[-1]["stream_options"] == {"include_usage": True}
    step = only_step(answer)
    assert (step.input_tokens, step.output_tokens) == (100, 30)
    assert step.cost_usd == pytest.approx((100 * 1.0 + 30 * 2.0) / 1e6)
    assert "estimated" not in (step.detail or "")
    assert "64 read from the provider's cache" in (step.detail or ""), step.detail


async def test_a_stream_that_sends_no_usage_says_its_tokens_are_estimated(upstream: Upstream) -> None:
    """llama-cpp-python's server sends no usage in a stream: its tokens were counted and said as
    "counted from the stream", and the reasoning pieces (billed as output) were left out."""
    upstream.reply = stream(["Hello ", "there, ", "reader", "."], None, thought=("Think", "ing", "..."))
    llm = model("openai/local-like", f"{upstream.url}/v1", stop_on_loop=True, price=PRICE)
    answer = await llm.complete(ASK, LLMConfig())
    assert answer.text == "Hello there, reader."
    step = only_step(answer)
    assert "tokens estimated" in (step.detail or ""), step.detail
    assert step.output_tokens == 4 + 3 and step.input_tokens > 0  # estimated, never 0
    assert step.cost_usd == pytest.approx((step.input_tokens * 1.0 + 7 * 2.0) / 1e6)


def anthropic(path: str, body: dict[str, Any]) -> dict[str, Any]:
    assert path.endswith("/v1/messages"), path
    return {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "text", "text": "Hello there, reader."}], "stop_reason": "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": 20, "cache_creation_input_tokens": 1000,
                                             "cache_read_input_tokens": 3000, "output_tokens": 50}}


def gemini(path: str, body: dict[str, Any]) -> dict[str, Any]:
    assert ":generateContent" in path, path
    return {"candidates": [{"content": {"parts": [{"text": "Hello there, reader."}], "role": "model"},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 200, "candidatesTokenCount": 10, "thoughtsTokenCount": 100,
                              "cachedContentTokenCount": 150, "totalTokenCount": 310}}


@pytest.mark.parametrize(("litellm_model", "reply", "tokens", "cache"), [
    # DeepSeek bills hits and misses as input, reasoning as output
    ("deepseek/deepseek-chat", lambda path, body: chat(DEEPSEEK_USAGE), (100, 30), "64 read from"),
    # Anthropic bills cache reads and writes beside input_tokens; litellm adds them to prompt_tokens
    ("anthropic/claude-sonnet-4-5", anthropic, (4020, 50), "3000 read from and 1000 written to"),
    # Gemini bills its thoughts as output; litellm adds them to completion_tokens
    ("gemini/gemini-2.5-flash-lite", gemini, (200, 110), "150 read from"),
], ids=["deepseek", "anthropic", "gemini"])
async def test_a_whole_answer_counts_every_billed_token_and_says_what_the_cache_served(
        upstream: Upstream, litellm_model: str, reply: Reply, tokens: tuple[int, int], cache: str) -> None:
    """The tokens were right; the trace never said that part of the input came from the provider's
    cache, priced at the full input rate (config has no cache price): a cost read as exact."""
    upstream.reply = reply
    answer = await model(litellm_model, upstream.url, price=PRICE).complete(ASK, LLMConfig())
    step = only_step(answer)
    assert (step.input_tokens, step.output_tokens) == tokens
    assert step.cost_usd == pytest.approx((tokens[0] * 1.0 + tokens[1] * 2.0) / 1e6)
    assert f"input tokens: {cache} the provider's cache, priced at the input rate" in (step.detail or ""), step.detail


@pytest.mark.parametrize("price", [None, {"input_per_mtok": 3.0}], ids=["no-price", "half-a-price"])
@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
async def test_a_model_with_no_price_costs_an_unknown_amount_not_zero(
        upstream: Upstream, price: dict[str, float] | None, streamed: bool) -> None:
    """A model written without ``price`` (or with one rate of two) read $0 a call: a paid call read as free."""
    upstream.reply = stream(["Hi ", "there."], DEEPSEEK_USAGE) if streamed else (lambda p, b: chat(DEEPSEEK_USAGE))
    extra: dict[str, Any] = {"stop_on_loop": streamed, **({"price": price} if price else {})}
    answer = await model("openai/paid", f"{upstream.url}/v1", **extra).complete(ASK, LLMConfig())
    step = only_step(answer)
    assert (step.input_tokens, step.output_tokens, step.cost_usd) == (100, 30, None)
    free = await model("openai/free", f"{upstream.url}/v1", stop_on_loop=streamed,
                       price={"input_per_mtok": 0, "output_per_mtok": 0}).complete(ASK, LLMConfig())
    assert free.cost_usd == 0.0  # a free model says so with its price: $0, known


def test_a_job_s_cost_is_unknown_where_one_billed_call_s_is() -> None:
    """The job's total summed the known costs and left the unknown ones out: $0.01 said for a job
    one of whose answers cost an amount nobody knows."""
    from swarm.envelope import totals_of

    priced = {"step": "draft", "kind": "llm", "outcome": "ok", "input_tokens": 100, "output_tokens": 30,
              "cost_usd": 0.01}
    unpriced = {**priced, "step": "review", "cost_usd": None}
    billed_failure = {**priced, "step": "review", "outcome": "error", "cost_usd": None}  # an unusable answer
    refused = {"step": "review", "kind": "llm", "outcome": "error", "cost_usd": None}  # connection refused
    node = {"step": "draft", "kind": "node", "outcome": "ok", "cost_usd": None}
    assert totals_of([priced, unpriced, node])["cost_usd"] is None
    assert totals_of([priced, billed_failure, node])["cost_usd"] is None
    totals = totals_of([priced, refused, node, {**priced, "cost_usd": 0.02, "outcome": "error"}])
    assert totals == {"input_tokens": 200, "output_tokens": 60, "cost_usd": 0.03, "provider_calls": 3}


def test_a_stopped_job_s_used_cost_is_unknown_where_one_billed_call_s_is() -> None:
    """A job stopped by its budget said ``used.cost_usd: 0.0`` after an answer of unknown cost."""
    from graphs.budget import JobMeter

    config = SwarmConfig.model_validate({
        "providers": {"llm": {"default": "m", "tiers": {"fast": ["m"], "balanced": ["m"], "premium": ["m"]}}},
        "models": {"m": {"family": "f", "litellm_model": "openai/m"}},
        "routing": {"delegation": {"critical": {"primary": "m", "reviewer": None}}},
    })
    meter = JobMeter(config=config, tier="balanced")
    meter.count([TraceStep(step="draft", model="m", input_tokens=100, output_tokens=30, cost_usd=0.01)])
    assert meter.partial("review")["used"]["cost_usd"] == 0.01
    meter.count([TraceStep(step="review", model="m", input_tokens=100, output_tokens=30, cost_usd=None)])
    assert meter.partial("review")["used"] == {"input_tokens": 200, "output_tokens": 60, "cost_usd": None}
    resumed = JobMeter(config=config, tier="balanced")
    resumed.carry([{"step": "draft", "kind": "llm", "outcome": "ok", "input_tokens": 5, "cost_usd": None}])
    assert resumed.partial("review")["used"]["cost_usd"] is None
