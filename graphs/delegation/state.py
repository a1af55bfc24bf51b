"""State of the delegation graph."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


class DelegationState(TypedDict, total=False):
    task: str
    kind: str
    tier: str | None
    primary: str
    reviewer: str | None
    max_revisions: int
    history: list[dict[str, Any]]  # a thread's earlier turns in the prompt (history.Turn)
    draft: str
    draft_cut: str | None  # why the draft ended early (graphs.cuts: length, loop); None: it ended by itself
    drafted_by: str
    drafted_family: str  # the drafter's family: the review avoids it
    review: dict[str, Any] | None
    revisions: int
    final: str
    trace: Annotated[list[dict[str, Any]], operator.add]
