"""Which planned sub-queries are worth a search and a section of the report.

A small planner writes junk now and then: SQL or code ("SELECT * FROM SortedContainers"), one
name repeated until the length limit ("SortedContainers.SortedContainers..."), one made-up
identifier (``add_mcp_server_query_list``, ``keywords:runpods``), a bare label (``keywords:``),
the question again in other words. ``junk_form`` catches what is junk whatever the question (the plan drops
it before searching); ``junk_reason`` adds the sub-queries that repeat the question or an
earlier sub-query (the extractive report makes no section of them: the question has its own).
A repeat is found whatever its spelling: a name glued or split ("SortedContainers", "xxx-hash"
for "xxhash"), a typo ("retyring"), a plural, the words in another order; a word that narrows
nothing is no new word (``FILLER_WORDS``: "guide", "examples"; a part of a name the other writes
glued: "cache" of "DiskCache"), and a noun made from a verb is a new word ("requirements" is no
spelling of "require", though both stem to "requir").
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

from graphs.research.stems import (
    FILLER_WORDS,
    STOPWORDS,
    bare_stem,
    content_stems,
    is_content_word,
    words_of,
)

#: a sub-query longer than this is not a search phrase
MAX_SUB_QUERY_CHARS = 150
#: no word of a search phrase is this long ("SortedContainersSortedContainers...")
MAX_WORD_CHARS = 40
#: two sub-queries, or a sub-query and the question, sharing this share of their content words
#: (Jaccard, each word in any spelling: ``_said``) say the same
NEAR_DUPLICATE = 0.8
#: a word one letter off another (changed, added, dropped, two swapped) is a typo of it from this length
TYPO_MIN_CHARS = 6
#: a name written as up to this many words is the same name glued ("sorted containers", "SortedContainers")
GLUED_WORDS = 3
#: the ending of a noun made from a verb ("requirement", "performance", "connection", and their
#: plurals): it names something else than the verb ("require", "perform"), which ``stem`` merges
_DERIVED = re.compile(r"(?:ment|[st]ion|[ae]nc(?:[ey]|ie)?)(?:s|d|ed|ing)?$")
#: a glued name as written, with a capital inside it after a small letter ("DiskCache", "useEffect")
_CAMEL_CASE = re.compile(r"[A-Za-z0-9]*[a-z][A-Z][A-Za-z0-9]*")
#: the parts such a name shows ("Disk", "Cache"), each this long at least
_CAMEL_PART = re.compile(r"[A-Z]?[a-z]{3,}")
_SQL = re.compile(r"\b(?:select|insert|update|delete|drop|create)\b.*\b(?:from|into|set|where|table)\b", re.IGNORECASE)
#: statement punctuation, a call ``f(x)``, an operator, a wildcard: code, not a phrase
_CODE = re.compile(r"[;{}=<>\\$]|\w\(|(?:^|\s)\*(?:\s|$)|->|::|&&|\|\|")
#: one token the planner made up, not a phrase: a lower-case snake_case name of four words or
#: more (``add_mcp_server_query_list``), a ``field:value`` (``keywords:runpods``), a plan's label glued
#: to its phrase (``keywords:circuit breaker``; ``site:docs.python.org asyncio`` is a search). A real name a corpus holds (``RUNPOD_LOG_LEVEL``, ``max_tokens``, ``python-3.12``) is
#: a good search; a shorter made-up one (``checksum_removed``) no source says makes no section either
#: (``graphs.research.extractive``).
_IDENTIFIER = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+){3,}(?:\.[a-z0-9]{1,5})?$|^[a-z]+:\S+$|^(?:keywords?|quer(?:y|ies)|search|terms?|topics?)\s*:\S")
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
    words = words_of(query)
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
    asked = set(words_of(question))
    # a numbered or lone frame ("query 2", "sub-query", "keywords"); two real words ("keyword
    # search", "search terms") may be the subject itself
    framed = len(words) == 1 or any(w.isdigit() or w in _FRAME_WORDS for w in words)
    if framed and all((w in _PLAN_WORDS and w not in asked) or w.isdigit() for w in words):
        return "it names the plan's parts, not a subject"
    # the question's own words numbered as a plan's parts ("x-search-query-1" for "x")
    if framed and any(w in _PLAN_WORDS and w not in asked for w in words) \
            and all(w in _PLAN_WORDS or w.isdigit() or w in asked for w in words):
        return "it names the plan's parts, not a subject"
    numbers = sum(w.isdigit() for w in words)
    if numbers >= 6 and numbers * 3 > len(words) * 2:  # "usage: 10.0, 2.0, 3.0, ..."; not "python 3.11 vs 3.12"
        return "it is mostly numbers, not a search phrase"
    if any(len(w) > MAX_WORD_CHARS for w in words):
        return f"it has a word longer than {MAX_WORD_CHARS} characters"
    counts = Counter(w for w in words if len(w) > 2 or len(w) == 2 and not w.isdigit())  # "v2.1/v2.1/v2.1/"
    if counts and max(counts.values()) >= 3:
        return "it repeats one word over and over"
    return None


def junk_reason(query: str, question: str, kept: Sequence[str] = ()) -> str | None:
    """Why ``query`` should make no section beside ``question`` and the ``kept`` sub-queries:
    ``junk_form``, no content word the question lacks, or a near-duplicate of the question or of
    a kept one; a word counts as said in any spelling (``_said``), so the question re-spelt makes
    no section of its own (the bundled planner's "C:SortedContainers" for "Which sorted collection
    types does Sorted Containers provide, and is it written in C?": the stems "sorted" and "sort" differ)."""
    form = junk_form(query, question)
    if form:
        return form
    added, _, likeness = _likeness(query, question)
    if not added:
        return "it adds no word to the question"
    if likeness >= NEAR_DUPLICATE:
        return "it repeats the question in other words"
    for other in kept:
        if _likeness(query, other)[2] >= NEAR_DUPLICATE:
            return f"it repeats the sub-query {other[:80]!r}"
    return None


def _likeness(text: str, other: str) -> tuple[set[str], set[str], float]:
    """The content words (as stems) that ``text`` says and ``other`` does not, those ``other``
    says and ``text`` does not, and the share of their content words the two say in common
    (Jaccard; a name one writes as two words and the other as one counts once)."""
    words, theirs = words_of(text), words_of(other)
    said_by_other, said_by_text = _said(words, theirs, _name_parts(other)), _said(theirs, words, _name_parts(text))
    mine, own_common = _content(words, said_by_other)
    their, their_common = _content(theirs, said_by_text)
    added, missing = mine - own_common, their - their_common
    common = min(len(own_common), len(their_common))
    return added, missing, common / (common + len(added) + len(missing)) if common or added or missing else 1.0


def _content(words: Sequence[str], said: set[int]) -> tuple[set[str], set[str]]:
    """The forms (``_form``) of the content words of ``words`` that narrow a search (no
    ``FILLER_WORDS``), and of those at the indexes ``said``."""
    content = {i: _form(w) for i, w in enumerate(words) if is_content_word(w) and w not in FILLER_WORDS}
    return set(content.values()), {s for i, s in content.items() if i in said}


def _form(word: str) -> str:
    """``word``'s ``bare_stem`` ("handle" is "handling" again), marked when ``word`` is a noun
    made from a verb (``_DERIVED``): "requirements" and "requirement" are one form, "require",
    "requires" and "required" another."""
    return bare_stem(word) + "+" if _DERIVED.search(word) else bare_stem(word)


def _name_parts(text: str) -> list[str]:
    """The parts of each glued name ``text`` writes with a capital inside ("DiskCache": disk,
    cache), in small letters: a word the name says already. Only where the capitals show the
    parts: "sync" is no part of "async"."""
    return [part.lower() for name in _CAMEL_CASE.findall(text) for part in _CAMEL_PART.findall(name)]


def _said(words: Sequence[str], other: Sequence[str], implied: Sequence[str] = ()) -> set[int]:
    """The indexes of ``words`` that ``other`` says, in any spelling: the same form (``_form``),
    one typo apart (``TYPO_MIN_CHARS``), up to ``GLUED_WORDS`` words glued on either side
    ("xxx-hash" and "xxhash", "SortedContainers" and "Sorted Containers"), or one of the parts
    ``implied`` by a name ``other`` glues ("cache" of "DiskCache")."""
    their_glued = {word for _, _, word in _glued(other)}
    their_forms = {_form(w) for w in [*other, *implied]}
    said: set[int] = set()
    for i, j, word in _glued(words):
        if (j == i + 1 and _form(word) in their_forms) or word in their_glued or any(_typo(word, w) for w in their_glued):
            said.update(range(i, j))
    return said


def _glued(words: Sequence[str]) -> list[tuple[int, int, str]]:
    """``(start, end, the words joined)`` for each word and each run of up to ``GLUED_WORDS``
    words without a stop word ("a sync" is no spelling of "async")."""
    return [(i, j, "".join(words[i:j])) for i in range(len(words)) for j in range(i + 1, min(i + GLUED_WORDS, len(words)) + 1)
            if j == i + 1 or not STOPWORDS.intersection(words[i:j])]


def _typo(word: str, other: str) -> bool:
    """``word`` and ``other`` are one letter apart (changed, added, dropped, or two neighbours
    swapped) after the same first letter, both at least ``TYPO_MIN_CHARS`` long and without digits
    ("python311" is no typo of "python312", nor "asyncapi", glued, of "syncapi")."""
    if min(len(word), len(other)) < TYPO_MIN_CHARS or abs(len(word) - len(other)) > 1 or word[0] != other[0] or word == other:
        return False
    if any(c.isdigit() for c in word + other):
        return False
    short, long_ = sorted((word, other), key=len)
    i = next((k for k, (a, b) in enumerate(zip(short, long_, strict=False)) if a != b), len(short))
    if len(short) < len(long_):
        return short[i:] == long_[i + 1:]
    return short[i + 1:] == long_[i + 1:] or (short[i + 2:] == long_[i + 2:] and short[i:i + 2] == long_[i:i + 2][::-1])


def useful_sub_queries(question: str, queries: Sequence[str]) -> list[str]:
    """``queries`` without junk and without those ``junk_reason`` refuses, in order."""
    kept: list[str] = []
    for query in queries:
        if junk_reason(query, question, kept) is None:
            kept.append(" ".join(query.split()))
    return kept
