"""A retired or misspelt model name is said plainly and costs one fast refusal, wherever the user
meets it: DeepSeek retired ``deepseek-chat`` on 2026-07-24 and every call of a user with
DEEPSEEK_API_KEY failed as "HTTP 400: BadRequestError: DeepseekException - {...Model Not Exist...}",
a plain ``ProviderError``: the model was asked again by every job (its circuit opened only after 3
failures, for 30 s), and ``swarm doctor`` said OK (DeepSeek's ``GET /models`` answered).

A loopback server answers each provider's documented error for a model it does not serve, through
litellm's real route of that provider: DeepSeek's HTTP 400 "Model Not Exist" (OpenAI format),
Anthropic's 404 ``not_found_error`` "model: claude-x", Gemini's 404 "models/gemini-x is not found
for API version v1beta, ...", an OpenAI-compatible server's (vLLM's) 404 "The model `x` does not
exist."; and the free lookups doctor sends: DeepSeek's ``GET /models`` list, Anthropic's
``GET /v1/models/{id}``, Gemini's ``GET /models/{id}``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from shipped_config import with_local_model_at
from shipped_config import write as write_shipped
from test_doctor import findings, write_config

from core.config import SwarmConfig, load_config
from core.errors import AllProvidersFailed
from providers.base import LLMConfig, Message
from providers.circuit import NOT_SERVED_HOLD_S, CircuitBoard
from providers.llm.router import build_llm_router

SECRET = "sk-q33q-secret-0123456789abcdef"
ASK = [Message(role="user", content="Say hello.")]

#: what each provider answers for a model it does not serve (status, body)
DEEPSEEK_GONE = (400, {"error": {"message": "Model Not Exist", "type": "invalid_request_error",
                                 "param": None, "code": "invalid_request_error"}})
ANTHROPIC_GONE = (404, {"type": "error", "error": {"type": "not_found_error", "message": "model: claude-x"}})
GEMINI_GONE = (404, {"error": {"code": 404, "message": "models/gemini-x is not found for API version v1beta, or is"
                               " not supported for generateContent. Call ListModels to see the list of available"
                               " models and their supported methods.", "status": "NOT_FOUND"}})
VLLM_GONE = (404, {"object": "error", "message": "The model `x` does not exist.", "type": "NotFoundError",
                   "param": None, "code": 404})


def _answer(body: dict[str, Any]) -> tuple[int, Any]:
    """An OpenAI-compatible answer, streamed (server-sent events) when asked so."""
    if body.get("stream"):
        delta = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m",
                 "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hello."}, "finish_reason": None}]}
        end = {**delta, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        return 200, [f"data: {json.dumps(delta)}\n\n", f"data: {json.dumps(end)}\n\n", "data: [DONE]\n\n"]
    return 200, {"id": "c", "object": "chat.completion", "created": 1, "model": "m",
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello."}, "finish_reason": "stop"}],
                 "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}


class Providers:
    """One loopback server speaking as DeepSeek (``/chat/completions``, ``/models``), Anthropic
    (``/v1/messages``, ``/v1/models/{id}``), Gemini (``/models/{id}:generateContent``,
    ``/models/{id}``) and an OpenAI-compatible server (``/v1/chat/completions``, ``/v1/models``),
    each serving only the names in ``SERVED``; every request's path is kept in ``posts``/``gets``."""

    SERVED = {"deepseek-flash", "deepseek-v4-pro", "claude-opus-5-5", "gemini-2.5-flash-lite", "smollm2-135m-instruct"}

    def __init__(self) -> None:
        self.posts: list[str] = []
        self.gets: list[str] = []
        self.headers: list[str] = []
        providers = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, answer: Any) -> None:
                self.send_response(status)
                if isinstance(answer, list):
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

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                providers.posts.append(self.path)
                providers.headers.append(str(self.headers))
                self._send(*providers.chat(self.path, body))

            def do_GET(self) -> None:  # noqa: N802
                providers.gets.append(self.path)
                providers.headers.append(str(self.headers))
                self._send(*providers.lookup(self.path))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def chat(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if path == "/v1/messages":
            return ANTHROPIC_GONE
        if path.startswith("/models/"):
            return GEMINI_GONE
        if body.get("model") not in self.SERVED:
            return DEEPSEEK_GONE if path == "/chat/completions" else VLLM_GONE
        return _answer(body)

    def lookup(self, path: str) -> tuple[int, Any]:
        if path in ("/models", "/v1/models"):
            return 200, {"object": "list", "data": [{"id": n, "object": "model"} for n in sorted(self.SERVED)]}
        name = path.rsplit("/", 1)[-1]
        return (200, {"id": name}) if name in self.SERVED else GEMINI_GONE if path.startswith("/models/") else ANTHROPIC_GONE

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def providers() -> Iterator[Providers]:
    server = Providers()
    yield server
    server.close()


def one_model_config(litellm_model: str, base: str) -> SwarmConfig:
    entry = {"family": "f", "litellm_model": litellm_model, "api_base": base, "api_key_env": "Q33Q_KEY", "timeout_s": 10}
    return SwarmConfig.model_validate({
        "providers": {"llm": {"default": "m", "tiers": {"fast": ["m"], "balanced": ["m"], "premium": ["m"]}}},
        "models": {"m": entry}, "routing": {"delegation": {"critical": {"primary": "m", "reviewer": None}}},
    })


@pytest.mark.parametrize(("litellm_model", "path", "said"), [
    ("deepseek/deepseek-chat", "", "DeepSeek does not serve the model 'deepseek-chat'"),
    ("anthropic/claude-x", "", "Anthropic does not serve the model 'claude-x'"),
    ("gemini/gemini-x", "", "Gemini does not serve the model 'gemini-x'"),
    ("openai/x", "/v1", "the server at its api_base does not serve the model 'x'"),
], ids=["deepseek", "anthropic", "gemini", "openai-compatible"])
async def test_a_model_name_not_served_is_said_plainly_asked_once_and_not_asked_again(
        providers: Providers, monkeypatch: pytest.MonkeyPatch, litellm_model: str, path: str, said: str) -> None:
    monkeypatch.setenv("Q33Q_KEY", SECRET)
    config = one_model_config(litellm_model, providers.url + path)
    circuits = CircuitBoard()
    router = build_llm_router(config.providers.llm, config.models, circuits=circuits)
    plain = f"{said} (retired or misspelt): set models.m.litellm_model in config.yaml"

    with pytest.raises(AllProvidersFailed) as first:
        await router.complete(ASK, LLMConfig())
    [step] = first.value.attempts
    assert (step.outcome, step.error_class, step.detail) == ("error", "ModelNotServed", plain), step
    assert plain in str(first.value)
    assert len(providers.posts) == 1  # no retry of a call that can never succeed
    # its name will not start working by itself: open at once, for far longer than a cooldown
    assert circuits.state("m") == "open"
    assert circuits.describe("m")["open_for_s"] > NOT_SERVED_HOLD_S - 60

    with pytest.raises(AllProvidersFailed) as second:
        await router.complete(ASK, LLMConfig())
    [skipped] = second.value.attempts
    assert skipped.outcome == "skipped" and "no retry or wait mends" in (skipped.detail or ""), skipped
    assert "does not serve the model" in (skipped.detail or "")
    assert len(providers.posts) == 1  # not asked again
    for text in (str(first.value), str(second.value), json.dumps(first.value.to_dict())):
        assert SECRET not in text


async def test_the_shipped_config_falls_over_at_once_from_a_retired_deepseek_name(
        providers: Providers, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The shipped config as it was (``deepseek/deepseek-chat``), DeepSeek at ``DEEPSEEK_API_BASE``:
    the job is answered by the next model of the chain, and the trace says what to fix."""
    raw = with_local_model_at(providers.url)
    raw["models"]["deepseek-v3.1-q8"]["litellm_model"] = "deepseek/deepseek-chat"
    for env in ("GEMINI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv("DEEPSEEK_API_KEY", SECRET)
    monkeypatch.setenv("DEEPSEEK_API_BASE", providers.url)
    config = load_config(write_shipped(tmp_path, raw))
    circuits = CircuitBoard()
    router = build_llm_router(config.providers.llm, config.models, circuits=circuits)

    answer = await router.complete(ASK, LLMConfig())

    assert answer.text == "Hello."
    gone = [s for s in answer.attempts if s.model == "deepseek-v3.1-q8"]
    assert [(s.outcome, s.error_class) for s in gone] == [("error", "ModelNotServed")], answer.attempts
    assert gone[0].detail == ("DeepSeek does not serve the model 'deepseek-chat' (retired or misspelt):"
                              " set models.deepseek-v3.1-q8.litellm_model in config.yaml")
    assert providers.posts.count("/chat/completions") == 1
    assert circuits.state("deepseek-v3.1-q8") == "open"
    assert SECRET not in json.dumps([s.model_dump() for s in answer.attempts])


def test_a_lasting_failure_holds_the_circuit_and_a_failed_probe_holds_it_again() -> None:
    now = [0.0]
    board = CircuitBoard(failure_threshold=3, cooldown_s=30, clock=lambda: now[0])
    board.record_failure("m", "gone", lasting=True)
    assert board.state("m") == "open"
    now[0] = 31.0  # a cooldown later: still open
    assert board.state("m") == "open"
    now[0] = NOT_SERVED_HOLD_S + 1
    assert board.acquire("m") is None  # the probe
    board.record_failure("m", "gone", lasting=True)
    now[0] += 31.0
    assert board.state("m") == "open"
    board.record_success("m")  # what a config edit of the model does (swarm.runtime)
    assert board.state("m") == "closed"


def test_doctor_fails_a_model_name_its_provider_does_not_serve(
        providers: Providers, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Not --quick: each model whose key is set is looked up by name (free: no completion)."""
    def edit(raw: dict[str, Any]) -> None:
        models = raw["models"]
        models["local"]["api_base"] = f"{providers.url}/v1"
        models["local"].pop("local_server", None)
        models["deepseek-v3.1-q8"]["litellm_model"] = "deepseek/deepseek-chat"
        models["claude-sonnet-5-5"].update(litellm_model="anthropic/claude-x", api_base=providers.url)
        models["claude-opus-5-5"]["api_base"] = providers.url
        models["gemini-2.5-flash-lite"].update(litellm_model="gemini/gemini-x", api_base=providers.url)

    monkeypatch.setenv("DEEPSEEK_API_KEY", SECRET)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    monkeypatch.setenv("GEMINI_API_KEY", SECRET)
    monkeypatch.setenv("DEEPSEEK_API_BASE", providers.url)
    monkeypatch.setenv("DEEPSEEK_Q4_API_BASE", providers.url)
    code, found = findings(capsys, write_config(tmp_path, edit))

    assert code == 1
    # a 404 at an api_base of the user's own (here loopback; a gateway may lack the model pages) is a
    # warning; DeepSeek's list of models is its own at any base
    for model, said, status in (("deepseek-v3.1-q8", "DeepSeek does not serve the model 'deepseek-chat'", "fail"),
                                ("claude-sonnet-5-5", "Anthropic does not serve the model 'claude-x'", "warn"),
                                ("gemini-2.5-flash-lite", "Gemini does not serve the model 'gemini-x'", "warn")):
        line = found[f"model {model}"]
        assert line["status"] == status and f"{said} (retired or misspelt)" in line["detail"], line
        assert line["fix"] == f"set models.{model}.litellm_model in config.yaml", line
    assert "; it lists: " in found["model deepseek-v3.1-q8"]["detail"] and "deepseek-flash" in found["model deepseek-v3.1-q8"]["detail"]
    assert found["model deepseek-v3.1-q4"]["status"] == "ok", found["model deepseek-v3.1-q4"]
    assert found["model claude-opus-5-5"]["status"] == "ok", found["model claude-opus-5-5"]
    assert SECRET not in json.dumps(found)
