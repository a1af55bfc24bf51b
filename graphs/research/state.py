"""State of the research graph. Only plain JSON-able data, so any checkpointer can store it."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


class ResearchState(TypedDict, total=False):
    question: str
    #: a thread's earlier turns, for the planner of a follow-up ("" or absent: none)
    context: str
    antecedent: str  # a follow-up's earlier questions: what its "it" may be (``nodes.with_antecedent``)
    depth: str
    max_sources: int
    primary: str | None
    #: the model tier asked for (``fast``/``balanced``/``premium``); ``None``: providers.llm.default
    tier: str | None
    reviewer: str | None
    #: the reviewer's model family (config); it settles undecided sentences only when it differs from the writer's
    reviewer_family: str | None
    #: undecided sentences sent to the reviewer at most (limits.max_entailment_sentences; 0: none)
    max_entailment_sentences: int
    max_revisions: int
    #: what the caller asked for: extractive, abstractive or auto
    mode: str
    #: the family of the model that answered the planner (auto mode: "local" -> extractive)
    planned_by: str | None
    queries: list[str]
    #: one entry per searched sub-query: {query_index, query, results: [SearchResult dicts], failed}
    hits: Annotated[list[dict[str, Any]], operator.add]
    sources: list[dict[str, Any]]
    #: source id (as a string: checkpoint-safe keys) -> the text the writer sees
    excerpts: dict[str, str]
    #: source id (as a string) -> passages kept from it: {text, start, end, heading, page} (passages.py)
    passages: dict[str, list[dict[str, Any]]]
    draft: str
    #: why no model wrote the draft, every attempt named (None: one did, or none was asked); the
    #: check turns it into a warning, as the report then quotes the sources instead
    write_failure: str | None
    #: what the writer's answer left as it was and why (a revision the local model answered in auto
    #: mode: the earlier draft stands); the check turns it into a warning
    writer_note: str | None
    #: the write node kept the draft checked and reviewed last round (its revision could not be
    #: written): check and review keep what they said of it, and the loop ends
    draft_stands: bool
    written_by: str | None
    #: the family of the model that wrote the draft (extractive: the one that planned)
    writer_family: str | None
    #: what the draft (then the report) is: "extractive", "abstractive", or None without sources
    report_mode: str | None
    #: the check found nothing backed in a written draft and a revision is left: the review node
    #: passes the check's reasons on to the writer instead of calling a model
    revise_unbacked: bool
    report: str
    citations: list[dict[str, Any]]
    removed_citations: list[dict[str, Any]]
    #: sentences the grounding check removed: {sentence, source_ids, reason}
    unsupported_sentences: list[dict[str, Any]]
    #: supported / factual sentences of the checked draft (None: it stated nothing)
    support: float | None
    #: {factual, supported, support, undecided, settled_by_reviewer, entailed, not_entailed,
    #: reviewer: {status, model, asked, reason}} of the checked report (entailment.py)
    grounding: dict[str, Any] | None
    repeats_removed: list[dict[str, str]]
    warnings: list[str]
    review: dict[str, Any] | None
    revisions: int
    trace: Annotated[list[dict[str, Any]], operator.add]


class SearchTask(TypedDict):
    """The payload one ``Send`` gives the search node."""

    query: str
    query_index: int
    total: int
    max_results: int
