"""The ``swarm/delegate`` action: route a task to a primary model and an optional reviewer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.errors import AllProvidersFailed, BudgetExceeded, InputError
from core.rules import MAX_NAME_CHARS, Tier, check_text_limit, not_blank
from graphs.context import JobContext
from graphs.cuts import cut_warning
from graphs.turns import THREAD_ID_PATTERN, Turn, fit, thread_step


class DelegateInput(BaseModel):
    """Input of ``delegate``: the task, its kind (a key of routing.delegation) and a tier."""

    model_config = ConfigDict(extra="forbid", strict=True)  # a wrong type is refused, not coerced (true -> 1)

    task: str = Field(min_length=1, description="what to do, in plain words")
    kind: str = Field(default="bulk_content", max_length=MAX_NAME_CHARS, description="a key of routing.delegation in config")
    tier: Tier | None = Field(
        default=None, description="model tier; default: providers.llm.default"
    )
    thread_id: str | None = Field(default=None, pattern=THREAD_ID_PATTERN, description="the conversation")
    history: list[Turn] = Field(default_factory=list, max_length=1000,
                                description="the thread's earlier turns, oldest first (the door sends them)")

    _not_blank = field_validator("task")(not_blank)


async def delegate(inp: DelegateInput, ctx: JobContext) -> dict[str, Any]:
    """Draft with the route's primary, review with its reviewer, revise within the limit."""
    config = ctx.config
    routes = config.routing.delegation
    check_text_limit(inp.task, config.limits, "max_task_chars", "task")
    route = routes.get(inp.kind)
    if route is None:
        raise InputError(f"unknown kind {inp.kind!r}; valid: {', '.join(sorted(routes))} (routing.delegation in config)",
                         field="kind")
    if route.primary.endswith("+search"):
        return await _research_route(inp, ctx)

    from graphs.delegation.graph import build_graph
    from graphs.run import lean_checkpointer, run_graph

    providers = ctx.providers
    graph = providers.memo(("graph:delegation", id(ctx.checkpointer)),
                           lambda: build_graph(providers.llm, lean_checkpointer(ctx)))
    await ctx.progress("route", f"{inp.kind}: primary {route.primary}, reviewer {route.reviewer or 'none'}", None)
    # a turn kept whole goes as stored (code, lines); one too long for what is left is shortened
    fitted = fit(inp.history, config.threads.max_chars, keep_lines=True)
    kept = [t.model_copy(update={"content": text}) if shortened else t for t, text, shortened in fitted.kept]
    limit = f"threads.max_chars={config.threads.max_chars}"
    opening = [thread_step(inp.thread_id, inp.history, fitted, limit)] if inp.thread_id else []
    try:
        state = await run_graph(graph, {
            "task": inp.task,
            "kind": inp.kind,
            "tier": inp.tier,
            "primary": route.primary,
            "reviewer": route.reviewer,
            "max_revisions": config.limits.max_revisions,
            "history": [t.model_dump() for t in kept],
            "trace": opening,
        }, ctx)
    except (AllProvidersFailed, BudgetExceeded) as exc:
        _attach_partial(exc, inp)
        raise
    return {**_output(state, inp), "trace": state.get("trace", [])}


def partial_output(state: dict[str, Any]) -> dict[str, Any]:
    """A stopped job's draft, who wrote it, the review and the revisions (nothing before a draft)."""
    if not state.get("draft"):
        return {}
    return {"text": state.get("final", state["draft"]), "model": state.get("drafted_by"), "kind": state.get("kind"),
            "review": state.get("review"), "revisions": state.get("revisions", 0), "warnings": _warnings(state)}


def _output(state: dict[str, Any], inp: DelegateInput) -> dict[str, Any]:
    return {
        **({"thread_id": inp.thread_id} if inp.thread_id else {}),
        "text": state.get("final", state.get("draft", "")),
        "model": state.get("drafted_by"),
        "kind": inp.kind,
        "review": state.get("review"),
        "revisions": state.get("revisions", 0),
        "warnings": _warnings(state),
    }


#: a score at or below this beside ``approved: true`` is a verdict that contradicts itself
LOW_SCORE = 3


def _warnings(state: dict[str, Any]) -> list[str]:
    """What the caller should know before reading the answer: that the model did not end it
    itself (its token limit cut it, or it began repeating itself and was stopped there), that
    the review its route asks for is missing (every reviewer failed, or none gave a verdict: a
    COMPLETED job with no warning read as a reviewed answer), and that its review approved it
    with a score that says otherwise (the keyless local model's self-review read "approved,
    score 1/10" on every answer a reviewer tried)."""
    cut = cut_warning("the answer", state.get("draft_cut"))
    warnings = [cut] if cut else []
    review = state.get("review") or {}
    if review.get("status") == "unavailable":  # every attempt is in its error already: named, not said twice
        warnings.append("no review; the answer stands unreviewed: no reviewer answered (review.error lists every attempt)")
    elif review.get("status") == "unusable":
        warnings.append(f"no review; the answer stands unreviewed: {review.get('error') or 'no verdict'}")
    score = review.get("score")
    if review.get("approved") is True and isinstance(score, int) and score <= LOW_SCORE:
        warnings.append(f"the review approved the answer but scored it {score}/10: its verdict contradicts"
                        " itself, so take neither as a check of the answer")
    return warnings


def _attach_partial(exc: AllProvidersFailed | BudgetExceeded, inp: DelegateInput) -> None:
    """A job whose chain ran dry (or whose budget stopped it) after its draft keeps it: the latest
    draft (``text``), who wrote it, the review that asked for changes, the revisions made and the
    step that failed (``stopped_at``), with every completed step's trace. A budget stop's own
    partial (``stopped_at``, ``used``) stays; it lacked the draft's author and node steps."""
    from graphs.run import attach_partial

    state = getattr(exc, "graph_state", None) or {}
    if not state.get("draft"):
        return
    if isinstance(exc, BudgetExceeded):
        attach_partial(exc, _output(state, inp))
        return
    steps = [getattr(a, "step", None) or (a.get("step") if isinstance(a, dict) else None) for a in exc.attempts]
    attach_partial(exc, {**_output(state, inp), "stopped_at": next((s for s in steps if s), None)})


async def _research_route(inp: DelegateInput, ctx: JobContext) -> dict[str, Any]:
    try:
        from graphs.research.action import ResearchInput, research
    except ModuleNotFoundError:
        raise InputError(
            f"kind {inp.kind!r} needs the research graph, which is not available in this installation",
            field="kind",
        ) from None
    limit = ctx.config.limits.max_question_chars
    if len(inp.task) > limit:  # the caller sent a task: name it, and why its limit is the question's
        raise InputError(
            f"is {len(inp.task):,} characters; a task of kind {inp.kind!r} is researched as a question,"
            f" whose limit is {limit:,} (limits.max_question_chars in config)",
            field="task",
        )
    # the delegate's tier and thread go on: --tier fast walked the default chain, and a follow-up
    # in a thread was planned without the thread's earlier turns
    result = await research(ResearchInput(question=inp.task, tier=inp.tier, thread_id=inp.thread_id,
                                          history=list(inp.history)), ctx)
    return {
        **({"thread_id": inp.thread_id} if inp.thread_id else {}),
        "text": result.get("report", ""),
        "model": None,
        "kind": inp.kind,
        "review": result.get("review"),
        "revisions": 0,
        # what the report's [n] open, as the research tool's output carries them: the sources, the
        # citations and the passages each was cited for (swarm://jobs/{id}/sources/{n} reads them)
        "sources": result.get("sources", []),
        "citations": result.get("citations", []),
        "cited_passages": result.get("cited_passages", {}),
        "warnings": result.get("warnings", []),
        "trace": result.get("trace", []),
    }
