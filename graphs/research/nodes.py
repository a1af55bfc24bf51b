"""Nodes of the research graph up to the writing: plan, search (one per sub-query, fanned
out), rank, read. The writing nodes (write, check, review) are in ``writing.py``.

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
from graphs.research.passages import Passage, select_passages, split_passages
from graphs.research.queries import junk_form
from graphs.research.sources import Fetcher, rank_sources, read_source
from graphs.research.state import ResearchState, SearchTask
from graphs.research.stems import content_stems, is_content_word, stem, words_of
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
#: the planner's answer, in tokens: a JSON list of n search phrases needs ~15-25 tokens a phrase;
#: the bundled 135M model otherwise ran to its 512-token limit on 5 of 12 bench questions (one
#: runaway phrase, 13-24 s on 2 cores) for a plan that was junk either way
PLAN_TOKENS_BASE, PLAN_TOKENS_PER_QUERY = 32, 48
#: passages kept per read source for the checker and the extractive report: this many times the
#: writer's share, at most POOL_MAX_CHARS characters
POOL_FACTOR, POOL_MAX_CHARS = 4, 8_000

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


#: ``first_family``'s answer where the provider cannot tell (no router: a test's fake)
UNKNOWN = "?"


def first_family(llm: Any, config: LLMConfig) -> str | None:
    """The family of the model a call with ``config`` would try first now, as the router predicts
    it (no key missing, circuit not open); ``None`` when no model would; ``UNKNOWN`` where the
    provider is no router."""
    first_callable = getattr(llm, "first_callable", None)
    family_of = getattr(llm, "family_of", None)
    if first_callable is None or family_of is None:
        return UNKNOWN
    first = first_callable(config)
    return None if first is None else family_of(first)


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


#: a JSON string followed by the comma or bracket that shows it was finished
_FINISHED_STRING = re.compile(r'"((?:[^"\\\n]|\\.)*)"\s*[,\]]')


def _json_string(body: str) -> str | None:
    """A salvaged string's value; ``None`` where JSON would not read it (``\\d``, a raw tab)."""
    try:
        value = json.loads(f'"{body}"')
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, str) else None


#: a list marker the planner may put before a query: "1. ", "2) ", "- ", "* "
_LIST_MARKER = re.compile(r"^\s*(?:\d{1,2}[.)]|[-*\u2022])\s+")


def _same_query(query: str) -> str:
    """What two queries share when they differ only in case, spacing and end punctuation."""
    return " ".join(query.lower().split()).rstrip(" .?!")


#: what ``parse_plan`` says of an answer with no JSON it can read: the planner's call falls over
UNREADABLE_PLAN = frozenset({"no JSON in the planner's answer", "the planner's JSON does not parse"})

#: the family of the bundled local model (SmolLM2-135M), which is never asked to plan: keyless, its
#: plan was refused in 4 of 4 runs of "How does LangGraph checkpointing make a run resumable?" (the
#: question again, word for word; elsewhere ``backoff_decorator_get_retrying_...``), each call 3-22 s
#: of a 2-core machine; prompted with an example it wrote plans that parse and add nothing
#: ("LangGraph checkpoint", ``environment_variables.php``). Its plan's fallback, the question itself,
#: is what the search gets: the planner's chain ends before it (``LLMConfig.stop_before``)
LOCAL_FAMILY = "local"
NO_LOCAL_PLAN = "the bundled local model plans no usable search"


def unplanned(trace: list[dict[str, Any]], error: str) -> str:
    """Why no planner answered: the models that failed ahead of the local one and that it was not
    asked ("deepseek-v3.1-q8: ProviderUnavailable; local not asked"), else the call's error."""
    stopped = next((str(s.get("model")) for s in trace if s.get("outcome") == "skipped" and s.get("skip") == "stopped"), None)
    if stopped is None:
        return f"planner failed: {error}"
    failed = [f"{s.get('model')}: {s.get('error_class') or 'failed'}" for s in trace if s.get("outcome") == "error"]
    return "; ".join([*failed, f"{stopped} not asked: {NO_LOCAL_PLAN}"])


def parse_plan(text: str, question: str, n: int) -> tuple[list[str], str | None]:
    """Sub-queries from the planner's answer, or ([], why it is unusable). A query that is no
    search phrase whatever the question (code, SQL, one word repeated: ``junk_form``) is dropped."""
    match = re.search(r"\{.*\}|\[.*\]", text, re.DOTALL)
    try:
        data = json.loads(match.group(0), strict=False) if match else None
    except json.JSONDecodeError:
        data = None
    if data is None:  # cut at the token limit (or broken): the phrases it finished still count
        opened = re.search(r"\[", text)
        finished = [q for m in _FINISHED_STRING.findall(text[opened.end():]) if (q := _json_string(m))] if opened else []
        if not finished:
            return [], "the planner's JSON does not parse" if match or opened else "no JSON in the planner's answer"
        data = finished
    items = data.get("queries") if isinstance(data, dict) else data
    if not isinstance(items, list):
        return [], "the planner's JSON has no list of queries"
    # a list marker ("1. ", "- ") is the planner's layout, not a search word: kept, it got past the
    # duplicate check ("1. Ignore ..." and "3. Ignore ...") and the junk check's "adds no word"
    items = [_LIST_MARKER.sub("", q) if isinstance(q, str) else q for q in items]
    queries = [
        " ".join(q.split())[:MAX_QUERY_CHARS]
        for q in items
        if isinstance(q, str) and len(q.strip()) > 1 and "://" not in q and len(q.split()) <= 16 and not junk_form(q, question)
    ]
    unique = {_same_query(q): q for q in reversed(queries)}  # case and end punctuation aside; the first kept
    queries = [q for q in queries if unique.get(_same_query(q)) is q and _same_query(q) != _same_query(question)]
    return (queries[:n], None) if queries else ([], "the planner proposed no usable query")


#: words by which a follow-up points back at what an earlier turn named ("how does it fail over?")
_ANAPHORA = re.compile(r"\b(?:it|its|it's|he|him|his|she|her|hers|they|them|their|theirs|this|that|these|those)\b",
                       re.IGNORECASE)
#: content words of the earlier question added to a follow-up's search, at most
ANTECEDENT_WORDS = 8


def with_antecedent(question: str, antecedent: str) -> str:
    """``question``, and where it points back ("When did he leave the project?") at an earlier
    question ("Who wrote the Quillmark HTML renderer?"), that question's content words it lacks:
    without a planner (the keyless model's plan was unusable) "he" searched for nothing, and the
    top source, which said when he left, was called no answer."""
    if not antecedent or not _ANAPHORA.search(question):
        return question
    own = {stem(w) for w in words_of(question)}
    added = [w for w in dict.fromkeys(words_of(antecedent)) if is_content_word(w) and stem(w) not in own]
    return f"{question} {' '.join(added[:ANTECEDENT_WORDS])}" if added else question


#: where each stage of a research job starts, as a share of the whole job (search runs from its
#: start to the next's as searches finish): the job's progress bar read 50% at the first of two
#: searches (the stage's own fraction), then crept by 1% of the rest through a long write
STAGE_AT = {"plan": 0.02, "search": 0.10, "read": 0.50, "write": 0.60, "check": 0.85, "review": 0.90}


def stage_at(stage: str, within: float = 0.0, revision: int = 0) -> float | None:
    """The job's progress at ``within`` (0..1) of ``stage``; None in a revision (its stages come
    again after the review, and the bar only moves forward: it then creeps)."""
    if revision:
        return None
    stages = list(STAGE_AT)
    start = STAGE_AT[stage]
    end = STAGE_AT[stages[stages.index(stage) + 1]] if stage != stages[-1] else 0.99
    return round(start + (end - start) * min(max(within, 0.0), 1.0), 4)


def make_nodes(deps: ResearchDeps) -> dict[str, Node]:
    """The graph's nodes, closed over their dependencies."""

    async def plan(state: ResearchState) -> dict[str, Any]:
        started = time.perf_counter()
        n = DEPTH[state["depth"]]["queries"]
        question = " ".join(state["question"].split())
        emit("plan", f"planning up to {n} sub-queries", stage_at("plan"))
        config = LLMConfig(tier=state.get("tier"), prefer=state.get("primary"),  # type: ignore[arg-type]
                           json_schema=prompts.PLAN_SCHEMA, temperature=0.0, step="plan",
                           max_tokens=PLAN_TOKENS_BASE + PLAN_TOKENS_PER_QUERY * n,
                           stop_before=(LOCAL_FAMILY, NO_LOCAL_PLAN), avoid=LOCAL_FAMILY,  # local last, then not asked
                           # a plan with no JSON it can read is a failed attempt: the next planner is asked
                           accept=lambda text: why if (why := parse_plan(text, question, n)[1]) in UNREADABLE_PLAN else None)
        response, trace, error = await ask(deps.llm, prompts.plan_messages(question, n, state.get("context") or ""), config)
        planned, problem = parse_plan(response.text, question, n) if response else ([], unplanned(trace, error))
        searched = question
        if problem:
            # searching the question's own parts instead cost the keyless quality bench fact recall
            # (0.946 -> 0.865: the read budget went to the parts' sources): the question alone, and
            # for a follow-up that says "it" or "he", with its earlier question's words
            searched = with_antecedent(question, state.get("antecedent") or "")
            detail = f"{'no plan' if response is None else 'plan unusable'} ({problem}); searched the question itself" + (
                f" with the earlier question's words ({searched[len(question) + 1:]})" if searched != question else "")
        else:
            detail = f"{len(planned)} sub-quer{'y' if len(planned) == 1 else 'ies'} planned, plus the question itself"
        queries = [searched[:MAX_QUERY_CHARS], *planned]
        emit("plan", detail)
        # the node's outcome is ok either way: the search goes on with what it has; a planner that
        # failed shows as its own llm step's error, one that answered junk in this detail
        return {"queries": queries, "planned_by": response.provider if response else None,
                "trace": trace + [node_step("plan", started, detail)]}

    async def search(task: SearchTask) -> dict[str, Any]:
        started = time.perf_counter()
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
        emit("search", f"search {min(deps.searches_done, task['total'])}/{task['total']}",
             stage_at("search", deps.searches_done / task["total"]))
        hit = {"query_index": task["query_index"], "query": task["query"], "failed": failed,
               "results": [r.model_dump(mode="json") for r in results]}
        # the node's own step, as every node has: its backends' attempts were filed under the next
        # node (rank) in the trace and in the exported spans
        detail = f"search[{task['query_index']}]: " + ("no backend answered" if failed else f"{len(results)} results")
        return {"hits": [hit], "trace": [*_dump(steps), node_step("search", started, detail, "error" if failed else "ok")]}

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
        emit("read", f"reading {len(chosen)} of {len(state['sources'])} sources", stage_at("read"))
        reader = deps.search.read_document if isinstance(deps.search, DocumentReader) else None
        outcomes = await asyncio.gather(*(read_source(s["url"], read_local=reader, fetch=deps.fetch) for s in chosen))
        terms = set(content_stems(" ".join([state["question"], *state.get("queries", [])])))
        # the writer's characters go to the sources read (the others are their snippets): divided by
        # every ranked source, a quick read's 3 of 6 got 1000 each and left the answer out
        budget = max(400, depth["budget"] // max(1, sum(1 for text, _ in outcomes if text)))
        excerpts: dict[str, str] = {}
        passages: dict[str, list[Passage]] = {}
        for source, (text, _) in zip(chosen, outcomes, strict=True):
            if text:
                # the pool the checker and the extractive report draw on; the writer sees its best part
                paged = "#page=" in str(source.get("url") or "")  # a one-page document has no break to count
                pool = select_passages(split_passages(text, paged=paged), terms, min(POOL_MAX_CHARS, POOL_FACTOR * budget),
                                       str(source.get("title") or ""))
                passages[str(source["id"])] = pool
                excerpts[str(source["id"])] = "\n\n".join(p["text"] for p in select_passages(pool, terms, budget))
        steps = [step for _, step in outcomes]
        count = sum(len(p) for p in passages.values())
        rest = len(state["sources"]) - len(excerpts)
        detail = (f"read {len(excerpts)} of {len(state['sources'])} sources ({count} passages kept)"
                  + (f"; {len(chosen) - len(excerpts)} of the {len(chosen)} opened had no text" if len(excerpts) < len(chosen) else "")
                  + (f"; the other {rest} are given as search snippets" if rest else ""))
        return {"excerpts": excerpts, "passages": passages, "trace": steps + [node_step("read", started, detail)]}

    return {"plan": plan, "search": search, "rank": rank, "read": read}


async def fan_out(state: ResearchState) -> list[Send]:
    """One ``Send`` per sub-query: LangGraph runs the search node for all of them at once."""
    total = len(state["queries"])
    return [
        Send("search", SearchTask(query=q, query_index=i, total=total, max_results=state["max_sources"]))
        for i, q in enumerate(state["queries"])
    ]
