"""The grounded extractive report: the sources' own words, ranked with BM25 for the question
and each sub-question, each sentence carrying the ``[n]`` of its source, under a short opening
made of the passages' best sentences; a passage is quoted only where it says what is asked (not
only what any question says, "work" or "install", nor only what most passages say), and only from
the sources on the question's subject (under a sub-question, from the others where those say
nothing of it). The question always has the first section; a
planned sub-question has one after it unless it is junk (``queries.py``), headed as the search
string it is (``### Search: `...```): the planner's words, never a statement. No model writes
any of it, so it cannot state what the sources do not; it is the floor when the writer is weak or
its draft fails the grounding check.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from graphs.research.citations import join_sentences
from graphs.research.grounding import normalise
from graphs.research.opening import opening, subject_sources
from graphs.research.passages import Passage, sentences_of, snippet_passage
from graphs.research.queries import useful_sub_queries
from graphs.research.quoting import cite, flatten, opening_floor, quotable_snippet, ranked, said_terms, trim
from graphs.research.stems import content_stems, query_terms
from graphs.research.subjects import (
    Vocabulary,
    asked_terms,
    missing_line,
    says_asked,
    source_texts,
    subjects,
    unmentioned,
    without_frame,
)

#: passages quoted under each sub-question, by depth, at most: fewer when the rest are off the
#: point (``_section``); the question's own section one more
PER_QUERY = {"quick": 3, "standard": 4, "deep": 4}
#: after a section's first item, a passage is quoted only when BM25 scores it at least this share
#: of the section's best, and it says as many of the section's words as the opening asks
CLOSE_TO_BEST = 0.35
NO_ANSWER = "The sources found do not answer this question."
#: the opening when no sentence answers the question on its own, and the sections quote what the sources say
NO_SHORT_ANSWER = "No sentence of the sources found answers this question on its own; what they say of it is below."


def _section_heading(section: str, *, first: bool) -> str:
    """The heading of one section: the question as asked, a sub-query as the search string it
    is (``### Search: `...```), so that a planner's phrase never reads as a statement of fact."""
    if first:
        return f"### {section.lstrip('#').strip()}"
    return f"### Search: `{' '.join(section.replace('`', ' ').split())}`"


def _pool(sources: Sequence[Mapping[str, Any]], passages: Mapping[str, Sequence[Passage]]
          ) -> tuple[list[tuple[int, str]], list[str]]:
    """``(source id, passage text)`` of every passage read, and each one's heading ("" if none)."""
    pool: list[tuple[int, str]] = []
    headings: list[str] = []
    for source in sources:
        sid = int(source["id"])
        read = passages.get(str(sid))
        if not read:  # not read: what its search snippet holds of whole sentences
            read = [snippet_passage(quotable_snippet(str(source.get("snippet", "")), str(source.get("title") or "")))]
        for passage in read:
            # a passage split by an earlier version has code_open and no code_fence: backticks then
            text = flatten(passage["text"], passage.get("code_fence") or ("```" if passage.get("code_open") else None),
                           document_start=passage.get("start") == 0)
            if text:
                pool.append((sid, text))
                headings.append(str(passage.get("heading") or ""))
    return pool, headings


#: the passages a short query's other words must be said in before its most said word is no
#: longer enough for a passage to be quoted (``_asked``)
MIN_ASKED_PASSAGES = 2


def _asked(query: str, floor: int, pool_stems: Sequence[frozenset[str]]) -> set[str]:
    """The terms of ``query`` a passage must say one of to be quoted under it: what it asks about
    (``asked_terms``: not "install" or "support"), and of a short query (``floor`` 1) not only the
    word of it that most passages say (``pool_stems``: each one's stems) when it has others: that
    word names what the sources are about, not what is asked of it ("runs a LangGraph graph" says
    "langgraph" of "How does langgraph checkpointing work?", and nothing of checkpoints). A longer
    query's floor asks two of its words already. Empty: no such rule."""
    asked = asked_terms(query)
    words = set(content_stems(query)) & asked
    if floor == 1 and len(words) > 1:
        count = {word: sum(word in stems for stems in pool_stems) for word in words}
        most = max(count.values())
        common = [word for word, n in count.items() if n == most]
        rest = words - set(common)
        # a tie tells no subject from what is asked of it; and where the other words are said by
        # one passage at most, the common word is what is asked ("What is the default httpx
        # timeout?" of a timeouts page that names HTTPX once): those passages answer it
        if len(common) == 1 and sum(not rest.isdisjoint(stems) for stems in pool_stems) >= MIN_ASKED_PASSAGES:
            asked.discard(common[0])
    return asked


def _section(query: str, terms: set[str], pool: Sequence[tuple[int, str]], wanted: int,
             used: set[str], taken: set[int], pool_stems: Sequence[frozenset[str]],
             sources: set[int] | None = None, headings: Sequence[str] = ()) -> list[str]:
    """Up to ``wanted`` quotes for one section, best passage first, each of a passage of
    ``sources`` (any, if ``None``) that says a word the query asks about (``_asked``; of a CJK
    query two of its character pairs: ``says_asked``): the first
    always, each other only if BM25 scores it close to the first (``CLOSE_TO_BEST``) and it says
    ``opening_floor`` of the query's words. A fixed count of items padded a short answer with
    passages that share a common word or two with the question and answer nothing; "How does
    langgraph checkpointing work?" quoted SearXNG's set-up ("the worker's address") and "runs a
    LangGraph graph". A passage left out stays free for a later section, whose search it may answer."""
    floor = opening_floor(set(content_stems(query)))  # "work" of "How does X work?" counts here only
    plain = without_frame(query)
    asked = _asked(plain, floor, pool_stems)
    items: list[str] = []
    best = 0.0
    # a passage's heading counts with it, as in the opening: "## Job states" over "IN_QUEUE ->
    # IN_PROGRESS -> ..." answers "What states does a RunPod job go through?"
    titled = [(sid, f"{headings[i]}. {text}") if i < len(headings) and headings[i] else (sid, text)
              for i, (sid, text) in enumerate(pool)]
    for i, score in ranked(plain, titled):
        sid, text = pool[i]
        heading = set(content_stems(headings[i])) if i < len(headings) and headings[i] else set()
        # its code counts: ``locky.release()`` answers "How does Locky release locks?"
        if (sources is not None and sid not in sources) or (asked and not says_asked(asked, pool_stems[i] | heading)):
            continue
        sentences = sentences_of(text)
        quote = trim(sentences, terms, used) if i not in taken else []
        # what is left of a passage whose best sentence the opening took must itself say what is
        # asked: "Retries happen only for a 429" followed the circuit breaker's rule quoted above.
        # A passage none of whose sentences was quoted may say it in its section heading: a slide
        # "Q2 Goals" whose bullets name no goal ("the sources found do not answer" of "What are the
        # Q2 goals on the roadmap?")
        titled_by = heading if not any(normalise(s) in used for s in sentences) else set()
        if not quote or (asked and not says_asked(asked, set(content_stems(" ".join(quote))) | titled_by)):
            continue
        best = best or score
        says = said_terms(" ".join(quote), terms)
        if says and i < len(headings) and headings[i]:  # its heading's words count, as in the opening
            says |= said_terms(headings[i], terms)
        if items and (score < CLOSE_TO_BEST * best or len(says) < floor):
            continue
        taken.add(i)
        used.update(normalise(s) for s in quote)
        items.append("- " + join_sentences(cite(s, sid) for s in quote))
        if len(items) == wanted:
            break
    return items


def extractive_report(
    question: str,
    sub_questions: Sequence[str],
    sources: Sequence[Mapping[str, Any]],
    passages: Mapping[str, Sequence[Passage]],
    per_query: int = 3,
    about: str | None = None,
) -> str:
    """The report in the sources' own words.

    Args:
        question: the research question: the opening answers it, and it has the first section,
            so its best passages are quoted before any sub-question's.
        sub_questions: one section each after the question's, unless ``junk_reason`` refuses
            one (code, a repeated word, nothing the question or an earlier one lacks);
            passages are not repeated across sections.
        sources: the ranked sources (``id``, ``title``, ``snippet``).
        passages: source id (as a string) -> passages read from it; a source without any is
            represented by the whole sentences of its search snippet.
        per_query: passages quoted under each section, at most (fewer when the rest are off the point).
        about: what the question's passages are matched on, where not its own words: a follow-up's
            search with its earlier question's words ("When did he leave the project? wrote
            quillmark html renderer"; ``nodes.with_antecedent``). Its heading stays the question.
    """
    pool, headings = _pool(sources, passages)
    # a section's heading ranks its passages; a document's title (its opening paragraph's heading)
    # names every topic of the page and would lift that paragraph for each of them
    titles = {int(s["id"]): str(s.get("title") or "") for s in sources}
    section_headings = [h if h != titles.get(sid) else "" for (sid, _), h in zip(pool, headings, strict=True)]
    pool_stems = [frozenset(content_stems(text)) for _, text in pool]
    said = Vocabulary.of(source_texts(sources, passages))  # read once for the question and each section
    subject, missing = subjects(question, said)
    # every name the question gives is in no source: the nearest passages share its common words
    # only, and so do those of its sub-questions: nothing is quoted
    off_topic = bool(missing) and len(missing) == len(subject)
    used: set[str] = set()
    matched = about or question
    in_short = [] if off_topic else opening(matched, pool, used, headings)
    # the question's section quotes the sources on its subject only, as its opening does
    on_subject = subject_sources(matched, pool, headings)
    plain = without_frame(matched)  # what passages are matched on: not "work" of "How does X work?"
    # one source's sentence a line: a quote never runs into the next source's
    lines = ["## In short", "", *(f"- {s}" for s in in_short)] if in_short else [
        "## In short", "", NO_ANSWER if off_topic else NO_SHORT_ANSWER]
    if missing:
        lines += ["", missing_line(missing)]
    lines += ["", "## What the sources say"]
    taken: set[int] = set()
    sections = [" ".join(question.split()), *useful_sub_queries(question, sub_questions)]
    if len(sections) == 1:  # no usable plan: one section, a little deeper
        per_query += 1
    for i_section, section in enumerate([] if off_topic else sections):
        absent = [name for name in missing if set(content_stems(name)) <= set(content_stems(section))]
        lines += ["", _section_heading(section, first=i_section == 0), ""]
        wanted = per_query + 1 if i_section == 0 else per_query  # the question's own section goes deepest
        terms = query_terms(f"{without_frame(section)} {plain if i_section else ''}")
        if i_section and absent:  # a search for what no source says
            lines.append(f"No passage found mentions {' or '.join(absent)}.")
            continue
        if i_section and unmentioned(section, said):  # a name the planner made up (``checksum_removed``)
            lines = lines[:-3]
            continue
        # every section quotes the sources on the question's subject; a search they say nothing
        # of quotes the others (Bigq's restarts answered a search about Tinyq's beside Tinyq's own)
        items = _section(section, terms, pool, wanted, used, taken, pool_stems,
                         on_subject if on_subject or not i_section else None, section_headings)
        if not items and i_section and on_subject:
            items = _section(section, terms, pool, wanted, used, taken, pool_stems, headings=section_headings)
        if items or i_section:
            lines += items or ["No passage found answers this sub-question."]
        else:  # the opening quoted all the question's passages had to say
            lines = lines[:-3]
    if lines[-1] == "## What the sources say":  # nothing under it
        lines = lines[:-2]
    if not in_short and not any(line.startswith("- ") for line in lines):  # nothing quoted below either
        lines[2] = NO_ANSWER
    return "\n".join(lines).strip() + "\n"
