"""Keyless research: the planner and the opening.

A newcomer with no key asked "How does LangGraph checkpointing make a run resumable?": the bundled
local model was asked to plan each time (4-14 s on 2 cores) and its plan was refused each time ("the
planner proposed no usable query": it answered the question again, word for word), and the report's
"In short" quoted the project's layer list and the list of savers while the answer (invoke again
with None and the same thread id) stood only in the body. The local model answers here from a
loopback OpenAI-compatible server, through litellm, as the bundled one does; the search is the
real local index over the project's own notes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fake_openai import Behaviour, FakeOpenAI
from test_research_graph import _context, _local_chain

from core.config import DEFAULT_CONFIG_PATH, load_config
from graphs.research.action import ResearchInput, research
from providers.circuit import CircuitBoard
from providers.llm.router import build_llm_router

QUESTION = "How does LangGraph checkpointing make a run resumable?"
#: what the bundled model answered for the plan, in 4 of 4 runs
ITS_PLAN = json.dumps({"queries": [QUESTION]})
NOTES = Path(__file__).resolve().parent.parent / "docs" / "corpus"


@pytest.fixture(autouse=True)
def _keyless(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DEEPSEEK_API_KEY", "GEMINI_API_KEY", "ANTHROPIC_API_KEY", "TAVILY_API_KEY", "SEARXNG_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    """The project's own notes, the corpus a keyless research job searches."""
    root = tmp_path / "notes"
    shutil.copytree(NOTES, root)
    return root


async def _research(tmp_path: Path, notes: Path, server: FakeOpenAI, mode: str) -> dict:
    config = load_config(DEFAULT_CONFIG_PATH, env={"SWARM_HOME": str(tmp_path / "home")})
    local = config.models["local"].model_copy(update={"litellm_model": "openai/small", "api_base": f"{server.url}/v1",
                                                     "local_server": None, "timeout_s": 10})
    router = build_llm_router(config.providers.llm, {**config.models, "local": local}, circuits=CircuitBoard())
    ctx, events = _context(tmp_path, router, _local_chain(notes, tmp_path))
    result = await research(ResearchInput(question=QUESTION, mode=mode), ctx)  # type: ignore[arg-type]
    return {**result, "events": events}


async def test_a_keyless_research_does_not_ask_the_local_model_to_plan(tmp_path: Path, notes: Path) -> None:
    with FakeOpenAI() as server:
        server.script("small", Behaviour.answer(ITS_PLAN))
        result = await _research(tmp_path, notes, server, "extractive")
        asked = [json.dumps(r.body["messages"])[:200] for r in server.requests_for("small")]
    assert asked == [], asked  # no plan call: nothing else in an extractive job calls a model
    plan = next(s for s in result["trace"] if s["step"] == "plan" and s["kind"] == "node")
    assert plan["detail"].startswith("no plan (local not asked: the bundled local model plans no usable search)"), plan
    local = next(s for s in result["trace"] if s["step"] == "plan" and s["kind"] == "llm" and s["model"] == "local")
    assert local["outcome"] == "skipped" and local["skip"] == "stopped", local
    assert result["queries"] == [QUESTION]  # the question itself is searched, as when a plan is unusable
    assert "checkpoint" in result["report"].lower()


async def test_the_opening_quotes_the_sentence_that_answers_the_question(tmp_path: Path, notes: Path) -> None:
    with FakeOpenAI() as server:
        result = await _research(tmp_path, notes, server, "extractive")
    opening = result["report"].split("## What the sources say")[0]
    assert "To resume an interrupted run, invoke again with `None` as input and the same thread id" in opening, opening
    assert "Savers:" not in opening, opening  # a list that answers nothing
    # the answer is quoted once: in the opening, not again in the body
    assert result["report"].count("To resume an interrupted run") == 1, result["report"]
    assert result["grounding"]["supported"] == result["grounding"]["factual"], result["grounding"]


async def test_a_research_route_whose_primary_is_local_still_plans_with_the_keyed_model(
        tmp_path: Path, notes: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``routing.delegation.research.primary: local`` with a DeepSeek key: the planner's chain puts the
    local model last and stops before it, so DeepSeek plans (before, the chain ended at once: the
    local model came first and the stop before it left nothing to ask)."""
    monkeypatch.setenv("DEEPSEEK_API_KEY", "sk-test-35-planner")
    with FakeOpenAI() as server:
        server.script("ds", Behaviour.answer(json.dumps({"queries": ["langgraph thread id resume"]})))
        config = load_config(DEFAULT_CONFIG_PATH, env={"SWARM_HOME": str(tmp_path / "home"),
                                                       "DEEPSEEK_API_KEY": "sk-test-35-planner"})
        models = {**config.models}
        for name in ("deepseek-v3.1-q8", "deepseek-v3.1-q4"):
            models[name] = models[name].model_copy(update={"litellm_model": "openai/ds", "api_base": f"{server.url}/v1",
                                                           "extra_params": {}})
        models["local"] = models["local"].model_copy(update={"litellm_model": "openai/small", "api_base": f"{server.url}/v1",
                                                             "local_server": None, "timeout_s": 10})
        routes = {**config.routing.delegation,
                  "research": config.routing.delegation["research"].model_copy(update={"primary": "local"})}
        config = config.model_copy(update={"routing": config.routing.model_copy(update={"delegation": routes})})
        router = build_llm_router(config.providers.llm, models, circuits=CircuitBoard())
        ctx, _ = _context(tmp_path, router, _local_chain(notes, tmp_path))
        ctx.config = config
        result = await research(ResearchInput(question=QUESTION, mode="extractive"), ctx)  # type: ignore[arg-type]
        planned = server.requests_for("ds")
        local = server.requests_for("small")
    assert planned and not local, (len(planned), len(local))
    assert "langgraph thread id resume" in result["queries"], result["queries"]
