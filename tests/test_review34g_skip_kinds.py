"""Why the router passed a model over is a field of its trace step, and the research writer reads it.

``writer_chain.failure`` told a setup skip (a key unset: the local model is then the writer by
design, nothing to warn of) from a failure (an open circuit) by the words " is not set" in the
skip's reason. An open circuit's reason ends with the last error that opened it: an upstream's
401 saying its key header "is not set" made the open circuit read as the setup, and research in
auto mode quoted its sources with no word that the writer's circuit was open. The router now
says each kind (``TraceStep.skip``: key_unset, not_built, circuit_open, timed_out, stopped;
``LLMRouter.skips_ahead``) and the writer reads that; every detail reads as before. Real litellm
over HTTP to a loopback OpenAI-compatible server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeOpenAI, make_swarm_config
from test_research_graph import _context, _local_chain
from test_review33r_research_writer import KEY_ENV, LOCAL_UPSTREAM, NOT_ASKED, QUESTION, _router

from graphs.research.action import ResearchInput, research
from graphs.research.writer_chain import ask_writer, failed_writers
from providers.base import LLMConfig, Message, job_memory, remember_timeout
from providers.circuit import CircuitBoard
from providers.llm.router import LLMRouter, build_llm_router

WRITE = [Message(role="user", content="Write the report.")]
UNSET_ENV = "SWARM_TEST_R34G_UNSET_KEY"
#: an upstream's refusal whose words read like a key unset here: the circuit it opens is a failure
AUTH_ERROR = "HTTP 401: AuthenticationError: the x-api-key header is not set"
TIMED_OUT = "no answer within 5 s at plan earlier in this job: not waited for again in it"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(autouse=True)
def clean(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    server.reset()
    monkeypatch.setenv(KEY_ENV, "sk-test-r34g-0123456789abcdef")
    monkeypatch.delenv(UNSET_ENV, raising=False)


def opened_by_auth_error() -> CircuitBoard:
    board = CircuitBoard()
    for _ in range(3):
        board.record_failure("deepseek-x", AUTH_ERROR)
    return board


def every_kind_router(server: FakeOpenAI, board: CircuitBoard) -> LLMRouter:
    """keyless (its key unset), unbuilt (no provider), broken (circuit open), timed (timed out
    earlier in the job), then ``local``, which answers."""
    def spec(upstream: str, family: str, key: str | None = None) -> dict[str, Any]:
        return {"family": family, "litellm_model": f"openai/{upstream}", "api_base": f"{server.url}/v1",
                **({"api_key_env": key} if key else {}), "timeout_s": 5}

    cfg = make_swarm_config({"keyless": spec("keyless-up", "gemini", UNSET_ENV), "unbuilt": spec("unbuilt-up", "claude"),
                             "broken": spec("broken-up", "deepseek"), "timed": spec("timed-up", "qwen"),
                             "local": spec(LOCAL_UPSTREAM, "local")},
                            fallback_chain=["unbuilt", "broken", "timed", "local"])
    built = build_llm_router(cfg.providers.llm, cfg.models, circuits=board)
    return LLMRouter(cfg.providers.llm, cfg.models, {n: m for n, m in built.models.items() if n != "unbuilt"}, board)


async def test_each_skip_says_its_kind_in_a_field_and_its_reason_as_before(server: FakeOpenAI) -> None:
    board = CircuitBoard()
    for _ in range(3):
        board.record_failure("broken", "HTTP 500: upstream error")
    router = every_kind_router(server, board)
    with job_memory():
        remember_timeout("timed", TIMED_OUT)
        ahead = router.skips_ahead(LLMConfig())
        passed = router.passed_over(LLMConfig())
        answer = await router.complete(WRITE, LLMConfig(step="write"))
    assert answer.text == f"ok from {LOCAL_UPSTREAM}" and not server.requests_for("broken-up")
    steps = [(s.model, s.outcome, s.skip) for s in answer.attempts]
    assert steps == [("keyless", "skipped", "key_unset"), ("unbuilt", "skipped", "not_built"),
                     ("broken", "skipped", "circuit_open"), ("timed", "skipped", "timed_out"), ("local", "ok", None)]
    details = [s.detail or "" for s in answer.attempts]
    assert details[:2] == [f"{UNSET_ENV} is not set", "no provider was built for this model"]
    assert details[2].startswith("circuit open until ") and details[3] == TIMED_OUT
    assert [(s.model, s.kind) for s in ahead] == [("keyless", "key_unset"), ("unbuilt", "not_built"),
                                                   ("broken", "circuit_open"), ("timed", "timed_out")]
    assert passed == [f"keyless: {UNSET_ENV} is not set", "unbuilt: no provider was built for this model",
                      "broken: its circuit is open", f"timed: {TIMED_OUT}"]  # the lines as before


async def test_an_open_circuit_whose_last_error_reads_like_the_setup_is_a_failure(server: FakeOpenAI) -> None:
    """Before: the writer said only that the local model was not asked, and no writer had failed."""
    router = _router(server, opened_by_auth_error())
    response, trace, error, stopped = await ask_writer(router, WRITE, LLMConfig(step="write"), "local")
    assert response is None and stopped == "local" and not server.requests_for("status-500")
    assert [(s["model"], s["skip"]) for s in trace] == [("deepseek-x", "circuit_open"), ("local", "stopped")]
    assert AUTH_ERROR in trace[0]["detail"] and trace[1]["detail"] == NOT_ASKED  # the details as before
    assert error == "deepseek-x: its circuit is open"
    assert failed_writers(router, LLMConfig(step="write")) == "deepseek-x: its circuit is open"


async def test_a_key_unset_is_the_setup_and_not_said_as_a_failure(server: FakeOpenAI,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    router = _router(server)
    _, trace, error, stopped = await ask_writer(router, WRITE, LLMConfig(step="write"), "local")
    assert [(s["model"], s["skip"]) for s in trace] == [("deepseek-x", "key_unset"), ("local", "stopped")]
    assert stopped == "local" and error == "local " + NOT_ASKED
    assert failed_writers(router, LLMConfig(step="write")) == ""


def claude_first_router(server: FakeOpenAI, board: CircuitBoard) -> LLMRouter:
    """deepseek-x (HTTP 500; research's route prefers its family), claude-x (the default; its
    circuit open in these tests), then ``local``."""
    def spec(upstream: str, family: str, key: str | None) -> dict[str, Any]:
        return {"family": family, "litellm_model": f"openai/{upstream}", "api_base": f"{server.url}/v1",
                **({"api_key_env": key} if key else {}), "timeout_s": 5}

    cfg = make_swarm_config({"claude-x": spec("claude-up", "claude", KEY_ENV),
                             "deepseek-x": spec("status-500", "deepseek", KEY_ENV),
                             "local": spec(LOCAL_UPSTREAM, "local", None)}, fallback_chain=["deepseek-x", "local"])
    return build_llm_router(cfg.providers.llm, cfg.models, circuits=board)


async def test_auto_research_names_a_writer_whose_circuit_such_an_error_opened(server: FakeOpenAI, corpus: Path,
                                                                               tmp_path: Path) -> None:
    """deepseek-x failing, claude-x's circuit open: the write call is made (deepseek-x is callable)
    and stopped before the local model; the warning named deepseek-x alone, as if claude-x were
    only keyless."""
    board = CircuitBoard()
    for _ in range(3):
        board.record_failure("claude-x", AUTH_ERROR)
    ctx, _ = _context(tmp_path, claude_first_router(server, board), _local_chain(corpus, tmp_path))
    result = await research(ResearchInput(question=QUESTION, mode="auto", depth="quick"), ctx)
    assert result["mode"] == "extractive" and not server.requests_for("claude-up")
    assert len(server.requests_for("status-500")) == 2  # plan and write
    write = [s for s in result["trace"] if s["step"] == "write"]
    assert [(s["model"], s["outcome"], s["skip"]) for s in write if s["kind"] == "llm"] == [
        ("deepseek-x", "error", None), ("claude-x", "skipped", "circuit_open"), ("local", "skipped", "stopped")]
    failed = "deepseek-x: ProviderUnavailable; claude-x: its circuit is open"
    node = next(s for s in write if s["kind"] == "node")
    assert f"{failed}; local not asked" in node["detail"], node
    assert any(f"no model could write it ({failed})" in w and "quotes the sources" in w
               for w in result["warnings"]), result["warnings"]
