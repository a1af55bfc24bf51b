"""Which planned sub-queries are worth a search and a section of the report.

A small planner writes junk now and then: SQL or code ("SELECT * FROM SortedContainers"), one
name repeated until the length limit ("SortedContainers.SortedContainers..."), one made-up
identifier (``add_mcp_server_query_list``, ``keywords:runpods``), a bare label (``keywords:``),
the question again in other words. ``junk_form`` catches what is junk whatever the question (the plan drops
it before searching); ``junk_reason`` adds the sub-queries that repeat the question or an
earlier sub-query (the extractive report makes no section of them: the question has its own).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from graphs.research.passages import content_stems

#: a sub-query longer than this is not a search phrase
MAX_SUB_QUERY_CHARS = 150
#: no word of a search phrase is this long ("SortedContainersSortedContainers...")
MAX_WORD_CHARS = 40
#: two sub-queries sharing this share of their content words (Jaccard) say the same
NEAR_DUPLICATE = 0.8
_WORD = re.compile(r"[a-z0-9]+")
_SQL = re.compile(r"\b(?:select|insert|update|delete|drop|create)\b.*\b(?:from|into|set|where|table)\b", re.IGNORECASE)
#: statement punctuation, a call ``f(x)``, an operator, a wildcard: code, not a phrase
_CODE = re.compile(r"[;{}=<>\\$]|\w\(|(?:^|\s)\*(?:\s|$)|->|::|&&|\|\|")
#: one token the planner made up, not a phrase: a lower-case snake_case name of four words or
#: more (``add_mcp_server_query_list``), a ``field:value`` (``keywords:runpods``), a plan's label glued
#: to its phrase (``keywords:circuit breaker``; ``site:docs.python.org asyncio`` is a search). A real name a corpus holds (``RUNPOD_LOG_LEVEL``, ``max_tokens``, ``python-3.12``) is
#: a good search; a shorter made-up one (``checksum_removed``) no source says makes no section either
#: (``graphs.research.extractive``).
_IDENTIFIER = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+){3,}$|^[a-z]+:\S+$|^(?:keywords?|quer(?:y|ies)|search|terms?|topics?)\s*:\S")
#: a label with nothing after it (``keywords:``, ``Sub-query 1:``): the planner's frame, not a phrase
_LABEL = re.compile(r"^[\w\s-]{1,40}:$")
#: words that name a plan's parts, not a subject: a sub-query of only these searches for nothing
_PLAN_WORDS = frozenset({"keyword", "keywords", "query", "queries", "subquery", "sub", "search", "searches",
                         "question", "questions", "topic", "topics", "answer", "phrase", "term", "terms"})
#: of those, the ones that only ever frame a plan ("sub-query 2")
_FRAME_WORDS = frozenset({"sub", "subquery"})


def junk_form(query: str, question: str = "") -> str | None:
    """Why ``query`` is no search phrase whatever it is about (code, SQL, a repeated or
    over-long word, no word at all, only the words that name a plan's parts unless ``question``
    asks about them: "search queries"), or None when its form is fine."""
    words = _WORD.findall(query.lower())
    if not content_stems(query):
        return "it has no content word"
    if len(query) > MAX_SUB_QUERY_CHARS:
        return f"it is longer than {MAX_SUB_QUERY_CHARS} characters"
    if _SQL.search(query) or _CODE.search(query):
        return "it is code, not a search phrase"
    if _LABEL.match(query.strip()):
        return "it is a label with nothing after it"
    if _IDENTIFIER.match(query.strip()):
        return "it is an identifier, not a search phrase"
    asked = set(_WORD.findall(question.lower()))
    # a numbered or lone frame ("query 2", "sub-query", "keywords"); two real words ("keyword
    # search", "search terms") may be the subject itself
    framed = len(words) == 1 or any(w.isdigit() or w in _FRAME_WORDS for w in words)
    if framed and all((w in _PLAN_WORDS and w not in asked) or w.isdigit() for w in words):
        return "it names the plan's parts, not a subject"
    numbers = sum(w.isdigit() for w in words)
    if numbers >= 6 and numbers * 3 > len(words) * 2:  # "usage: 10.0, 2.0, 3.0, ..."; not "python 3.11 vs 3.12"
        return "it is mostly numbers, not a search phrase"
    if any(len(w) > MAX_WORD_CHARS for w in words):
        return f"it has a word longer than {MAX_WORD_CHARS} characters"
    counts = Counter(w for w in words if len(w) > 2)
    if counts and max(counts.values()) >= 3:
        return "it repeats one word over and over"
    return None


def junk_reason(query: str, question: str, kept: Sequence[str] = ()) -> str | None:
    """Why ``query`` should make no section beside ``question`` and the ``kept`` sub-queries:
    ``junk_form``, no content word the question lacks, or a near-duplicate of a kept one."""
    form = junk_form(query, question)
    if form:
        return form
    stems = set(content_stems(query))
    if not stems - set(content_stems(question)):
        return "it adds no word to the question"
    for other in kept:
        theirs = set(content_stems(other))
        if len(stems & theirs) / len(stems | theirs) >= NEAR_DUPLICATE:
            return f"it repeats the sub-query {other[:80]!r}"
    return None


def useful_sub_queries(question: str, queries: Sequence[str]) -> list[str]:
    """``queries`` without junk and without those ``junk_reason`` refuses, in order."""
    kept: list[str] = []
    for query in queries:
        if junk_reason(query, question, kept) is None:
            kept.append(" ".join(query.split()))
    return kept
