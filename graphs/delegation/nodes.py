"""Nodes of the delegation graph: draft, review, revise (and ``finalize``, which the node that
ends the job applies to its own update: see ``graph``).

Nodes talk to the ``LLMProvider`` Protocol only. Each returns the trace steps it produced
(every provider attempt, then one node step), so a resumed job's trace is complete.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from core.errors import AllProvidersFailed, SwarmError
from graphs.delegation import prompts
from graphs.delegation.history import Turn
from graphs.delegation.state import DelegationState
from graphs.progress import emit, model_progress
from providers.base import LLMConfig, LLMProvider, LLMResponse, Message, TraceStep, listen_to_attempts

Node = Callable[[DelegationState], Awaitable[dict[str, Any]]]
#: what a router returns when the job is done
FINALIZE = "finalize"


def _node_step(name: str, started: float, detail: str, outcome: str = "ok") -> dict[str, Any]:
    return TraceStep(
        step=name,
        kind="node",
        provider="graph",
        latency_ms=(time.perf_counter() - started) * 1000,
        outcome=outcome,  # type: ignore[arg-type]
        detail=detail,
    ).model_dump()


async def _call(
    llm: LLMProvider, state: DelegationState, messages: list[Message], config: LLMConfig, verb: str
) -> LLMResponse:
    try:
        with listen_to_attempts(model_progress(config.step, verb)):
            return await llm.complete(messages, config)
    except SwarmError as exc:
        exc.trace = list(state.get("trace", []))  # type: ignore[attr-defined]
        raise


def _history(state: DelegationState) -> list[Turn]:
    return [Turn.model_validate(t) for t in state.get("history") or []]


def parse_verdict(text: str) -> dict[str, Any] | None:
    """The reviewer's JSON verdict, or None when the answer holds no usable verdict."""
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if not match:
        return None
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("approved"), bool):
        return None
    issues = data.get("issues")
    score = data.get("score")
    return {
        "approved": data["approved"],
        "score": score if isinstance(score, int) and 1 <= score <= 10 else None,
        "issues": [str(i) for i in issues][:5] if isinstance(issues, list) else [],
        "suggestion": str(data.get("suggestion") or ""),
    }


def make_nodes(llm: LLMProvider) -> dict[str, Node]:
    """The graph's nodes, closed over the LLM provider they use."""

    async def draft(state: DelegationState) -> dict[str, Any]:
        started = time.perf_counter()
        config = LLMConfig(tier=state.get("tier"), prefer=state["primary"], step="draft")  # type: ignore[arg-type]
        messages = prompts.draft_messages(state["task"], state["kind"], _history(state))
        response = await _call(llm, state, messages, config, "drafting")
        emit("draft", f"drafted by {response.model}")
        attempts = [a.model_dump() for a in response.attempts]
        return {
            "draft": response.text.strip(),
            "drafted_by": response.model,
            "drafted_family": response.provider,
            "revisions": 0,
            "trace": attempts + [_node_step("draft", started, f"drafted by {response.model}")],
        }

    async def review(state: DelegationState) -> dict[str, Any]:
        started = time.perf_counter()
        reviewer = state["reviewer"] or ""
        drafter = state.get("drafted_family")
        config = LLMConfig(
            tier=state.get("tier"),  # type: ignore[arg-type]
            prefer=reviewer,
            avoid=drafter,  # another family reviews wherever one answers
            json_schema=prompts.VERDICT_SCHEMA,
            temperature=0.0,
            step="review",
        )
        try:
            with listen_to_attempts(model_progress("review", "reviewing")):
                messages = prompts.review_messages(state["task"], state["draft"], _history(state))
                response = await llm.complete(messages, config)
        except AllProvidersFailed as exc:
            # The draft stands; the missing review is said plainly in result and trace.
            attempts = [a.model_dump() if hasattr(a, "model_dump") else dict(a) for a in exc.attempts]
            unavailable = {"approved": None, "status": "unavailable", "error": exc.to_dict()["message"]}
            return {
                "review": unavailable,
                "trace": attempts + [_node_step("review", started, "no reviewer answered", "error")],
            }
        attempts = [a.model_dump() for a in response.attempts]
        verdict = parse_verdict(response.text)
        if verdict is None:
            verdict = {"approved": None, "status": "unusable", "reviewer": response.model,
                       "error": "the reviewer's answer held no valid JSON verdict"}
            return {"review": verdict, "trace": attempts + [_node_step("review", started, verdict["error"], "error")]}
        verdict |= {"status": "done", "reviewer": response.model}
        detail = f"{'approved' if verdict['approved'] else 'changes requested'} by {response.model}"
        if drafter and response.provider == drafter:  # no model of another family answered
            verdict["self_review"] = True
            verdict["note"] = (f"reviewed by {response.model}, of the drafter's own family ({drafter}): no model of"
                               " another family answered, so this is no independent review")
            detail += f" (a self-review: {drafter} reviewed {drafter}'s draft)"
        return {"review": verdict, "trace": attempts + [_node_step("review", started, detail)]}

    async def revise(state: DelegationState) -> dict[str, Any]:
        started = time.perf_counter()
        number = state.get("revisions", 0) + 1
        config = LLMConfig(tier=state.get("tier"), prefer=state["primary"], step="revise")  # type: ignore[arg-type]
        messages = prompts.revise_messages(state["task"], state["kind"], state["draft"], state["review"] or {},
                                           _history(state))
        verb = f"revision {number} of at most {state['max_revisions']}"
        response = await _call(llm, state, messages, config, verb)
        attempts = [a.model_dump() for a in response.attempts]
        return {
            "draft": response.text.strip() or state["draft"],
            "drafted_by": response.model,
            "drafted_family": response.provider,
            "revisions": number,
            "trace": attempts + [_node_step("revise", started, f"revision {number} by {response.model}")],
        }

    return {"draft": draft, "review": review, "revise": revise}


def finalize(state: DelegationState) -> dict[str, Any]:
    """The update that ends the job: the draft as it stands is the final text."""
    emit("done", "finished")
    return {"final": state["draft"]}


def after_draft(state: DelegationState) -> str:
    return "review" if state.get("reviewer") else FINALIZE


def after_review(state: DelegationState) -> str:
    verdict = state.get("review") or {}
    if verdict.get("approved") is False and state.get("revisions", 0) < state.get("max_revisions", 0):
        return "revise"
    return FINALIZE
