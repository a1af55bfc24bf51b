"""Source numbers as a reader meets them: the sources a report cites are 1..k in order of their
first citation in it, the sources found and not cited follow as k+1..n in the order found.

The graph numbers sources as it ranks them (``sources.rank_sources``), before anything is
written; the report then cites a few of them, so a reader met ``[1] ... [4] ... [6]``.
``number_by_citation`` renumbers a finished (or stopped) research state once, when the action
builds its output from it: every source id the output shows, the report's markers and Sources
list, ``sources``, the citations and their passages, the removals, the review's issues and the
passages the ``swarm://jobs/{id}/sources/{n}`` resource opens, moves together. The checkpointed
state keeps the graph's own numbers, which the trace, the prompts and the reviewer saw, so a job
replayed from its checkpoint is renumbered the same way; and renumbering numbered state changes
nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from graphs.research.citations import cited_in_order, renumber_markers, renumber_report, split_sources_section


def citation_order(state: Mapping[str, Any]) -> dict[int, int]:
    """Old source id -> new: the cited sources by their first marker in the report's body (the
    Sources list and code left out), then the rest in their order in ``sources``.

    Only a source a citation names counts as cited (a marker in a heading makes no citation, and
    gets no line in the Sources list), so the Sources list reads 1..k.
    """
    found = [int(s["id"]) for s in state.get("sources") or []]
    cited = dict.fromkeys(int(i) for c in state.get("citations") or [] for i in c.get("source_ids") or [])
    body, _ = split_sources_section(state.get("report") or "")
    first = [i for i in cited_in_order(body) if i in cited]
    known = set(found)
    order = dict.fromkeys(i for i in [*first, *cited, *found] if i in known)
    return {old: new for new, old in enumerate(order, start=1)}


def number_by_citation(state: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of research ``state`` with every source id the output shows renumbered by
    ``citation_order``; ``hits``, ``draft`` and ``trace`` keep the graph's numbers (the ids
    the writer and the reviewer were shown)."""
    new_id = citation_order(state)
    if all(old == new for old, new in new_id.items()):
        return dict(state)
    renumbered = dict(state)
    renumbered["sources"] = sorted(({**s, "id": new_id[int(s["id"])]} for s in state["sources"]), key=lambda s: s["id"])
    for key in ("excerpts", "passages"):
        if key in state:
            renumbered[key] = {_key(sid, new_id): value for sid, value in state[key].items()}
    if state.get("report"):
        renumbered["report"] = renumber_report(state["report"], new_id)
    for key, renumber in _LISTS.items():
        if key in state:
            renumbered[key] = [renumber(entry, new_id) for entry in state[key] or []]
    if state.get("review") and state["review"].get("issues"):
        review = state["review"]
        renumbered["review"] = {**review, "issues": [renumber_markers(str(i), new_id) for i in review["issues"]]}
    return renumbered


def _key(sid: str, new_id: Mapping[int, int]) -> str:
    return str(new_id.get(int(sid), int(sid)))


def _ids(ids: Sequence[Any], new_id: Mapping[int, int]) -> list[int]:
    """Ids of sources renumbered; an id that names no source (one a writer invented) stays."""
    return [new_id.get(int(i), int(i)) for i in ids]


def _citation(citation: Mapping[str, Any], new_id: Mapping[int, int]) -> dict[str, Any]:
    renumbered = {**citation, "source_ids": sorted(_ids(citation.get("source_ids") or [], new_id))}
    passage = citation.get("passage")
    if passage and passage.get("source_id") is not None:
        renumbered["passage"] = {**passage, "source_id": new_id.get(int(passage["source_id"]), passage["source_id"])}
    return renumbered


def _unsupported(entry: Mapping[str, Any], new_id: Mapping[int, int]) -> dict[str, Any]:
    return {**entry, "source_ids": _ids(entry.get("source_ids") or [], new_id)}


def _removed(entry: Mapping[str, Any], new_id: Mapping[int, int]) -> dict[str, Any]:
    """A removed citation names a source that was never retrieved; the valid ids beside it in
    its marker (``[2, 9]``) are renumbered."""
    return {**entry, "marker": renumber_markers(str(entry.get("marker", "")), new_id)}


def _repeat(entry: Mapping[str, Any], new_id: Mapping[int, int]) -> dict[str, Any]:
    return {**entry, "text": renumber_markers(str(entry.get("text", "")), new_id)}


_LISTS = {
    "citations": _citation,
    "unsupported_sentences": _unsupported,
    "removed_citations": _removed,
    "repeats_removed": _repeat,
}
