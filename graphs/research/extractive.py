"""The grounded extractive report: the sources' own words, ranked with BM25 for the question
and each sub-question, each sentence carrying the ``[n]`` of its source, under a short opening
made of the passages' best sentences. The question always has the first section; a planned
sub-question has one after it unless it is junk (``queries.py``), headed as the search string it
is (``### Search: `...```): the planner's words, never a statement. No model writes any of it, so
it cannot state what the sources do not; it is the floor when the writer is weak or its draft
fails the grounding check.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from graphs.research.grounding import normalise
from graphs.research.passages import (
    Passage,
    bm25_scores,
    content_stems,
    query_terms,
    sentences_of,
    snippet_passage,
)
from graphs.research.queries import useful_sub_queries

#: passages quoted under each sub-question, by depth
PER_QUERY = {"quick": 2, "standard": 3, "deep": 3}
#: a quoted passage is trimmed to the best run of sentences that fits this
MAX_QUOTE_CHARS = 600
OPENING_SENTENCES = 2
NO_ANSWER = "The sources found do not answer this question."
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+")


def _section_heading(section: str, *, first: bool) -> str:
    """The heading of one section: the question as asked, a sub-query as the search string it
    is (``### Search: `...```), so that a planner's phrase never reads as a statement of fact."""
    if first:
        return f"### {section.lstrip('#').strip()}"
    return f"### Search: `{' '.join(section.replace('`', ' ').split())}`"


def flatten(text: str, code_fence: str | None = None) -> str:
    """A passage as one line of prose: headings, list markers and table rows off, list items ended.

    A table row (a line starting with ``|``) is no sentence: its cells joined would be quoted as
    one, cited, and read as prose.

    A passage that ends inside a fenced code block gets that block's closing fence (an unclosed
    fence in a quote turns the rest of the report, Sources included, into code).

    ``code_fence``: the passage starts inside a fenced code block opened by this mark
    (``split_passages`` says so); it gets the opening fence it lacks (the block's own mark, so
    that its closing fence closes it), and its first lines read as code, not as an uncited sentence.
    """
    out = code_fence or ""
    for line in text.splitlines():
        line = _HEADING.sub("", line).strip()
        if not line or line.startswith("|"):
            continue
        item = _LIST_ITEM.match(line)
        if item:
            line = line[item.end():]
            if out and out[-1] not in ".!?:;":
                out += "."
        out = f"{out} {line}" if out else line
    if out.count("```") % 2:  # the passage ends inside a code block: closed here, or the quote's
        out += " ```"  # open fence would swallow the rest of the report, Sources included
    return " ".join(out.split())


def _cite(sentence: str, source_id: int) -> str:
    """``sentence`` with ``[n]`` before its final punctuation; one that does not end with
    ``.``, ``!`` or ``?`` (cut short, a link target, code) gets a full stop after the marker,
    so the sentence splitter never joins it to the next quote."""
    sentence = sentence.strip()
    if sentence[-1:] in ".!?":
        return f"{sentence[:-1]} [{source_id}]{sentence[-1]}"
    return f"{sentence.rstrip(',;:')} [{source_id}]."


def _hits(sentence: str, terms: set[str]) -> int:
    return len(terms & set(content_stems(sentence)))


def _trim(sentences: Sequence[str], terms: set[str]) -> list[str]:
    """The run of consecutive sentences with most query terms that fits ``MAX_QUOTE_CHARS``."""
    best: tuple[int, int, int] = (-1, 0, 0)  # hits, -start, end
    for start in range(len(sentences)):
        used, end = 0, start
        while end < len(sentences) and (used + len(sentences[end]) <= MAX_QUOTE_CHARS or end == start):
            used += len(sentences[end]) + 1
            end += 1
        hits = sum(_hits(s, terms) for s in sentences[start:end])
        if (hits, -start) > best[:2]:
            best = (hits, -start, end)
    start, end = -best[1], best[2]
    chosen = list(sentences[start:end])
    if len(chosen) == 1 and len(chosen[0]) > MAX_QUOTE_CHARS:
        chosen[0] = chosen[0][:MAX_QUOTE_CHARS].rsplit(" ", 1)[0] + " …"
    return chosen


def _pool(sources: Sequence[Mapping[str, Any]], passages: Mapping[str, Sequence[Passage]]) -> list[tuple[int, str]]:
    pool: list[tuple[int, str]] = []
    for source in sources:
        sid = int(source["id"])
        for passage in passages.get(str(sid)) or [snippet_passage(str(source.get("snippet", "")))]:
            # a passage split by an earlier version has code_open and no code_fence: backticks then
            text = flatten(passage["text"], passage.get("code_fence") or ("```" if passage.get("code_open") else None))
            if text:
                pool.append((sid, text))
    return pool


def _ranked(query: str, pool: Sequence[tuple[int, str]]) -> list[int]:
    scores = bm25_scores(query, [text for _, text in pool])
    return [i for i in sorted(range(len(pool)), key=lambda i: (-scores[i], i)) if scores[i] > 0]


def opening_floor(terms: set[str]) -> int:
    """How many of the question's terms a sentence must share to open the report as its answer:
    one for a short question (up to three terms: "How does the fallback work?"), else two, and
    30% of them for a long one. A passage that BM25 ranks first may share one word of a long
    question with it and answer nothing."""
    return 1 if len(terms) <= 3 else max(2, round(0.3 * len(terms)))


def _opening(question: str, pool: Sequence[tuple[int, str]], used: set[str]) -> list[str]:
    """The best sentence of each of the top passages for the whole question, other sources first;
    none that shares fewer than ``opening_floor`` of its terms (then the report says the sources
    found do not answer it, and still quotes what they say under each search)."""
    terms = query_terms(question)
    floor = opening_floor(terms)
    ranked = _ranked(question, pool)
    by_source: dict[int, int] = {}
    for i in ranked:
        by_source.setdefault(pool[i][0], i)
    picks = list(by_source.values())[:OPENING_SENTENCES] or ranked[:OPENING_SENTENCES]
    opening = []
    for i in picks:
        sid, text = pool[i]
        sentence = max(sentences_of(text), key=lambda s: (_hits(s, terms), -len(s)), default="")
        if sentence and _hits(sentence, terms) >= floor and normalise(sentence) not in used and len(sentence) <= MAX_QUOTE_CHARS:
            used.add(normalise(sentence))
            opening.append(_cite(sentence, sid))
    return opening


def extractive_report(
    question: str,
    sub_questions: Sequence[str],
    sources: Sequence[Mapping[str, Any]],
    passages: Mapping[str, Sequence[Passage]],
    per_query: int = 2,
) -> str:
    """The report in the sources' own words.

    Args:
        question: the research question: the opening answers it, and it has the first section,
            so its best passages are quoted before any sub-question's.
        sub_questions: one section each after the question's, unless ``junk_reason`` refuses
            one (code, a repeated word, nothing the question or an earlier one lacks);
            passages are not repeated across sections.
        sources: the ranked sources (``id``, ``snippet``).
        passages: source id (as a string) -> passages read from it; a source without any is
            represented by its search snippet.
        per_query: passages quoted under each section.
    """
    pool = _pool(sources, passages)
    used: set[str] = set()
    opening = _opening(question, pool, used)
    # one source's sentence a line: a quote never runs into the next source's
    lines = ["## In short", "", *(f"- {s}" for s in opening)] if opening else ["## In short", "", NO_ANSWER]
    lines += ["", "## What the sources say"]
    taken: set[int] = set()
    sections = [" ".join(question.split()), *useful_sub_queries(question, sub_questions)]
    if len(sections) == 1:  # no usable plan: one section, a little deeper
        per_query += 1
    for i_section, section in enumerate(sections):
        lines += ["", _section_heading(section, first=i_section == 0), ""]
        wanted = per_query + 1 if i_section == 0 else per_query  # the question's own section goes deepest
        terms = query_terms(section if i_section == 0 else f"{section} {question}")
        items: list[str] = []
        for i in _ranked(section, pool):
            sid, text = pool[i]
            fresh = [s for s in sentences_of(text) if normalise(s) not in used]
            if i in taken or not fresh:
                continue
            taken.add(i)
            quote = _trim(fresh, terms)
            used.update(normalise(s) for s in quote)
            items.append("- " + " ".join(_cite(s, sid) for s in quote))
            if len(items) == wanted:
                break
        if items or i_section:
            lines += items or ["No passage found answers this sub-question."]
        else:  # the opening quoted all the question's passages had to say
            lines = lines[:-3]
    return "\n".join(lines).strip() + "\n"
