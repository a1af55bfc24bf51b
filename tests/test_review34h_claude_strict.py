"""A user with only an Anthropic key, against a Messages API as strict as Claude Sonnet/Opus 5.5.

The loopback server answers HTTP 400, in Anthropic's error shape, to what the 5.5 models refuse
(a non-default temperature/top_p/top_k, a thinking budget or ``thinking: disabled``, an assistant
prefill, a forced ``tool_choice``, an empty text block), and otherwise a thinking block and the
text (valid JSON for ``output_format``). It thinks adaptively: the tokens an effort makes it spend,
whatever ``max_tokens`` leaves (thinking counts in it: too few, and only the thinking comes back,
``stop_reason: max_tokens``). Every path that reaches Claude is driven: each delegation kind, the
review, tiers balanced and premium, consensus, research (planner, writer, reviewer, entailment) and
the MCP server over stdio. Defects found: the research plan's 224-token limit went to Opus's thinking
(no plan), a Claude 5.5 entry without ``sampling: false`` failed every call, a refusal's half
answer was returned as the answer, and an answer all thinking was said without its cause.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from fake_openai import Behaviour, FakeOpenAI
from loopback_http import send_json
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from core.config import load_config
from core.errors import ProviderError
from graphs.delegation import prompts as delegation_prompts
from graphs.research import prompts as research_prompts
from providers.base import LLMConfig, Message
from providers.llm.litellm_backend import LiteLLMModel

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-ant-test-0000-strict55"
ANSWER = "The sky is blue because air scatters short wavelengths more (Rayleigh scattering) [1]."
#: thinking tokens an effort spends (no output_config: the API's default, high); adaptive, not a budget
THINKING = {"low": 300, "medium": 900, "high": 6000, "xhigh": 9000, "max": 12000}


def refusal(body: dict[str, Any]) -> str | None:
    """What Claude Sonnet/Opus 5.5 answers HTTP 400 to (None: nothing)."""
    thinking, choice, messages = body.get("thinking"), body.get("tool_choice"), body.get("messages") or []
    texts = [b.get("text") for m in messages for b in (m["content"] if isinstance(m["content"], list)
                                                        else [{"type": "text", "text": m["content"]}])
             if b.get("type") == "text"]
    problems = [
        (body.get("temperature") not in (None, 1), "temperature: only the default (1.0) is supported"),
        (body.get("top_p") not in (None, 1) or "top_k" in body, "top_p, top_k: only the default is supported"),
        (isinstance(thinking, dict) and (thinking.get("type") != "adaptive" or "budget_tokens" in thinking),
         "thinking: only adaptive thinking is supported (set output_config.effort)"),
        (not messages or messages[-1].get("role") == "assistant",
         "messages: this model does not support assistant message prefill; the last message must be the user's"),
        (isinstance(choice, dict) and choice.get("type") in ("any", "tool"),
         "tool_choice: forced tool use is not supported with thinking"),
        (any(not (t or "").strip() for t in texts), "messages: text content blocks must be non-empty"),
        (not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1, "max_tokens: Field required"),
        (bool(body.get("stream")), "stream: not served here"),
    ]
    return next((said for bad, said in problems if bad), None)


def instance(schema: dict[str, Any]) -> Any:
    """A JSON value ``schema`` admits (what constrained decoding gives)."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    made = {"object": lambda: {k: instance(v) for k, v in (schema.get("properties") or {}).items()},
            "array": lambda: [instance(schema.get("items") or {"type": "string"})],
            "integer": lambda: 7, "number": lambda: 0.5, "boolean": lambda: True}
    return made[kind]() if kind in made else "research action search backends"


class StrictClaude:
    """A loopback Anthropic Messages API with the 5.5 models' rules; ``refuse_after``: answer that
    much text and stop with ``stop_reason: refusal``."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.refused: list[str] = []
        self.keys: list[str | None] = []
        self.refuse_after: str | None = None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                outer.bodies.append(body)
                outer.keys.append(self.headers.get("x-api-key"))
                send_json(self, *outer.answer(self.path, body))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        why = refusal(body) if path.endswith("/v1/messages") else f"no such path {path}"
        if why:
            self.refused.append(why)
            return 400, {"type": "error", "error": {"type": "invalid_request_error", "message": why}}
        fmt = body.get("output_format") or (body.get("output_config") or {}).get("format")
        text = json.dumps(instance(fmt["schema"])) if fmt else ANSWER
        thought, limit = THINKING[(body.get("output_config") or {}).get("effort", "high")], body["max_tokens"]
        content: list[dict[str, Any]] = [{"type": "thinking", "thinking": "Consider the question.", "signature": "s"}]
        stop, used = "end_turn", min(limit, thought + len(text) // 4 + 1)
        if self.refuse_after is not None:
            content.append({"type": "text", "text": self.refuse_after})
            stop = "refusal"
        elif thought + len(text) // 4 + 1 > limit:  # the thinking took what max_tokens allowed
            stop = "max_tokens"
            if limit > thought:
                content.append({"type": "text", "text": text[: (limit - thought) * 4]})
        else:
            content.append({"type": "text", "text": text})
        return 200, {"id": "msg_1", "type": "message", "role": "assistant", "model": body["model"],
                     "content": content, "stop_reason": stop, "stop_sequence": None,
                     "usage": {"input_tokens": 50, "output_tokens": used}}


@pytest.fixture
def claude(monkeypatch: pytest.MonkeyPatch) -> Iterator[StrictClaude]:
    """The strict server as Anthropic's base URL, its key the only one set; the local model (the
    chain's end) a loopback server whose answer shows where Claude was not the one answering."""
    server = StrictClaude()
    with FakeOpenAI() as local:
        local.script("smollm2-135m-instruct", Behaviour.answer("LOCAL ANSWER"))
        monkeypatch.setenv("SWARM_LOCAL_LLM_PORT", str(local.port))
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("ANTHROPIC_API_BASE", server.url)
        yield server
    server.close()


def shipped(name: str, base: str, **update: Any) -> LiteLLMModel:
    spec = load_config().models[name]
    return LiteLLMModel(name, spec.model_copy(update={"api_base": base, **update}))


async def run(job: dict[str, Any]) -> dict[str, Any]:
    from swarm.runtime import Runtime

    runtime = Runtime()
    try:
        return await runtime.run({"project": "swarm", **job})
    finally:
        await runtime.aclose()


def claude_steps(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(s["step"], s["model"], s["outcome"]) for s in result["trace"]
            if s["kind"] == "llm" and str(s.get("model")).startswith("claude")]


JOBS = {
    "bulk_content": ({"action": "delegate", "input": {"task": "Why is the sky blue?", "kind": "bulk_content"}},
                     {("draft", "claude-sonnet-5-5"), ("review", "claude-sonnet-5-5")}),
    "research-kind": ({"action": "delegate", "input": {"task": "How does research use search?", "kind": "research"}},
                      {("plan", "claude-sonnet-5-5"), ("write", "claude-sonnet-5-5")}),
    "critical-thread": ({"action": "delegate", "input": {"task": "And at sunset?", "kind": "critical", "history": [
        {"n": 1, "role": "user", "content": "Why is the sky blue?"},
        {"n": 2, "role": "assistant", "content": "Rayleigh scattering.", "model": "claude-sonnet-5-5"}]}},
        {("draft", "claude-sonnet-5-5")}),
    "premium": ({"action": "delegate", "input": {"task": "Why is the sky blue?", "kind": "critical", "tier": "premium"}},
                {("draft", "claude-opus-5-5")}),
    "balanced": ({"action": "delegate", "input": {"task": "Why?", "kind": "bulk_content", "tier": "balanced"}},
                 {("draft", "claude-sonnet-5-5"), ("review", "claude-sonnet-5-5")}),
    "consensus": ({"action": "consensus", "input": {"question": "Is the sky blue?"}},
                  {("ask", "claude-sonnet-5-5"), ("synthesize", "claude-sonnet-5-5")}),
    # Opus thinks at high effort: the plan's 224 tokens held no room for its answer
    "research-premium": ({"action": "research", "input": {"question": "How does research use search?", "depth": "quick",
                                                          "mode": "abstractive", "tier": "premium"}},
                         {("plan", "claude-opus-5-5"), ("write", "claude-opus-5-5")}),
}


@pytest.mark.parametrize("job", list(JOBS))
async def test_every_job_reaches_claude_5_5_in_a_way_it_accepts(claude: StrictClaude, job: str) -> None:
    request, expected = JOBS[job]
    result = await run(request)
    assert result["status"] == "COMPLETED", result["error"]
    assert claude.refused == [], claude.refused
    steps = claude_steps(result)
    assert all(outcome == "ok" for *_, outcome in steps), result["trace"]
    assert expected <= {(step, model) for step, model, _ in steps}, steps
    assert "LOCAL ANSWER" not in json.dumps(result["output"]) and KEY not in json.dumps(result)
    assert set(claude.keys) == {KEY}


ROLES = {  # each role's call as its graph makes it
    "verdict": (delegation_prompts.review_messages("Why is the sky blue?", ANSWER),
                LLMConfig(json_schema=delegation_prompts.VERDICT_SCHEMA, temperature=0.0, step="review")),
    "plan": (research_prompts.plan_messages("Why is the sky blue?", 4),
             LLMConfig(json_schema=research_prompts.PLAN_SCHEMA, temperature=0.0, max_tokens=32 + 48 * 4, step="plan")),
    "research-review": (research_prompts.review_messages("Why is the sky blue?", ANSWER, [{"id": 1, "title": "t", "url": "u"}],
                                                         {"1": "Air scatters blue light."}),
                        LLMConfig(json_schema=research_prompts.REVIEW_SCHEMA, temperature=0.0, step="review")),
    "entail": (research_prompts.entail_messages(
        [{"id": 1, "sentence": ANSWER, "passages": [{"source_id": 1, "text": "Air scatters blue light."}]}],
        [{"id": 1, "title": "t", "url": "u"}]),
        LLMConfig(json_schema=research_prompts.ENTAIL_SCHEMA, temperature=0.0, step="entail")),
}


@pytest.mark.parametrize("role", list(ROLES))
@pytest.mark.parametrize("name", ["claude-sonnet-5-5", "claude-opus-5-5"])
async def test_each_structured_role_gets_json_from_output_format(claude: StrictClaude, name: str, role: str) -> None:
    messages, config = ROLES[role]
    answer = await shipped(name, claude.url).complete(messages, config)
    assert claude.refused == [], claude.refused
    parsed = json.loads(answer.text)  # the JSON text, not the thinking block
    assert set(config.json_schema["required"]) <= set(parsed), parsed  # type: ignore[index]
    assert answer.finish_reason == "stop"
    body = claude.bodies[-1]
    assert body["output_format"]["type"] == "json_schema" and "tool_choice" not in body


async def test_a_claude_5_5_entry_written_without_sampling_false_is_asked_without_a_temperature(
        claude: StrictClaude) -> None:
    """A config written for Sonnet 4.5 with only its litellm_model changed (sampling unset): every
    call sent the caller's temperature, which litellm refused before sending (the trace said 'HTTP
    400 ... set `drop_params = True`')."""
    llm = shipped("claude-sonnet-5-5", claude.url, sampling=True)
    answer = await llm.complete([Message(role="user", content="Why is the sky blue?")], LLMConfig(temperature=0.2))
    assert answer.text == ANSWER
    assert "temperature" not in claude.bodies[-1]


async def test_a_claude_5_5_entry_without_an_effort_has_room_for_its_answer(claude: StrictClaude) -> None:
    """No reasoning_effort: the model still thinks (at the API's default effort), inside max_tokens."""
    llm = shipped("claude-sonnet-5-5", claude.url, extra_params={})
    messages, config = ROLES["plan"]
    answer = await llm.complete(messages, config)
    assert json.loads(answer.text)["queries"], answer.text
    assert claude.bodies[-1]["max_tokens"] == 8192


async def test_an_answer_all_thinking_says_the_thinking_took_max_tokens(claude: StrictClaude) -> None:
    llm = shipped("claude-opus-5-5", claude.url, max_output_tokens=4000)  # high effort thinks 6000
    with pytest.raises(ProviderError) as caught:
        await llm.complete([Message(role="user", content="Why is the sky blue?")], LLMConfig())
    text = str(caught.value)
    assert "max_tokens=4000" in text and "models.claude-opus-5-5.max_output_tokens" in text, text
    assert caught.value.output_tokens == 4000 and caught.value.cost_usd == pytest.approx((50 * 4 + 4000 * 20) / 1e6)


async def test_a_refused_answer_is_no_answer_and_the_chain_goes_on(claude: StrictClaude) -> None:
    """Claude may stop midway with stop_reason 'refusal': what it wrote before is no answer (litellm
    says finish_reason 'content_filter'); it was returned as the job's answer, said complete."""
    claude.refuse_after = "Here is how to"
    result = await run({"action": "delegate", "input": {"task": "Why is the sky blue?", "kind": "critical"}})
    assert result["status"] == "COMPLETED", result["error"]
    assert "Here is how to" not in json.dumps(result["output"])
    failed = next(s for s in result["trace"] if s["model"] == "claude-sonnet-5-5")
    assert failed["outcome"] == "error" and "declined to answer" in failed["detail"], failed
    assert failed["output_tokens"] > 0  # billed all the same


async def test_the_mcp_server_over_stdio_answers_from_claude_5_5(claude: StrictClaude) -> None:
    params = StdioServerParameters(command=str(Path(sys.executable).parent / "swarm-mcp"), args=[],
                                   env={**os.environ}, cwd=str(ROOT))
    async with Client(params) as client:
        result = await client.call_tool("delegate", {"task": "Why is the sky blue?", "kind": "critical", "tier": "premium"})
    assert not result.is_error, result.content[0].text
    data = result.structured_content
    assert data["text"] == ANSWER and KEY not in json.dumps(data)
    assert ("draft", "claude-opus-5-5", "ok") in [(s["step"], s["model"], s["outcome"]) for s in data["trace"]]
    assert claude.refused == [] and claude.bodies[-1]["output_config"] == {"effort": "high"}


async def test_a_temperature_the_config_sets_itself_is_refused_with_the_key_to_change(claude: StrictClaude) -> None:
    """litellm refuses it before sending; the trace said 'HTTP 400' and litellm's own advice
    (`drop_params = True`), which no user of ours can set."""
    llm = shipped("claude-sonnet-5-5", claude.url, sampling=True,
                  extra_params={"reasoning_effort": "medium", "temperature": 0.3})
    with pytest.raises(ProviderError) as caught:
        await llm.complete([Message(role="user", content="Why is the sky blue?")], LLMConfig())
    text = str(caught.value)
    assert "temperature=0.3" in text and "models.claude-sonnet-5-5" in text and "sampling: false" in text, text
    assert "drop_params" not in text and "HTTP 400" not in text, text
    assert claude.bodies == []  # nothing was sent
