"""A job that crashes (a bug, not a provider or input problem) after a paid provider call still
shows that call: its trace step, its tokens and cost in ``totals``, and the answer it had made as
a partial ``output``. The envelope said InternalError with the dispatch step alone, 0 tokens and
``cost_usd: 0.0``, and the draft the client had paid for was gone."""

from __future__ import annotations

import json
from typing import Any

from providers.base import LLMConfig, Message
from providers.testing import FunctionLLM
from swarm.dispatcher import dispatch

JOB = {"project": "swarm", "action": "delegate", "input": {"task": "Write two lines.", "kind": "bulk_content"}}


async def test_a_crash_after_a_paid_draft_keeps_the_draft_its_step_and_its_tokens(make_context: Any) -> None:
    def answer(messages: list[Message], config: LLMConfig) -> str:
        if config.step == "review":
            raise RuntimeError("KeyError in /home/dev/secret/nodes.py")
        return "the paid draft"

    result = await dispatch(JOB, make_context(FunctionLLM(answer)))
    assert result["status"] == "FAILED" and result["error"]["type"] == "InternalError"
    steps = [(s["step"], s["provider"], s["outcome"]) for s in result["trace"]]
    assert ("draft", "fake", "ok") in steps and steps[-1] == ("dispatch", "dispatcher", "error"), steps
    assert result["totals"]["provider_calls"] == 1 and result["totals"]["output_tokens"] > 0, result["totals"]
    assert result["output"] == {"partial": True, "text": "the paid draft", "text_from": "draft"}
    assert "/home/dev" not in json.dumps(result) and "Traceback" not in json.dumps(result)


async def test_a_crash_before_any_provider_call_says_so(make_context: Any) -> None:
    def answer(messages: list[Message], config: LLMConfig) -> str:
        raise RuntimeError("bug before anything was billed")

    result = await dispatch(JOB, make_context(FunctionLLM(answer)))
    assert result["error"]["type"] == "InternalError" and result["output"] is None
    assert [s["step"] for s in result["trace"]] == ["dispatch"] and result["totals"]["provider_calls"] == 0
