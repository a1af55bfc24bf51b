"""Nodes of the research graph: plan, search (one per sub-query, fanned out), rank, read,
write, check, review.

Each node returns the trace steps it produced (every provider attempt, then one node step),
and computes its output from the state alone, so a node that runs again after a resume gives
the same result without duplicating anything.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from langgraph.types import Send

from core.errors import AllProvidersFailed, ProviderError
from graphs.progress import emit, model_progress
from graphs.research import prompts
from graphs.research.citations import check_citations
from graphs.research.sources import Fetcher, best_passages, rank_sources, read_source, terms_of
from graphs.research.state import ResearchState, SearchTask
from providers.base import (
    DocumentReader,
    LLMConfig,
    LLMProvider,
    LLMResponse,
    Message,
    SearchProvider,
    TracedSearch,
    TraceStep,
    listen_to_attempts,
)

#: sub-queries planned, sources read, characters of source text given to the writer
DEPTH: dict[str, dict[str, int]] = {
    "quick": {"queries": 2, "read": 3, "budget": 6_000},
    "standard": {"queries": 3, "read": 5, "budget": 10_000},
    "deep": {"queries": 5, "read": 8, "budget": 16_000},
}
MAX_QUERY_CHARS = 300

Node = Callable[..., Awaitable[dict[str, Any]]]


@dataclass
class ResearchDeps:
    """What the nodes use; not part of the (checkpointed) state."""

    llm: LLMProvider
    search: SearchProvider
    fetch: Fetcher
    searches_done: int = 0


def node_step(name: str, started: float, detail: str, outcome: str = "ok") -> dict[str, Any]:
    return TraceStep(
        step=name, kind="node", provider="graph", latency_ms=(time.perf_counter() - started) * 1000,
        outcome=outcome, detail=detail[:500],  # type: ignore[arg-type]
    ).model_dump()


def _dump(steps: Any) -> list[dict[str, Any]]:
    return [s.model_dump() if hasattr(s, "model_dump") else dict(s) for s in steps]


_VERBS = {"plan": "planning", "write": "writing", "revise": "revising", "review": "reviewing"}


async def ask(llm: LLMProvider, messages: list[Message], config: LLMConfig) -> tuple[LLMResponse | None, list[dict[str, Any]], str]:
    """One LLM call: (response or None, its attempts as trace dicts, error text)."""
    try:
        with listen_to_attempts(model_progress(config.step, _VERBS.get(config.step, config.step))):
            response = await llm.complete(messages, config)
    except AllProvidersFailed as exc:
        return None, _dump(exc.attempts), exc.to_dict()["message"]
    except ProviderError as exc:
        step = TraceStep(step=config.step, provider=exc.provider, model=exc.model, outcome="error",
                         error_class=type(exc).__name__, detail=exc.to_dict()["message"][:300])
        return None, [step.model_dump()], exc.to_dict()["message"]
    return response, _dump(response.attempts), ""


def parse_plan(text: str, question: str, n: int) -> tuple[list[str], str | None]:
    """Sub-queries from the planner's answer, or ([], why it is unusable)."""
    match = re.search(r"\{.*\}|\[.*\]", text, re.DOTALL)
    if not match:
        return [], "no JSON in the planner's answer"
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError:
        return [], "the planner's JSON does not parse"
    items = data.get("queries") if isinstance(data, dict) else data
    if not isinstance(items, list):
        return [], "the planner's JSON has no list of queries"
    queries = [
        " ".join(q.split())[:MAX_QUERY_CHARS]
        for q in items
        if isinstance(q, str) and len(q.strip()) > 1 and "://" not in q and len(q.split()) <= 16
    ]
    queries = [q for q in dict.fromkeys(queries) if q.lower() != question.strip().lower()]
    return (queries[:n], None) if queries else ([], "the planner proposed no usable query")


def make_nodes(deps: ResearchDeps) -> dict[str, Node]:
    """The graph's nodes, closed over their dependencies."""

    async def plan(state: ResearchState) -> dict[str, Any]:
        started = time.perf_counter()
        n = DEPTH[state["depth"]]["queries"]
        question = " ".join(state["question"].split())
        emit("plan", f"planning up to {n} sub-queries")
        config = LLMConfig(prefer=state.get("primary"), json_schema=prompts.PLAN_SCHEMA, temperature=0.0, step="plan")
        response, trace, error = await ask(deps.llm, prompts.plan_messages(question, n), config)
        planned, problem = parse_plan(response.text, question, n) if response else ([], f"planner failed: {error}")
        queries = [question[:MAX_QUERY_CHARS], *planned]
        if problem:
            detail, outcome = f"plan unusable ({problem}); fell back to the question itself", "error"
        else:
            detail, outcome = f"{len(planned)} sub-queries planned, plus the question itself", "ok"
        emit("plan", detail)
        return {"queries": queries, "trace": trace + [node_step("plan", started, detail, outcome)]}

    async def search(task: SearchTask) -> dict[str, Any]:
        failed = False
        try:
            if isinstance(deps.search, TracedSearch):
                results, steps = await deps.search.search_traced(
                    task["query"], task["max_results"], step=f"search[{task['query_index']}]"
                )
            else:
                results, steps = await deps.search.search(task["query"], task["max_results"]), []
        except AllProvidersFailed as exc:
            results, steps, failed = [], list(exc.attempts), True
        except ProviderError as exc:
            step = TraceStep(step="search", kind="search", provider=exc.provider, outcome="error",
                             error_class=type(exc).__name__, detail=exc.to_dict()["message"][:300])
            results, steps, failed = [], [step], True
        deps.searches_done += 1
        emit("search", f"search {min(deps.searches_done, task['total'])}/{task['total']}", deps.searches_done / task["total"])
        hit = {"query_index": task["query_index"], "query": task["query"], "failed": failed,
               "results": [r.model_dump(mode="json") for r in results]}
        return {"hits": [hit], "trace": _dump(steps)}

    async def rank(state: ResearchState) -> dict[str, Any]:
        started = time.perf_counter()
        sources = rank_sources(state.get("hits", []), state["max_sources"])
        found = sum(len(h["results"]) for h in state.get("hits", []))
        detail = f"{found} hits -> {len(sources)} distinct sources"
        return {"sources": sources, "trace": [node_step("rank", started, detail)]}

    async def read(state: ResearchState) -> dict[str, Any]:
        started = time.perf_counter()
        depth = DEPTH[state["depth"]]
        chosen = state["sources"][: depth["read"]]
        emit("read", f"reading {len(chosen)} of {len(state['sources'])} sources")
        reader = deps.search.read_document if isinstance(deps.search, DocumentReader) else None
        outcomes = await asyncio.gather(*(read_source(s["url"], read_local=reader, fetch=deps.fetch) for s in chosen))
        terms = terms_of([state["question"], *state.get("queries", [])])
        budget = max(400, depth["budget"] // max(1, len(state["sources"])))
        excerpts: dict[str, str] = {}
        for source, (text, _) in zip(chosen, outcomes, strict=True):
            if text:
                excerpts[str(source["id"])] = best_passages(text, terms, budget)
        steps = [step for _, step in outcomes]
        detail = f"read {len(excerpts)} of {len(chosen)} sources; the rest are given as snippets"
        return {"excerpts": excerpts, "trace": steps + [node_step("read", started, detail)]}

    return {"plan": plan, "search": search, "rank": rank, "read": read, **_writing_nodes(deps)}


async def fan_out(state: ResearchState) -> list[Send]:
    """One ``Send`` per sub-query: LangGraph runs the search node for all of them at once."""
    total = len(state["queries"])
    return [
        Send("search", SearchTask(query=q, query_index=i, total=total, max_results=state["max_sources"]))
        for i, q in enumerate(state["queries"])
    ]


def _no_sources_report(state: ResearchState) -> str:
    attempts = [s for s in state.get("trace", []) if s.get("kind") == "search"]
    lines = [f"- {s['provider']}: {s['outcome']}{' - ' + s['detail'] if s.get('detail') else ''}" for s in attempts]
    listed = "\n".join(dict.fromkeys(lines)) or "- no search backend was tried"
    return (
        f"## No sources found\n\nNo search backend returned anything for: {state['question']}\n\n"
        f"Nothing is cited, because nothing was retrieved. Search attempts:\n\n{listed}\n"
    )


def _extractive_report(state: ResearchState, error: str) -> str:
    lines = [f"- {s['title']}: {' '.join(str(s.get('snippet', '')).split())[:300]} [{s['id']}]" for s in state["sources"]]
    return (
        "## What the search found (no report written)\n\nThe writer model did not answer"
        f" ({error[:200]}), so here is what the search found:\n\n" + "\n".join(lines) + "\n"
    )


def _writing_nodes(deps: ResearchDeps) -> dict[str, Node]:
    async def write(state: ResearchState) -> dict[str, Any]:
        started = time.perf_counter()
        revision = state.get("revisions", 0) + (1 if state.get("review") else 0)
        if not state["sources"]:
            emit("write", "no sources were found; nothing to cite")
            detail = "no sources: wrote the no-sources report without a model"
            return {"draft": _no_sources_report(state), "written_by": None, "revisions": revision,
                    "trace": [node_step("write", started, detail, "error")]}
        emit("write", f"writing with {state.get('primary') or 'the default model'}" + (f" (revision {revision})" if revision else ""))
        messages = prompts.write_messages(state["question"], state["sources"], state.get("excerpts", {}), state.get("review"))
        config = LLMConfig(prefer=state.get("primary"), step="write" if not revision else "revise")
        response, trace, error = await ask(deps.llm, messages, config)
        if response is None or not response.text.strip():
            why = error or "the model answered with nothing"
            return {"draft": _extractive_report(state, why), "written_by": None, "revisions": revision,
                    "trace": trace + [node_step("write", started, f"writer failed: {why}", "error")]}
        return {"draft": response.text.strip(), "written_by": response.model, "revisions": revision,
                "trace": trace + [node_step("write", started, f"written by {response.model}")]}

    async def check(state: ResearchState) -> dict[str, Any]:
        started = time.perf_counter()
        emit("check", "checking citations")
        texts = {int(s["id"]): state.get("excerpts", {}).get(str(s["id"])) or s.get("snippet", "") for s in state["sources"]}
        result = check_citations(state["draft"], state["sources"], texts)
        detail = f"{len(result.citations)} cited claims, {len(result.removed)} invalid citations removed"
        warnings = []
        if state["sources"] and not result.citations:
            warnings.append(f"the report cites none of the {len(state['sources'])} sources; treat it as unsupported")
        if result.removed:
            warnings.append(f"{len(result.removed)} citation(s) named sources that were never retrieved and were removed")
        if result.dropped_sources_section:
            detail += "; the model's own source list was replaced by the checked one"
        return {"report": result.report, "citations": result.citations, "removed_citations": result.removed,
                "warnings": warnings, "trace": [node_step("check", started, detail)]}

    async def review(state: ResearchState) -> dict[str, Any]:
        started = time.perf_counter()
        reviewer = state.get("reviewer")
        if not reviewer or not state["sources"]:
            why = "no reviewer configured for research" if not reviewer else "nothing to review without sources"
            return {"review": {"approved": None, "status": "skipped", "reason": why},
                    "trace": [node_step("review", started, why, "skipped")]}
        emit("review", f"reviewing with {reviewer}")
        config = LLMConfig(prefer=reviewer, json_schema=prompts.REVIEW_SCHEMA, temperature=0.0, step="review")
        messages = prompts.review_messages(state["question"], state["report"], state["sources"], state.get("excerpts", {}))
        response, trace, error = await ask(deps.llm, messages, config)
        verdict = _verdict(response.text) if response else None
        if response is None or verdict is None:
            status, why = ("unavailable", error) if response is None else ("unusable", "the reviewer's answer held no valid JSON verdict")
            return {"review": {"approved": None, "status": status, "error": why[:300]},
                    "trace": trace + [node_step("review", started, why, "error")]}
        verdict |= {"status": "done", "reviewer": response.model}
        detail = f"{'approved' if verdict['approved'] else 'changes requested'} by {response.model}"
        return {"review": verdict, "trace": trace + [node_step("review", started, detail)]}

    return {"write": write, "check": check, "review": review}


def _verdict(text: str) -> dict[str, Any] | None:
    match = re.search(r"\{.*\}", text, re.DOTALL)
    try:
        data = json.loads(match.group(0)) if match else None
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("approved"), bool):
        return None
    issues = data.get("issues")
    return {"approved": data["approved"], "issues": [str(i)[:300] for i in issues][:5] if isinstance(issues, list) else []}


async def after_review(state: ResearchState) -> str:
    """Revise when the reviewer asked for changes and the revision budget allows it."""
    verdict = state.get("review") or {}
    if verdict.get("approved") is False and verdict.get("issues") and state.get("revisions", 0) < state.get("max_revisions", 0):
        return "write"
    return "done"
