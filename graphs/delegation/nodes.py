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
from difflib import SequenceMatcher
from typing import Any

from core.errors import AllProvidersFailed, SwarmError
from graphs.cuts import cut_note, cut_reason
from graphs.delegation import prompts
from graphs.delegation.history import label_names, strip_label
from graphs.delegation.state import DelegationState
from graphs.progress import emit, model_progress
from graphs.turns import Turn
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


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.casefold())


#: every word of the review prompt and of the verdict's schema
_PROMPT_WORDS = frozenset(_words(prompts.REVIEW_SYSTEM) + _words(json.dumps(prompts.VERDICT_SCHEMA)))
#: the prompt's longer field descriptions, alone and after their field's name (normalized)
_PROMPT_PHRASES = tuple(" ".join(_words(form)) for name, text in prompts.VERDICT_FIELDS.items()
                        if len(_words(text)) >= 4 for form in (text, f"{name} {text}"))
#: issues a verdict keeps
MAX_ISSUES = 5
#: ``suggestion:`` opening an issue
_SUGGESTION = re.compile(r"\A\W*suggestion\W*?\s*(?::|\s[-\u2013]\s)\s*", re.IGNORECASE)
#: a revision wrapped whole in the ``<answer>`` tags its prompt shows the draft in (a small model copies them)
_ANSWER_TAGS = re.compile(r"\A\s*<answer>\s*(.*?)\s*</answer>\s*\Z", re.DOTALL | re.IGNORECASE)


def _echoes_prompt(text: str) -> bool:
    """Whether ``text`` only repeats the review prompt's own words back: every word of it is the
    prompt's or the schema's, three or more or in JSON (``one short paragraph``, ``{"type": "string"}``), or it is close to a
    field's description (``a list of short sentences, empty when approved``)."""
    words = _words(text)
    # two words may be a finding in the prompt's own terms ("short answer", "not json")
    if not words or ((len(words) >= 3 or text.lstrip()[:1] in '{["') and set(words) <= _PROMPT_WORDS):
        return True
    said = " ".join(words)
    return any(SequenceMatcher(None, said, phrase).ratio() >= 0.8 for phrase in _PROMPT_PHRASES)


def _clean_review(issues: list[str], suggestion: str) -> tuple[list[str], str]:
    """A reviewer's issues and suggestion without what a small model (a keyless self-review by the
    local model above all) adds that is no finding: the prompt's own field descriptions echoed
    back, the suggestion again as an issue (``suggestion: ...``: the result lists it once, as the
    suggestion; another one stays an issue), and an issue said twice. Only text is dropped:
    ``approved`` and ``score`` are the reviewer's, kept as given. At most ``MAX_ISSUES`` are kept."""
    suggestion = "" if _echoes_prompt(suggestion) else suggestion.strip()
    kept: list[str] = []
    # the same words in the same order is a repeat: "Line 10 divides by zero" and "Line 12 ..." are two
    seen = {" ".join(_words(suggestion))} - {""}
    for issue in (i.strip() for i in issues):
        if len(kept) == MAX_ISSUES:
            break
        if match := _SUGGESTION.match(issue):  # the suggestion, as an issue
            rest = issue[match.end():].strip()
            if not suggestion and rest and not _echoes_prompt(rest):
                suggestion = rest  # the only place it was given: it is the suggestion
                seen.add(" ".join(_words(rest)))
                continue
            if not rest or " ".join(_words(rest)) in seen:
                continue
        said = " ".join(_words(issue))
        if _echoes_prompt(issue) or said in seen:
            continue
        seen.add(said)
        kept.append(issue)
    return kept, suggestion


def _ended(text: str, limit: int) -> str:
    """``text`` as the reader should see it where it ran to its schema's ``maxLength`` (``limit``:
    the bundled model's constrained JSON closes a string there, mid-word: a suggestion ended
    "non-re"): cut back to its last word end, with an ellipsis. Any other text is as written."""
    if len(text) != limit or text.endswith((".", "!", "?", ")", '"')):
        return text
    space = re.search(r"\s\S*\Z", text)
    kept = text[: space.start()] if space and space.start() >= limit // 2 else text[:-1]
    return kept.rstrip(" \t\n,;:(-\u2013\u2014") + "\u2026"


def parse_verdict(text: str) -> dict[str, Any] | None:
    """The reviewer's JSON verdict, or None when the answer holds no usable verdict. Its issues
    and suggestion are cleaned (``_clean_review``); ``approved`` and ``score`` are as given."""
    match = re.search(r"\{.*\}", text, re.DOTALL)
    if not match:
        return None
    try:
        data = json.loads(match.group(0), strict=False)
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("approved"), bool):
        return None
    issues = data.get("issues")
    score = data.get("score")
    listed = [str(i) for i in issues if i is not None] if isinstance(issues, list) else []
    kept, suggestion = _clean_review(listed, str(data.get("suggestion") or ""))
    return {
        "approved": data["approved"],
        "score": score if isinstance(score, int) and 1 <= score <= 10 else None,
        "issues": [_ended(issue, prompts.ISSUE_CHARS) for issue in kept],
        "suggestion": _ended(suggestion, prompts.SUGGESTION_CHARS),
    }


def _answer(response: LLMResponse, state: DelegationState) -> str:
    """The model's answer without a ``[model]: `` label it opened with. Earlier prompts wrote each
    earlier answer of a thread as ``[model]: text``; models (the small local one above all) copied
    the label into their answer, which was stored as the thread's next turn, and so it grew. The
    prompt no longer shows one (``history``), and one a model writes anyway is taken off here,
    before the text becomes the draft, the job's answer and the thread's turn. Names taken off:
    each earlier answer's model, this answer's model and provider, the route's families."""
    names = label_names(_history(state), response.model, response.provider, state.get("primary"), state.get("reviewer"))
    return strip_label(response.text.strip(), names).strip()  # a label alone is kept: see strip_label


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
            "draft": _answer(response, state),
            "draft_cut": cut_reason(response.finish_reason),
            "drafted_by": response.model,
            "drafted_family": response.provider,
            "revisions": 0,
            "trace": attempts + [_node_step("draft", started, f"drafted by {response.model}{cut_note(response.finish_reason)}")],
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
            # an answer with no JSON verdict is a failed attempt: the next reviewer is asked
            accept=lambda text: None if parse_verdict(text) is not None else "the answer held no valid JSON verdict",
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
            cut = " (cut at its token limit before the JSON closed)" if response.finish_reason == "length" else ""
            verdict = {"approved": None, "status": "unusable", "reviewer": response.model,
                       "error": f"the reviewer's answer held no valid JSON verdict{cut}"}
            return {"review": verdict, "trace": attempts + [_node_step("review", started, verdict["error"], "error")]}
        verdict |= {"status": "done", "reviewer": response.model}
        detail = f"{'approved' if verdict['approved'] else 'changes requested'} by {response.model}"
        if drafter and response.provider == drafter:  # no model of another family answered
            verdict["self_review"] = True
            # a model of another family passed over (timed out earlier in the job, its key unset) is
            # named: "no model of another family answered" was said of one never asked
            passed = [f"{a.model}: {a.detail}" for a in response.attempts
                      if a.outcome == "skipped" and a.provider != drafter and a.detail]
            why = (f"the others were not asked ({'; '.join(passed[:3])})" if passed
                   else "no model of another family answered")
            verdict["note"] = (f"reviewed by {response.model}, of the drafter's own family ({drafter}): {why},"
                               " so this is no independent review")
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
        revised = _answer(response, state)
        if (wrapped := _ANSWER_TAGS.match(revised)) and wrapped.group(1):
            revised = wrapped.group(1)  # the prompt's markup around it, not its text
        # an empty revision keeps the draft before it, and with it how that one ended
        new_draft = {"draft": revised, "draft_cut": cut_reason(response.finish_reason)} if revised else {}
        return {
            **new_draft,
            "drafted_by": response.model,
            "drafted_family": response.provider,
            "revisions": number,
            "trace": attempts + [_node_step("revise", started,
                                            f"revision {number} by {response.model}{cut_note(response.finish_reason)}")],
        }

    return {"draft": draft, "review": review, "revise": revise}


def finalize(state: DelegationState) -> dict[str, Any]:
    """The update that ends the job: the draft as it stands is the final text."""
    emit("done", "finished", 1.0)
    return {"final": state["draft"]}


def after_draft(state: DelegationState) -> str:
    return "review" if state.get("reviewer") else FINALIZE


def after_review(state: DelegationState) -> str:
    verdict = state.get("review") or {}
    if verdict.get("approved") is False and state.get("revisions", 0) < state.get("max_revisions", 0):
        return "revise"
    return FINALIZE
