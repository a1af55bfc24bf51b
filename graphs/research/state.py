"""State of the research graph. Only plain JSON-able data, so any checkpointer can store it."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


class ResearchState(TypedDict, total=False):
    question: str
    depth: str
    max_sources: int
    primary: str | None
    reviewer: str | None
    max_revisions: int
    queries: list[str]
    #: one entry per searched sub-query: {query_index, query, results: [SearchResult dicts], failed}
    hits: Annotated[list[dict[str, Any]], operator.add]
    sources: list[dict[str, Any]]
    #: source id (as a string: checkpoint-safe keys) -> the text the writer sees
    excerpts: dict[str, str]
    draft: str
    written_by: str | None
    report: str
    citations: list[dict[str, Any]]
    removed_citations: list[dict[str, Any]]
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
