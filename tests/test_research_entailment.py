"""The reviewer's entailment check on the sentences the words alone cannot settle: the research
graph over a real local index, with litellm against the loopback fake as a DeepSeek writer and a
Claude reviewer (two families)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_openai import Behaviour, FakeOpenAI, RecordedRequest
from test_research_graph import _local_chain

from core.config import DEFAULT_CONFIG_PATH, BudgetSpec, SwarmConfig, load_config
from core.errors import BudgetExceeded, ConfigError
from graphs.budget import job_scope
from graphs.context import JobContext, Providers
from graphs.research.action import ResearchInput, research
from graphs.research.grounding import ReviewerVerdict, ground
from graphs.research.passages import split_passages
from providers.circuit import CircuitBoard
from providers.llm.router import build_llm_router

QUESTION = "How do LangGraph checkpoints resume a run?"
PLAN = json.dumps({"queries": ["langgraph checkpoint durability"]})
SUPPORTED = "A checkpointer saves graph state after every step [1]."
CONFIRMED = "Saved state lets LangGraph continue a stopped run where it left off [1]."
REJECTED = "LangGraph checkpoints are encrypted and compressed with a secret key [1]."
CLEARLY_WRONG = "The moon is made of green cheese [1]."
REPORT = " ".join([SUPPORTED, CONFIRMED, REJECTED, CLEARLY_WRONG])
PASSAGE = "With durability sync a resumed run re-runs only the interrupted node."
APPROVED = json.dumps({"approved": True, "issues": []})
VERDICTS = json.dumps({"verdicts": [
    {"id": 1, "entailed": True, "reason": "the passage says a resumed run re-runs only the interrupted node"},
    {"id": 2, "entailed": False, "reason": "the passage says nothing about encryption"},
]})


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


def _config(server: FakeOpenAI, reviewer: str | None = "claude", cap: int = 12, **keys: str) -> SwarmConfig:
    """DeepSeek writes (model ``ds``), Claude reviews (``cl``), local ends the chain (``small``)."""
    base = f"{server.url}/v1"

    def model(family: str, name: str) -> dict[str, Any]:
        spec: dict[str, Any] = {"family": family, "litellm_model": f"openai/{name}", "api_base": base}
        if family in keys:
            spec["api_key_env"] = keys[family]
        return spec

    return SwarmConfig.model_validate({
        "providers": {"llm": {"default": "ds-chat", "tiers": {"balanced": ["ds-chat"]},
                              "fallback_chain": ["deepseek", "claude", "local"]}},
        "models": {"ds-chat": model("deepseek", "ds"), "cl-sonnet": model("claude", "cl"), "local": model("local", "small")},
        "routing": {"delegation": {"research": {"primary": "deepseek+search", "reviewer": reviewer}}},
        "limits": {"max_entailment_sentences": cap},
    })


async def _research(server: FakeOpenAI, config: SwarmConfig, corpus: Path, tmp_path: Path) -> dict[str, Any]:
    router = build_llm_router(config.providers.llm, config.models, circuits=CircuitBoard())
    providers = Providers(config, {"llm": lambda: router, "search": lambda: _local_chain(corpus, tmp_path)})
    ctx = JobContext(job_id="job-entail", config=config, providers=providers)
    return await research(ResearchInput(question=QUESTION, mode="abstractive"), ctx)


def _entail_requests(server: FakeOpenAI) -> list[RecordedRequest]:
    return [r for r in server.requests if "You check sentences" in json.dumps(r.body.get("messages"))]


def _reasons(result: dict[str, Any]) -> dict[str, str]:
    return {u["sentence"]: u["reason"] for u in result["unsupported_sentences"]}


def _plain(sentence: str) -> str:
    return sentence.replace(" [1]", "")


async def test_reviewer_confirms_one_undecided_sentence_and_rejects_another(server, corpus, tmp_path):
    server.script("ds", Behaviour.answer(PLAN), Behaviour.answer(REPORT))
    server.script("cl", Behaviour.answer(VERDICTS), Behaviour.answer(APPROVED))
    result = await _research(server, _config(server), corpus, tmp_path)

    assert CONFIRMED in result["report"] and SUPPORTED in result["report"]
    assert "encrypted" not in result["report"] and "cheese" not in result["report"]
    reasons = _reasons(result)
    assert reasons[_plain(REJECTED)] == "reviewer cl-sonnet: not entailed (the passage says nothing about encryption)"
    assert "content words" in reasons[_plain(CLEARLY_WRONG)]  # clear: never sent
    assert result["support"] == 0.5  # 2 of 4: the confirmed sentence counts as supported
    confirmed = next(c for c in result["citations"] if c["claim"].startswith("Saved state"))
    assert confirmed["passage"]["reason"] == "reviewer: cl-sonnet"
    grounding = result["grounding"]
    assert grounding["undecided"] == 2 and grounding["settled_by_reviewer"] == 2
    assert grounding["entailed"] == 1 and grounding["not_entailed"] == 1
    assert grounding["reviewer"] == {"status": "done", "model": "cl-sonnet", "asked": 2, "reason": ""}

    [request] = _entail_requests(server)  # one batched call for both sentences
    assert request.model == "cl" and request.body.get("response_format")  # schema-constrained
    prompt = request.body["messages"][-1]["content"]
    assert PASSAGE in prompt and _plain(CONFIRMED) in prompt and _plain(REJECTED) in prompt
    assert "cheese" not in prompt
    [call] = [s for s in result["trace"] if s["step"] == "entail" and s["kind"] == "llm"]
    assert call["provider"] == "claude" and call["model"] == "cl-sonnet" and call["outcome"] == "ok"
    assert call["input_tokens"] == 11 and call["output_tokens"] == 7 and call["latency_ms"] > 0


async def test_a_reviewer_of_the_writers_family_is_not_asked(server, corpus, tmp_path):
    server.script("ds", Behaviour.answer(PLAN), Behaviour.answer(REPORT), Behaviour.answer(APPROVED))
    result = await _research(server, _config(server, reviewer="ds-chat"), corpus, tmp_path)

    assert _entail_requests(server) == [] and server.requests_for("cl") == []
    assert CONFIRMED not in result["report"] and SUPPORTED in result["report"]
    reasons = _reasons(result)
    assert "content words" in reasons[_plain(CONFIRMED)] and "content words" in reasons[_plain(REJECTED)]
    assert result["support"] == 0.25 and result["grounding"]["settled_by_reviewer"] == 0
    assert result["grounding"]["reviewer"]["status"] == "skipped"
    [skip] = [s for s in result["trace"] if s["step"] == "entail"]
    assert skip["outcome"] == "skipped" and "writer's family (deepseek)" in skip["detail"]


async def test_a_failing_reviewer_leaves_the_deterministic_outcome(server, corpus, tmp_path):
    server.script("ds", Behaviour.answer(PLAN), Behaviour.answer(REPORT))
    server.script("cl", Behaviour.fail(503))
    result = await _research(server, _config(server), corpus, tmp_path)

    assert len(_entail_requests(server)) == 2  # claude failed; the chain fell to the writer's model
    assert CONFIRMED not in result["report"] and "encrypted" not in result["report"]
    assert "content words" in _reasons(result)[_plain(CONFIRMED)] and result["support"] == 0.25
    reviewer = result["grounding"]["reviewer"]
    assert reviewer["status"] == "unavailable" and "in place of the reviewer claude" in reviewer["reason"]
    steps = [s for s in result["trace"] if s["step"] == "entail"]
    assert [(s["provider"], s["outcome"]) for s in steps if s["kind"] == "llm"] == [("claude", "error"), ("deepseek", "ok")]
    [node] = [s for s in steps if s["kind"] == "node"]
    assert node["outcome"] == "error" and "its verdicts are not used" in node["detail"]
    assert any("removed unconfirmed" in w for w in result["warnings"])


async def test_keyless_the_reviewer_is_not_asked_and_the_cap_limits_what_is_sent(server, corpus, tmp_path, monkeypatch):
    monkeypatch.delenv("DEEPSEEK_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    server.script("small", Behaviour.answer(REPORT))  # the local model writes; it is never asked to plan
    keyless = _config(server, deepseek="DEEPSEEK_API_KEY", claude="ANTHROPIC_API_KEY")
    result = await _research(server, keyless, corpus, tmp_path / "keyless")
    assert _entail_requests(server) == [] and CONFIRMED not in result["report"]
    assert "skipped earlier in this job" in result["grounding"]["reviewer"]["reason"]

    server.reset()
    server.script("ds", Behaviour.answer(PLAN), Behaviour.answer(REPORT))
    server.script("cl", Behaviour.answer(json.dumps({"verdicts": [{"id": 1, "entailed": True, "reason": "ok"}]})),
                  Behaviour.answer(APPROVED))
    result = await _research(server, _config(server, cap=1), corpus, tmp_path / "cap")
    [request] = _entail_requests(server)
    assert "encrypted" not in request.body["messages"][-1]["content"]  # the second one was over the cap
    assert CONFIRMED in result["report"] and result["grounding"]["reviewer"]["asked"] == 1
    assert "content words" in _reasons(result)[_plain(REJECTED)]

    server.reset()
    server.script("ds", Behaviour.answer(PLAN), Behaviour.answer(REPORT))
    result = await _research(server, _config(server, cap=0), corpus, tmp_path / "off")
    assert _entail_requests(server) == [] and "turned off" in result["grounding"]["reviewer"]["reason"]


async def test_the_call_runs_under_the_jobs_budget(server, corpus, tmp_path):
    """A call that would pass the budget is refused before it is sent: the check keeps the
    deterministic outcome, and the job then stops at the review with the checked report."""
    server.script("ds", Behaviour.answer(PLAN), Behaviour.answer(REPORT, prompt_tokens=5000))
    config = _config(server).model_copy(update={"budgets": {"balanced": BudgetSpec(max_tokens=5200)}})
    with job_scope(config, {}), pytest.raises(BudgetExceeded) as stopped:
        await _research(server, config, corpus, tmp_path)
    assert _entail_requests(server) == [] and server.requests_for("cl") == []
    report = stopped.value.partial["report"]
    assert SUPPORTED in report and CONFIRMED not in report
    [skip] = [s for s in stopped.value.trace if s["step"] == "entail" and s["kind"] == "node"]
    assert skip["outcome"] == "skipped" and "budget would be passed" in skip["detail"]


def test_only_undecided_sentences_take_a_verdict():
    passages = {1: split_passages("# Fallback\n\nWhen a model fails, the router tries the next model of the fallback chain.\n")}
    report = "The router picks a different model when one is down [1]. The moon is made of cheese [1]."
    first = ground(report, passages)
    [undecided] = first.undecided
    assert undecided["sentence"] == "The router picks a different model when one is down."
    assert undecided["passages"][0]["text"].startswith("When a model fails")
    verdicts = {undecided["key"]: ReviewerVerdict(True, "cl"), "the moon is made of cheese": ReviewerVerdict(True, "cl")}
    second = ground(report, passages, verdicts=verdicts)
    assert "different model" in second.report and "cheese" not in second.report  # a clear case stays clear
    assert second.supported == 1 and second.entailed == 1 and not second.undecided


def test_a_negative_cap_is_refused_naming_the_key(tmp_path):
    path = tmp_path / "config.yaml"
    shutil.copy(DEFAULT_CONFIG_PATH, path)
    text = path.read_text(encoding="utf-8")
    assert "max_entailment_sentences: 12" in text
    path.write_text(text.replace("max_entailment_sentences: 12", "max_entailment_sentences: -1"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"limits\.max_entailment_sentences: Input should be greater than or equal to 0"):
        load_config(path)
