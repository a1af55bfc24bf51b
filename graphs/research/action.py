"""The ``swarm/research`` action: a cited report whose every factual sentence is backed by the
passage it cites."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.errors import AllProvidersFailed, BudgetExceeded, InputError
from core.rules import MAX_NAME_CHARS, Tier, check_text_limit, not_blank
from graphs.context import JobContext
from graphs.research.citations import cited_passages
from graphs.research.numbering import number_by_citation
from graphs.turns import THREAD_ID_PATTERN, Turn, context_text, fit, thread_step
from providers.base import Configurable, SearchProvider, SelectableSearch

#: characters of a follow-up's earlier question kept to search with (``nodes.with_antecedent``)
MAX_QUESTION_SEARCH_CHARS = 300
#: characters of a thread's earlier turns the planner sees (a follow-up's "it" resolves against them)
PLAN_CONTEXT_CHARS = 2000
#: caps for reading one web page during research
FETCH_MAX_BYTES = 2 * 1024 * 1024
FETCH_TIMEOUT_S = 10.0


class ResearchInput(BaseModel):
    """Input of ``research``."""

    model_config = ConfigDict(extra="forbid", strict=True)  # a wrong type is refused, not coerced (true -> 1)

    question: str = Field(min_length=1, description="what to find out (limit: limits.max_question_chars)")
    depth: Literal["quick", "standard", "deep"] = Field(
        default="standard", description="quick: 2 sub-queries, 3 sources read; standard: 3 and 5; deep: 5 and 8"
    )
    max_sources: int = Field(default=8, ge=1, le=20, description="most sources kept after ranking")
    mode: Literal["extractive", "abstractive", "auto"] = Field(
        default="auto",
        description="extractive: the sources' own words, no model writes; abstractive: a model writes (a draft"
        " the sources back none of goes back to the writer with the check's reasons while revisions are left,"
        " then the report quotes the sources);"
        " auto: abstractive unless the writer is the local model or its draft fails the grounding check",
    )
    backends: list[Annotated[str, Field(max_length=MAX_NAME_CHARS)]] | None = Field(
        default=None,
        min_length=1,
        max_length=8,
        description="search backends to use, in order (default: providers.search.fallback_chain)",
    )
    thread_id: str | None = Field(default=None, pattern=THREAD_ID_PATTERN, description="the conversation")
    tier: Tier | None = Field(default=None, description="model tier of the planner, writer and reviewer"
                              " (default: providers.llm.default); a delegate of kind research passes its own")
    history: list[Turn] = Field(default_factory=list, max_length=1000,
                                description="the thread's earlier turns, oldest first (the door sends them)")

    _not_blank = field_validator("question")(not_blank)


@runtime_checkable
class _NamedBackends(Protocol):
    """A search chain's ``(name, backend)`` pairs (``providers.search.chain.SearchChain``)."""

    backends: Sequence[tuple[str, SearchProvider]]


def _refuse_unconfigured(search: SearchProvider) -> None:
    """Refuse ``backends`` at once when none of them can be tried (a key or URL missing),
    instead of planning, searching nothing and answering "no sources"; the backends' own
    ``unconfigured_reason`` says what is missing, without a network call."""
    if not isinstance(search, _NamedBackends) or not search.backends:
        return
    reasons = [f"{name}: {reason}" for name, backend in search.backends
               if isinstance(backend, Configurable) and (reason := backend.unconfigured_reason())]
    if len(reasons) == len(search.backends):
        raise InputError(f"none of them can be searched ({'; '.join(reasons)}); set what is missing,"
                         " or leave backends out to use providers.search.fallback_chain", field="backends")


def _totals(trace: list[dict[str, Any]]) -> dict[str, Any]:
    llm_steps = [s for s in trace if s.get("kind") == "llm"]
    costs = [s["cost_usd"] for s in llm_steps if s.get("cost_usd") is not None]
    return {
        "input_tokens": sum(int(s.get("input_tokens") or 0) for s in llm_steps),
        "output_tokens": sum(int(s.get("output_tokens") or 0) for s in llm_steps),
        "cost_usd": round(sum(costs), 6) if costs else None,
    }


async def research(inp: ResearchInput, ctx: JobContext) -> dict[str, Any]:
    """Plan, search in parallel, read, write with [n] citations, check them, review.

    Returns:
        ``report`` (Markdown), ``mode`` (extractive or abstractive: what the report is),
        ``support`` (supported / factual sentences of the checked draft), ``grounding``
        {factual, supported, support, undecided, settled_by_reviewer, entailed, not_entailed,
        reviewer: {status, model, asked, reason}} (sentences a reviewer of another family
        settled when the words alone could not), ``sources``
        [{id, url, title, snippet, retrieved_at, ...}] (ids 1..k in order of first citation in
        the report, then the sources not cited; every id below is that number), ``citations`` [{claim, source_ids,
        support, passage: {source_id, start, end, heading, page, overlap, link?}}] (``link``: a web
        page's URL opened at the passage, a text fragment), ``unsupported_sentences``
        [{sentence, source_ids, reason}], ``repeats_removed``, ``removed_citations``,
        ``warnings``, ``cited_passages`` {source id: [{text, start, end, heading, page,
        snippet?}]} (the passages the citations rest on), ``review``, ``queries``, ``trace`` and
        ``totals`` {input_tokens, output_tokens, cost_usd}.

    Raises:
        InputError: the question is longer than limits.max_question_chars, or ``backends``
            names a backend that is not configured or none that can be searched (a key missing).
    """
    config = ctx.config
    check_text_limit(inp.question, config.limits, "max_question_chars", "question")
    search = ctx.providers.search
    if inp.backends is not None:
        if not isinstance(search, SelectableSearch):
            raise InputError("this search provider cannot be restricted to named backends", field="backends")
        search = search.only(inp.backends)
        _refuse_unconfigured(search)
    route = config.routing.delegation.get("research")

    from graphs.research.graph import build_graph
    from graphs.run import lean_checkpointer
    from providers.web.fetch import safe_fetch

    fetch = partial(safe_fetch, max_bytes=FETCH_MAX_BYTES, timeout_s=FETCH_TIMEOUT_S, truncate=True, only_pages=True)
    checkpointer = ctx.checkpointer
    if checkpointer is None:
        # langgraph 1.2.22 fails on durability="sync" without a saver; a throwaway one costs little.
        from langgraph.checkpoint.memory import InMemorySaver

        checkpointer = InMemorySaver()
    graph = build_graph(ctx.providers.llm, search, fetch, lean_checkpointer(ctx, checkpointer))
    try:
        state = await _run(graph, inp, route, ctx, checkpointer)
    except (BudgetExceeded, AllProvidersFailed) as exc:
        _attach_partial(exc)
        raise
    await ctx.progress("done", "research finished", 1.0)
    state = number_by_citation(state)  # [1]..[k] as the report cites them: the one renumbering
    trace = list(state.get("trace", []))
    return {
        **({"thread_id": inp.thread_id} if inp.thread_id else {}),
        "report": state.get("report", ""),
        "mode": state.get("report_mode"),
        # the model that wrote the report (None: quoted from the sources): a stand-in shows here
        "written_by": state.get("written_by") if state.get("report_mode") == "abstractive" else None,
        "support": state.get("support"),
        "grounding": state.get("grounding"),
        "sources": state.get("sources", []),
        "citations": state.get("citations", []),
        "unsupported_sentences": state.get("unsupported_sentences", []),
        "repeats_removed": state.get("repeats_removed", []),
        "removed_citations": state.get("removed_citations", []),
        "warnings": state.get("warnings", []),
        "cited_passages": cited_passages(state.get("citations", []), state.get("passages", {}), state.get("sources", [])),
        "review": state.get("review"),
        "queries": state.get("queries", []),
        "trace": trace,
        "totals": _totals(trace),
    }


async def _run(graph: Any, inp: ResearchInput, route: Any, ctx: JobContext, checkpointer: Any) -> dict[str, Any]:
    from graphs.run import run_graph

    return await run_graph(
        graph,
        {
            "question": inp.question,
            "depth": inp.depth,
            "max_sources": inp.max_sources,
            "mode": inp.mode,
            "primary": route.primary.split("+", 1)[0] if route else None,
            "tier": inp.tier,
            "reviewer": route.reviewer if route else None,
            "reviewer_family": ctx.config.family_of(route.reviewer.split("+", 1)[0]) if route and route.reviewer else None,
            "max_entailment_sentences": ctx.config.limits.max_entailment_sentences,
            "max_revisions": ctx.config.limits.max_revisions,
            "revisions": 0,
            **_thread_context(inp, ctx.config.threads.max_chars),
        },
        ctx if checkpointer is ctx.checkpointer else replace(ctx, checkpointer=checkpointer),
    )


def _thread_context(inp: ResearchInput, max_chars: int) -> dict[str, Any]:
    """A follow-up's context for the planner: the thread's newest turns within
    ``PLAN_CONTEXT_CHARS`` (and ``threads.max_chars``), a long answer shortened rather than
    dropped with its question (``thread_context.fit``), and the ``thread`` trace step saying
    which. The search, the sources and the check take the question and the sources only."""
    if not inp.thread_id:
        return {"trace": []}
    budget = min(max_chars, PLAN_CONTEXT_CHARS)
    limit = f"threads.max_chars={max_chars}" if max_chars <= PLAN_CONTEXT_CHARS else \
        f"the planner's {PLAN_CONTEXT_CHARS} characters"
    fitted = fit(inp.history, budget)
    # the earlier questions, newest first: a follow-up of a follow-up ("Who maintains it now?"
    # after "When did he leave the project?") points back past the one before it
    asked = " ".join(" ".join(t.content.split()) for t in reversed(inp.history) if t.role == "user")
    return {"context": context_text(fitted), "trace": [thread_step(inp.thread_id, inp.history, fitted, limit)],
            **({"antecedent": asked[:MAX_QUESTION_SEARCH_CHARS]} if asked else {})}


def partial_output(state: dict[str, Any]) -> dict[str, Any]:
    """What a research had when it stopped: its sources, queries and any report, numbered as
    a finished one is (``number_by_citation``)."""
    state = number_by_citation(state)
    return {
        "report": state.get("report") or None,
        "sources": state.get("sources", []),
        "citations": state.get("citations", []),
        "queries": state.get("queries", []),
    }


def _attach_partial(exc: BudgetExceeded | AllProvidersFailed) -> None:
    """``partial_output`` of the state when it stopped, with the steps of every completed node in
    the error's trace (searches and reads included)."""
    from graphs.run import attach_partial

    attach_partial(exc, partial_output(getattr(exc, "graph_state", None) or {}))
