"""A job whose models all failed at one step says so, naming every attempt, where the caller
reads it (``warnings``, which the CLI prints): research that fell back to quoting its sources
because no model could write the report, and a consensus left without its synthesis. Both came
back COMPLETED with ``warnings: []`` and no reason (litellm against the loopback fake, through
the real dispatcher)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest
from fake_openai import Behaviour, FakeOpenAI
from test_research_graph import _local_chain

from core.config import SwarmConfig
from graphs.context import JobContext, Providers
from providers.circuit import CircuitBoard
from providers.llm.router import build_llm_router
from swarm import cli
from swarm.dispatcher import dispatch

PLAN = json.dumps({"queries": ["langgraph checkpoint durability"]})
QUESTION = "How do LangGraph checkpoints resume a run?"


def _models(server: FakeOpenAI, names: dict[str, str]) -> dict[str, Any]:
    """model name -> spec of a keyless loopback model whose upstream name is ``names[model]``."""
    return {name: {"family": name, "litellm_model": f"openai/{upstream}", "api_base": f"{server.url}/v1", "timeout_s": 5}
            for name, upstream in names.items()}


def _make_context(config: SwarmConfig, search: Any = None) -> Any:
    router = build_llm_router(config.providers.llm, config.models, circuits=CircuitBoard())
    factories = {"llm": lambda: router, **({"search": lambda: search} if search is not None else {})}

    async def make(job_id: str) -> JobContext:
        return JobContext(job_id=job_id, config=config, providers=Providers(config, factories))

    return make


def _printed(result: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> str:
    """What ``swarm`` prints on stderr for ``result`` in text mode."""
    cli._report(argparse.Namespace(out=None, json=False, quiet=True), result)
    return capsys.readouterr().err


async def test_research_that_no_model_could_write_says_so(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with FakeOpenAI() as server:
        server.script("ds", Behaviour.answer(PLAN), Behaviour.fail(500))  # plans, then fails to write
        server.script("cl", Behaviour.fail(500))
        server.script("small", Behaviour.fail(503))
        config = SwarmConfig.model_validate({
            "providers": {"llm": {"default": "ds-chat", "tiers": {"balanced": ["ds-chat"]},
                                  "fallback_chain": ["cl-sonnet", "local"]}},
            "models": _models(server, {"ds-chat": "ds", "cl-sonnet": "cl", "local": "small"}),
            "routing": {"delegation": {"research": {"primary": "ds-chat+search", "reviewer": None}}},
        })
        job = {"project": "swarm", "action": "research", "input": {"question": QUESTION, "mode": "abstractive"}}
        result = await dispatch(job, _make_context(config, _local_chain(corpus, tmp_path)))

    assert result["status"] == "COMPLETED", result["error"]
    output = result["output"]
    assert output["mode"] == "extractive" and "[1]" in output["report"]  # the sources quoted: still useful
    [why] = [w for w in output["warnings"] if "no model could write" in w]
    assert "abstractive report was asked for" in why and "quotes the sources instead" in why
    for model in ("ds-chat", "cl-sonnet", "local"):  # every attempt, with what it got
        assert f"{model}: error ProviderUnavailable" in why, why
    assert f"warning: {why}" in _printed(result, capsys)


async def test_a_consensus_without_synthesis_says_why_with_every_attempt(capsys: pytest.CaptureFixture[str]) -> None:
    with FakeOpenAI() as server:
        for upstream in ("a", "b", "c"):  # each answers its question once, then fails
            server.script(upstream, Behaviour.answer(f"position of {upstream}"), Behaviour.fail(500))
        config = SwarmConfig.model_validate({
            "providers": {"llm": {"default": "model-a", "tiers": {"balanced": ["model-a"]},
                                  "fallback_chain": ["model-b", "model-c"]}},
            "models": _models(server, {"model-a": "a", "model-b": "b", "model-c": "c"}),
            "routing": {"delegation": {"critical": {"primary": "model-a", "reviewer": None}},
                        "consensus": {"models": ["model-a", "model-b", "model-c"], "synthesizer": "model-a"}},
        })
        job = {"project": "swarm", "action": "consensus", "input": {"question": "Should we move the API to gRPC?"}}
        result = await dispatch(job, _make_context(config))

    assert result["status"] == "COMPLETED", result["error"]  # the three positions stand
    output = result["output"]
    assert [p["text"] for p in output["positions"]] == ["position of a", "position of b", "position of c"]
    assert output["synthesis"] == "" and output["synthesis_status"] == "unavailable"
    for model in ("model-a", "model-b", "model-c"):
        assert f"{model}: error ProviderUnavailable" in output["synthesis_error"], output["synthesis_error"]
    [why] = output["warnings"]
    assert why == f"no synthesis; the 3 positions stand: {output['synthesis_error']}"
    assert f"warning: {why}" in _printed(result, capsys)


def test_the_trace_table_keeps_the_reason_a_model_failed_whole_under_it() -> None:
    # the detail column was cut at 70 characters: "cannot connect: InternalServerError: Deep", the
    # cause ("[Domain name not found]") only in --json
    import io

    why = ("cannot connect: InternalServerError: DeepseekException - Cannot connect to host "
           "api.deepseek.com:443 [Domain name not found]")
    trace = [{"step": "draft", "kind": "llm", "model": "deepseek-v3.1-q8", "outcome": "error",
              "error_class": "ProviderUnavailable", "latency_ms": 171.7, "detail": why},
             {"step": "draft", "kind": "llm", "model": "local", "outcome": "ok", "detail": "streamed"}]
    out = io.StringIO()
    cli._print_trace(trace, out)
    lines = out.getvalue().splitlines()
    row = next(line for line in lines if line.startswith("draft") and "deepseek" in line)
    assert row.endswith("… [1]") and len(row.split("  ")[-1].strip()) <= cli.DETAIL_CHARS
    assert lines[-1] == f"[1] draft deepseek-v3.1-q8: {why}"
    assert next(line for line in lines if " local " in line).endswith("streamed")
