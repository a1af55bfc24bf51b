"""Small defects a newcomer met on a keyless setup (the local model): a verdict thrown away for a
raw newline, a consensus position opening with its instruction, ``kind`` without an enum, text
cut mid-word, and ``python -m swarm`` missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from mcp import Client
from mcp_helpers import write_config

from core.config import SwarmConfig
from graphs.context import JobContext, Providers
from providers.base import LLMConfig, Message
from providers.testing import FunctionLLM
from swarm.dispatcher import dispatch

ROOT = Path(__file__).resolve().parents[1]

#: the local reviewer's answer: valid JSON but for a raw newline inside the suggestion
RAW_NEWLINE_VERDICT = ('{"approved": false, "score": 5, "issues": ["too short"],\n'
                       ' "suggestion": "Add a second line.\nName the river."}')


def _reviewing(verdict: str | dict[str, Any]) -> FunctionLLM:
    """Drafts "a draft", reviews with ``verdict``."""
    return FunctionLLM(lambda messages, config: verdict if config.step == "review" else "a draft")


def _delegate(task: str = "Write two lines about rivers.") -> dict[str, Any]:
    return {"project": "swarm", "action": "delegate", "input": {"task": task}}


async def test_a_verdict_with_a_raw_newline_in_a_string_is_the_review(make_context: Any) -> None:
    """The job said "no review (the reviewer's answer held no valid JSON verdict)": strict
    ``json.loads`` refused the control character ("Invalid control character")."""
    result = await dispatch(_delegate(), make_context(_reviewing(RAW_NEWLINE_VERDICT)))
    assert result["status"] == "COMPLETED", result["error"]
    review = result["output"]["review"]
    assert review["approved"] is False and review["score"] == 5, review
    assert review["issues"] == ["too short"] and review["suggestion"] == "Add a second line.\nName the river."
    assert result["output"]["revisions"] >= 1  # the verdict was acted on


def test_the_research_graphs_read_their_models_json_with_raw_newlines_too() -> None:
    from graphs.research.entailment import _verdicts
    from graphs.research.nodes import parse_plan
    from graphs.research.writing import _verdict

    assert _verdict('{"approved": false, "issues": ["cites [2] for\na claim it lacks"]}') == {
        "approved": False, "issues": ["cites [2] for\na claim it lacks"]}
    rows = _verdicts('{"verdicts": [{"id": 1, "entailed": true, "reason": "the passage\nsays so"}]}',
                     [{"id": 1, "key": "s1"}], "local")
    assert rows is not None and rows["s1"].entailed is True and rows["s1"].reason == "the passage says so"
    queries, why = parse_plan('{"queries": ["circuit breaker\nhalf-open state", "retry backoff limit"]}', "q", 3)
    assert (queries, why) == (["circuit breaker half-open state", "retry backoff limit"], None)
    # nothing looser: a JSON error is still no verdict
    assert _verdict("{'approved': False}") is None


async def test_a_suggestion_cut_at_its_schema_bound_ends_at_a_word_in_the_tools_text(make_context: Any) -> None:
    """The local model's constrained JSON closes the suggestion at its maxLength (600): the text
    read "suggestion: ... non-re"."""
    from graphs.delegation.prompts import ISSUE_CHARS, SUGGESTION_CHARS
    from mcp_server.results import delegate_output
    from mcp_server.texts import result_text

    opening = "Say which river you mean and keep the lines short and concrete, with one image each"
    suggestion = opening + " and" * ((SUGGESTION_CHARS - len(opening) - 7) // 4) + " non-re"
    suggestion = suggestion.replace("Say", "Say" + "!" * (SUGGESTION_CHARS - len(suggestion)), 1)
    issue = ("the second line repeats the first " * 8)[:ISSUE_CHARS]
    assert len(suggestion) == SUGGESTION_CHARS and suggestion.endswith(" and non-re") and issue.endswith(" the fi")
    verdict = {"approved": False, "score": 4, "issues": [issue], "suggestion": suggestion}
    result = await dispatch(_delegate(), make_context(_reviewing(verdict)))
    review = result["output"]["review"]
    assert review["suggestion"] == suggestion[:-len(" non-re")] + "\u2026"
    assert review["issues"] == [issue[:-len(" fi")] + "\u2026"]
    text = result_text(delegate_output(result))
    assert "non-re" not in text and f"suggestion: {suggestion[:-len(' non-re')]}\u2026\n" in text
    # one that ends a sentence, or a shorter one, is as written
    whole = {"approved": False, "score": 4, "issues": ["short."], "suggestion": "x" * (SUGGESTION_CHARS - 1) + "."}
    done = await dispatch(_delegate(), make_context(_reviewing(whole)))
    assert done["output"]["review"]["suggestion"] == whole["suggestion"]


def test_a_trace_detail_in_the_tools_text_is_cut_at_a_word_with_an_ellipsis() -> None:
    """A trace detail in the text read "... waited for a C...": cut at 160 characters, mid-word."""
    from mcp_server.results import delegate_output
    from mcp_server.texts import DETAIL_CHARS, result_text

    detail = ("the reviewer gave no answer in time: the local server was busy with another job and the"
              " request waited for a Claude answer that never came back before the deadline of the job")
    assert len(detail) > DETAIL_CHARS and detail[DETAIL_CHARS - 1] not in " "
    failed = {"step": "review", "kind": "llm", "provider": "local", "model": "local", "latency_ms": 9.0,
              "outcome": "error", "error_class": "ProviderTimeout", "detail": detail}
    result = {"job_id": "j-1", "status": "COMPLETED", "trace": [failed],
              "output": {"text": "Two lines.", "model": "local", "review": None},
              "totals": {"input_tokens": 5, "output_tokens": 7, "cost_usd": None, "provider_calls": 1}}
    text = result_text(delegate_output(result))
    quoted = text.split("ProviderTimeout 9.0 ms (", 1)[1].split(")", 1)[0]
    assert quoted.endswith("\u2026") and len(quoted) <= DETAIL_CHARS, quoted
    assert detail.startswith(quoted[:-1]) and detail[len(quoted) - 1] == " ", quoted  # a whole word last


def _consensus_config() -> SwarmConfig:
    models = {name: {"family": f"family-{name[-1]}", "litellm_model": f"openai/{name}"}
              for name in ["model-a", "model-b", "model-c", "synth"]}
    return SwarmConfig.model_validate({
        "providers": {"llm": {"default": "model-a", "tiers": {"fast": ["model-a"]}, "fallback_chain": []}},
        "models": models,
        "routing": {"delegation": {"critical": {"primary": "model-a"}},
                    "consensus": {"models": ["model-a", "model-b", "model-c"], "synthesizer": "synth"}},
    })


async def _consensus(answers: dict[str, str]) -> tuple[dict[str, Any], dict[str, list[Message]]]:
    from providers.circuit import CircuitBoard
    from providers.llm.router import LLMRouter

    cfg, asked = _consensus_config(), {}

    def model(name: str) -> FunctionLLM:
        def answer(messages: list[Message], llm_config: LLMConfig) -> str:
            asked[name] = messages
            return answers.get(name, f"{name} says yes: ship it, the tests pass.")

        return FunctionLLM(answer, model=name)

    router = LLMRouter(cfg.providers.llm, cfg.models, {n: model(n) for n in cfg.models}, CircuitBoard())

    async def make(job_id: str) -> JobContext:
        return JobContext(job_id=job_id, config=cfg, providers=Providers(cfg, {"llm": lambda: router}))

    job = {"project": "swarm", "action": "consensus", "input": {"question": "Ship on Friday?"}}
    return await dispatch(job, make), asked


async def test_a_position_opening_with_its_instruction_keeps_only_its_answer() -> None:
    """A keyless position began "A clear position, the reasons for it. ...": the instruction stood
    in the position (and in what the synthesis weighed); one that is nothing more is no position."""
    result, asked = await _consensus({
        "model-a": "Against. Take the risk seriously: Friday has no cover.",  # a short stance: no echo
        "model-b": "A clear position, the reasons for it. No: a Friday release leaves nobody to fix it.",
        "model-c": "Give your own answer: a clear position, the reasons for it, and the main risk.\n\n",
    })
    assert result["status"] == "COMPLETED", result["error"]
    out = result["output"]
    texts = {p["model"]: p["text"] for p in out["positions"]}
    assert texts == {"model-a": "Against. Take the risk seriously: Friday has no cover.",
                     "model-b": "No: a Friday release leaves nobody to fix it."}
    assert [(f["asked"], f["error_type"]) for f in out["failed"]] == [("model-c", "EchoedPrompt")]
    assert "A clear position" not in asked["synth"][-1].content
    step = next(s for s in result["trace"] if s["step"] == "ask" and s["kind"] == "node" and "model-b" in s["detail"])
    assert "the prompt's instruction repeated, is left out" in step["detail"]


def _tools_config(tmp_path: Path, runner: str) -> str:
    tmp_path.mkdir(exist_ok=True)
    path = write_config(tmp_path)
    if runner == "runpod":
        config = yaml.safe_load(path.read_text())
        config["runner"]["kind"] = "runpod"
        config["runner"]["runpod"].update(endpoint_id="ep-e", base_url="http://127.0.0.1:9", api_key_env="SWARM_TEST_35E_KEY")
        path.write_text(yaml.safe_dump(config))
    return str(path)


async def test_delegates_kind_is_an_enum_of_the_routes_when_jobs_run_here(tmp_path: Path, monkeypatch: Any) -> None:
    """A client learnt the valid kinds only from the description or a refusal, where ``tier`` has an enum."""
    from mcp_server.server import build_server

    async with Client(build_server(_tools_config(tmp_path, "local"))) as client:
        kind = next(t for t in (await client.list_tools()).tools if t.name == "delegate").input_schema["properties"]["kind"]
        refused = await client.call_tool("delegate", {"task": "hi", "kind": "poetry"})
    assert kind["enum"] == ["bulk_content", "critical", "research"] and kind["default"] == "bulk_content"
    assert "description" not in kind  # the enum says it
    assert refused.is_error and refused.content[0].text == (
        "InputError: kind: unknown kind 'poetry'; valid: bulk_content, critical, research (routing.delegation in config)")
    # a RunPod endpoint's config may route other kinds: no enum there, the description names this one's
    monkeypatch.setenv("SWARM_TEST_35E_KEY", "k")
    monkeypatch.setenv("SWARM_HOME", str(tmp_path / "home"))
    async with Client(build_server(_tools_config(tmp_path / "remote", "runpod"))) as client:
        kind = next(t for t in (await client.list_tools()).tools if t.name == "delegate").input_schema["properties"]["kind"]
    assert "enum" not in kind and kind["description"] == "one of bulk_content, critical, research"


def test_python_dash_m_swarm_runs_the_swarm_command() -> None:
    """``python -m swarm doctor`` said "No module named swarm.__main__"."""
    done = subprocess.run([sys.executable, "-m", "swarm", "delegate", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: swarm delegate")
