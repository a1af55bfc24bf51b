"""Research in auto mode never asks the local model for a report it would throw away, and says why
the report quotes its sources when no writer answered. Real litellm against a loopback
OpenAI-compatible server: a DeepSeek that answers HTTP 500, a "local" model that answers.

A reviewer's repro: DeepSeek failed the write step (its circuit still closed), the chain went on
to SmolLM2, which spent 48-65 s writing a report that auto mode then replaced with quotes; the
job took 53-77 s, past the MCP wait. And with DeepSeek's circuit open, the quoted report came
with no warning at all."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeOpenAI, make_swarm_config
from test_research_graph import _context, _local_chain

from graphs.research.action import ResearchInput, research
from graphs.research.writer_chain import ask_writer
from providers.base import LLMConfig, Message
from providers.circuit import CircuitBoard
from providers.llm.router import LLMRouter, build_llm_router

KEY_ENV = "SWARM_TEST_R33R_DEEPSEEK_KEY"
QUESTION = "How do LangGraph checkpoints resume a run?"
NOT_ASKED = "not asked: auto mode quotes the sources instead of a local model's report"
LOCAL_UPSTREAM = "local-writer"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture(autouse=True)
def clean(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    server.reset()
    monkeypatch.setenv(KEY_ENV, "sk-test-r33r-0123456789abcdef")


def _router(server: FakeOpenAI, board: CircuitBoard | None = None) -> LLMRouter:
    """deepseek-x (HTTP 500 at every call, its key set), then the local family's model, which answers."""
    def spec(upstream: str, family: str, key: str | None) -> dict[str, Any]:
        return {"family": family, "litellm_model": f"openai/{upstream}", "api_base": f"{server.url}/v1",
                **({"api_key_env": key} if key else {}), "timeout_s": 5}

    cfg = make_swarm_config({"deepseek-x": spec("status-500", "deepseek", KEY_ENV),
                             "local": spec(LOCAL_UPSTREAM, "local", None)}, fallback_chain=["local"])
    return build_llm_router(cfg.providers.llm, cfg.models, circuits=board or CircuitBoard())


async def test_auto_mode_stops_the_write_chain_before_the_local_model(server: FakeOpenAI, corpus: Path, tmp_path: Path) -> None:
    ctx, _ = _context(tmp_path, _router(server), _local_chain(corpus, tmp_path))
    result = await research(ResearchInput(question=QUESTION, mode="auto", depth="quick"), ctx)
    asked = [r.body.get("messages") for r in server.requests_for(LOCAL_UPSTREAM)]
    # the local model neither planned (DeepSeek failed that; the plan's chain ends before it) nor wrote
    assert len(asked) == 0, [str(m)[:200] for m in asked]
    assert len(server.requests_for("status-500")) == 2  # plan and write: DeepSeek's circuit stays closed
    assert result["mode"] == "extractive" and result["report"].strip()
    steps = [s for s in result["trace"] if s["step"] == "write"]
    llm = [(s["model"], s["outcome"], s.get("error_class")) for s in steps if s["kind"] == "llm"]
    assert llm == [("deepseek-x", "error", "ProviderUnavailable"), ("local", "skipped", None)], steps
    assert NOT_ASKED in steps[1]["detail"], steps
    node = next(s for s in steps if s["kind"] == "node")
    assert node["outcome"] == "error" and "deepseek-x: ProviderUnavailable; local not asked" in node["detail"], node
    assert any("no model could write it (deepseek-x: ProviderUnavailable)" in w and "quotes the sources" in w
               for w in result["warnings"]), result["warnings"]


async def test_explicit_abstractive_mode_still_lets_the_local_model_write(server: FakeOpenAI, corpus: Path,
                                                                         tmp_path: Path) -> None:
    ctx, _ = _context(tmp_path, _router(server), _local_chain(corpus, tmp_path))
    result = await research(ResearchInput(question=QUESTION, mode="abstractive", depth="quick"), ctx)
    steps = [s for s in result["trace"] if s["step"] == "write" and s["kind"] == "llm"]
    assert [(s["model"], s["outcome"]) for s in steps] == [("deepseek-x", "error"), ("local", "ok")], steps
    assert len(server.requests_for(LOCAL_UPSTREAM)) >= 1  # the write (it is never asked to plan)


async def test_an_open_writer_circuit_gives_quotes_with_a_warning_naming_it(server: FakeOpenAI, corpus: Path,
                                                                            tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    board = CircuitBoard()
    for _ in range(3):
        board.record_failure("deepseek-x", "HTTP 500: upstream error")
    ctx, _ = _context(tmp_path, _router(server, board), _local_chain(corpus, tmp_path))
    result = await research(ResearchInput(question=QUESTION, mode="auto", depth="quick"), ctx)
    assert result["mode"] == "extractive" and not server.requests_for("status-500")
    assert len(server.requests_for(LOCAL_UPSTREAM)) == 0  # not asked to plan, nor to write
    assert any("no model could write it (deepseek-x: its circuit is open)" in w and "quotes the sources" in w
               for w in result["warnings"]), result["warnings"]

    # with no key set, the local model is the only writer by design: quotes, and nothing to warn of
    monkeypatch.delenv(KEY_ENV)
    ctx, _ = _context(tmp_path / "keyless", _router(server), _local_chain(corpus, tmp_path / "keyless"))
    result = await research(ResearchInput(question=QUESTION, mode="auto", depth="quick"), ctx)
    assert result["mode"] == "extractive" and not any("no model could write it" in w for w in result["warnings"])


async def test_a_stopped_chain_gives_back_the_local_models_half_open_probe(server: FakeOpenAI) -> None:
    """The router acquires a model's circuit before it says it calls it: a half-open one kept its
    probe "in flight" for good, and every later call skipped the local model."""
    now = [0.0]
    board = CircuitBoard(clock=lambda: now[0])
    for _ in range(3):
        board.record_failure("local", "crashed")
    now[0] += 60.0  # past the cooldown: half-open, one probe may go through
    router = _router(server, board)
    response, trace, error, stopped = await ask_writer(router, [Message(role="user", content="write")],
                                                       LLMConfig(step="write"), "local")
    assert response is None and stopped == "local" and not server.requests_for(LOCAL_UPSTREAM)
    assert error == "deepseek-x: ProviderUnavailable", error
    assert board.snapshot()["local"]["probe_in_flight"] is False
    assert board.acquire("local") is None  # and the next caller gets it
