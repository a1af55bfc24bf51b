"""The grounded extractive report: the sources' own words, ranked with BM25 for the question
and each sub-question, each sentence carrying the ``[n]`` of its source, under a short opening
made of the passages' best sentences. The question always has the first section; a planned
sub-question has one after it unless it is junk (``queries.py``), headed as the search string it
is (``### Search: `...```): the planner's words, never a statement. No model writes any of it, so
it cannot state what the sources do not; it is the floor when the writer is weak or its draft
fails the grounding check.
"""

from __future__ import annotations

import math
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
from graphs.research.subjects import missing_line, named_terms, source_texts, unmentioned

#: passages quoted under each sub-question, by depth, at most: fewer when the rest are off the
#: point (``_section``); the question's own section one more
PER_QUERY = {"quick": 3, "standard": 4, "deep": 4}
#: a quoted passage is trimmed to the best run of sentences that fits this
MAX_QUOTE_CHARS = 600
OPENING_SENTENCES = 2
#: a source opens the report only when it says this share of what the best one says of the question
ON_SUBJECT_SHARE = 0.7
#: after a section's first item, a passage is quoted only when BM25 scores it at least this share
#: of the section's best, and it says as many of the section's words as the opening asks
CLOSE_TO_BEST = 0.35
NO_ANSWER = "The sources found do not answer this question."
#: the opening when no sentence answers the question on its own, and the sections quote what the sources say
NO_SHORT_ANSWER = "No sentence of the sources found answers this question on its own; what they say of it is below."
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_HEADING = re.compile(r"^\s{0,3}#{1,6}(?:\s|$)")
#: a line that only underlines or overlines a heading (Markdown's setext ``===`` and ``---``, RST's
#: marks), or a Markdown thematic break; fences (``~~~``, backticks) are read before this
_UNDERLINE = re.compile(r"^([=\-^*+#_])\1{2,}$")
#: a code fence line: its mark and the rest of the line (an info string, or nothing on a close)
_FENCE = re.compile(r"^[ ]{0,3}(`{3,}|~{3,})(.*)$")
#: what marks a snippet's sentence as code or table cells flattened onto one line by the search engine
_FLAT_CODE = re.compile(r"`{3}|~{3}|\s\|\s")
#: a fenced code block flattened into a line, or a URL: no words a sentence says
_LINK_OR_CODE = re.compile(r"(`{3,}|~{3,}).*?(?:\1|$)|\b[a-z][a-z0-9+.-]*://\S+")
#: where an over-long sentence may be cut: after . ; ! or ? and a space, whatever follows
_CLAUSE_END = re.compile(r"(?<=[.;!?])\s+")
#: linked images (``[![PyPI](...)](...)``) and bare images at the start of a sentence
_BADGES = re.compile(r"^(?:(?:\[!\[[^\]]*\]\([^)\s]*\)\]\([^)\s]*\)|!\[[^\]]*\]\([^)\s]*\))\s*)+")
#: a sentence that starts by pointing back ("This means that...", "However, ...", "It's a ...")
#: reads as an answer only after the sentence before it: quoted alone, it dangles
_POINTS_BACK = re.compile(r"^(?:this|that|these|those|thus|therefore|hence|however|instead|otherwise|also|"
                          r"furthermore|moreover|but|and|so|it|its|they|their|such|then)\b(?!\s*[:=(.])", re.IGNORECASE)


def _section_heading(section: str, *, first: bool) -> str:
    """The heading of one section: the question as asked, a sub-query as the search string it
    is (``### Search: `...```), so that a planner's phrase never reads as a statement of fact."""
    if first:
        return f"### {section.lstrip('#').strip()}"
    return f"### Search: `{' '.join(section.replace('`', ' ').split())}`"


def flatten(text: str, code_fence: str | None = None) -> str:
    """A passage as one line of prose: headings, list markers and table rows off, list items ended.

    A heading inside a passage (an ATX ``## ...`` line, or a line underlined with ``===`` or
    ``---`` as setext Markdown and RST write one) is left out and the text before it ended: joined
    to the next paragraph, "Results and traces Every job result carries..." reads as one sentence.
    Lines inside a fenced code block are code: a ``# comment`` there is no heading.

    A table row (a line starting with ``|``) is no sentence: its cells joined would be quoted as
    one, cited, and read as prose.

    A passage that ends inside a fenced code block gets that block's closing fence (an unclosed
    fence in a quote turns the rest of the report, Sources included, into code).

    ``code_fence``: the passage starts inside a fenced code block opened by this mark
    (``split_passages`` says so); it gets the opening fence it lacks (the block's own mark, so
    that its closing fence closes it), and its first lines read as code, not as an uncited sentence.
    """
    out = code_fence or ""
    fence = code_fence  # the mark of the code block the line is in; None in prose
    heading_from: int | None = None  # where the last prose line starts in ``out``, if it may be a heading
    for raw in text.splitlines():
        line = raw.strip()
        after = _fence_after(fence, raw)
        if fence is not None or after is not None:  # code, or a fence line
            fence, heading_from = after, None
            out = f"{out} {line}" if out and line else out or line
            continue
        if not line or line.startswith("|"):
            heading_from = None
            continue
        if _HEADING.match(line) or _UNDERLINE.match(line):
            if _UNDERLINE.match(line) and heading_from is not None:
                out = out[:heading_from].rstrip()  # the line above it was a heading
            out, heading_from = _ended(out), None
            continue
        item = _LIST_ITEM.match(line)
        if item:
            line = line[item.end():]
            out = _ended(out)
        heading_from = len(out)
        out = f"{out} {line}" if out else line
    if fence is not None:  # the passage ends inside a code block: closed here, or the quote's
        out += f" {fence}"  # open fence would swallow the rest of the report, Sources included
    elif out.count("```") % 2:  # a fence inside a line (a snippet flattened by the search engine)
        out += " ```"
    return " ".join(out.split())


def _fence_after(fence: str | None, line: str) -> str | None:
    """The open code fence after ``line``, given the one before it (``None``: prose): a backtick
    fence's info string holds no backtick, and a close is a bare mark of the same kind, as long."""
    found = _FENCE.match(line)
    if not found:
        return fence
    mark, rest = found.group(1), found.group(2)
    if fence is None:
        return mark if mark[0] == "~" or "`" not in rest else None
    return None if mark[0] == fence[0] and len(mark) >= len(fence) and not rest.strip() else fence


def _ended(text: str) -> str:
    """``text`` ended as a sentence, so the next line does not run into it."""
    return f"{text}." if text and text[-1] not in ".!?:;" else text


def quotable_snippet(snippet: str, title: str = "") -> str:
    """The whole sentences of a search snippet, the rest left out.

    A snippet is the search engine's cut of a page: it may begin and end mid-sentence (marked
    ``…``), begin with the page's title run into its first paragraph ("runpod-swarm: project
    overview runpod-swarm is a modular..."), and hold code or table cells flattened onto one line.
    Quoted, each of those reads as a garbled sentence, yet counts as supported (the snippet holds it).
    """
    text = " ".join(snippet.split())
    if title and text.startswith(f"{title} "):
        text = text[len(title) + 1:]
    sentences = sentences_of(text)
    if sentences and sentences[0].startswith("…"):
        sentences = sentences[1:]
    if sentences and sentences[-1].endswith("…"):
        sentences = sentences[:-1]
    return " ".join(s for s in sentences if not _FLAT_CODE.search(s))


def _cite(sentence: str, source_id: int) -> str:
    """``sentence`` with ``[n]`` before its final punctuation; one that does not end with
    ``.``, ``!`` or ``?`` (cut short, a link target, code) gets a full stop after the marker,
    so the sentence splitter never joins it to the next quote. Badges it starts with (a README's
    first line of linked images, which the splitter joins to the sentence after them) are left out:
    they say nothing."""
    sentence = _BADGES.sub("", sentence.strip()) or sentence.strip()
    if sentence[-1:] in ".!?":
        return f"{sentence[:-1]} [{source_id}]{sentence[-1]}"
    return f"{sentence.rstrip(',;:')} [{source_id}]."


def _hits(sentence: str, terms: set[str]) -> int:
    return len(terms & set(content_stems(sentence)))


def _said(text: str, terms: set[str]) -> set[str]:
    """The ``terms`` that ``text`` says in words: not in a link target or a fenced code block
    ("library" in ``docs.python.org/library/pyexpat.html`` is no word of the sentence)."""
    return terms & set(content_stems(_LINK_OR_CODE.sub(" ", text)))


def _trim(sentences: Sequence[str], terms: set[str], used: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """The run of consecutive sentences with most query terms that fits ``MAX_QUOTE_CHARS``.

    A sentence longer than that (a run of badges, links and code the splitter found no sentence
    end in) is read as its pieces ending at ``.``, ``;``, ``!`` or ``?``, and quoted as the part of
    it the run holds; a piece still too long is left out: cut at a word, it would be quoted as
    half a sentence ending in "…". Sentences in ``used`` (quoted already) are left out."""
    pieces = [(n, p) for n, s in enumerate(sentences) if normalise(s) not in used
              for p in ([s] if len(s) <= MAX_QUOTE_CHARS else _CLAUSE_END.split(s)) if len(p) <= MAX_QUOTE_CHARS]
    if not pieces:
        return []
    best: tuple[int, int, int] = (-1, 0, 0)  # hits, -start, end
    for start in range(len(pieces)):
        size, end = 0, start
        while end < len(pieces) and size + len(pieces[end][1]) <= MAX_QUOTE_CHARS:
            size += len(pieces[end][1]) + 1
            end += 1
        hits = sum(_hits(p, terms) for _, p in pieces[start:end])
        if (hits, -start) > best[:2]:
            best = (hits, -start, end)
    start, end = -best[1], best[2]
    # a run that starts a sentence by pointing back, after a whole sentence that still fits: quote that one too
    if start > 0:
        (n_before, before), (n, first) = pieces[start - 1], pieces[start]
        if (n_before == n - 1 and before == sentences[n_before] and sentences[n].startswith(first)
                and _POINTS_BACK.match(first) and sum(len(p) + 1 for _, p in pieces[start - 1:end]) <= MAX_QUOTE_CHARS + 1):
            best = (best[0], -(start - 1), end)
    quote: dict[int, str] = {}
    for n, piece in pieces[-best[1]:best[2]]:  # a sentence's pieces joined again: one quote, one [n]
        quote[n] = f"{quote[n]} {piece}" if n in quote else piece
    return list(quote.values())


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
            text = flatten(passage["text"], passage.get("code_fence") or ("```" if passage.get("code_open") else None))
            if text:
                pool.append((sid, text))
                headings.append(str(passage.get("heading") or ""))
    return pool, headings


def _ranked(query: str, pool: Sequence[tuple[int, str]]) -> list[tuple[int, float]]:
    """``(pool index, BM25 score)`` of each passage that shares a term with ``query``, best first."""
    scores = bm25_scores(query, [text for _, text in pool])
    return [(i, scores[i]) for i in sorted(range(len(pool)), key=lambda i: (-scores[i], i)) if scores[i] > 0]


def opening_floor(words: set[str]) -> int:
    """How many of the question's words (``content_stems``: single words, not the joined pairs
    ``query_terms`` adds for matching) a sentence must share to open the report as its answer:
    one for a short question (up to three words: "How does the fallback work?"), else two, and
    30% of them, rounded up, for a long one. A passage that BM25 ranks first may share one word
    of a long question with it and answer nothing; the joined pairs ("keepre", "asyncj") are no
    words a sentence can be asked to hold."""
    return 1 if len(words) <= 3 else max(2, -(-3 * len(words) // 10))


def _opening(question: str, pool: Sequence[tuple[int, str]], used: set[str], headings: Sequence[str] = ()) -> list[str]:
    """The best sentence of each of the top passages for the whole question, other sources
    first, then, while there is room, another sentence of those passages that holds words of the
    question the opening lacks (a question of two parts answered by one passage); none that
    shares fewer than ``opening_floor`` of its words (then the report says the sources found do
    not answer it, and still quotes what they say under each search).

    A passage's heading counts with its sentences (the sentence under "Circuit breakers" that
    says "closes the circuit" answers "what does a circuit breaker do"), in ranking the passages and
    in the words a sentence shares with the question, for a sentence that says one of them itself."""
    terms = query_terms(question)
    floor = opening_floor(set(content_stems(question)))
    titled = [f"{headings[i]}. {text}" if i < len(headings) and headings[i] else text for i, (_, text) in enumerate(pool)]
    ranked = [i for i, _ in _ranked(question, [(sid, text) for (sid, _), text in zip(pool, titled, strict=True)])]
    on_subject = _on_subject(question, pool, titled)
    by_source: dict[int, int] = {}
    for i in ranked:
        if pool[i][0] in on_subject:
            by_source.setdefault(pool[i][0], i)
    picks = list(by_source.values())[:OPENING_SENTENCES] or ranked[:OPENING_SENTENCES]

    def says(i: int, sentence: str) -> set[str]:
        own = _said(sentence, terms)
        heading = headings[i] if i < len(headings) else ""
        return own | _said(heading, terms) if own and heading else own

    chosen: list[tuple[int, list[str], set[str]]] = []
    more: list[tuple[int, list[str], set[str]]] = []  # the other sentences of the picked passages that reach the floor
    for i in picks:
        sid, text = pool[i]
        sentences = sentences_of(text)
        fit = [(k, says(i, s)) for k, s in enumerate(sentences) if normalise(s) not in used and len(s) <= MAX_QUOTE_CHARS]
        fit = sorted(((k, w) for k, w in fit if len(w) >= floor), key=lambda f: (-len(f[1]), len(sentences[f[0]])))
        chosen += [(sid, _with_lead(sentences, k, used), w) for k, w in fit[:1]]
        more += [(sid, _with_lead(sentences, k, used), w) for k, w in fit[1:]]
    covered = {t for _, _, w in chosen for t in w}
    for sid, quote, words in more:
        if len(chosen) < OPENING_SENTENCES and words - covered:
            _add_to_opening(chosen, sid, quote, words)
            covered |= words
    used.update(normalise(s) for _, quote, _ in chosen for s in quote)
    return [" ".join(_cite(s, sid) for s in quote) for sid, quote, _ in chosen]


def _on_subject(question: str, pool: Sequence[tuple[int, str]], texts: Sequence[str]) -> set[int]:
    """The sources whose passages say, between them, the question's rarer words nearly as well as
    the source that says most of them (``ON_SUBJECT_SHARE`` of its weight, each word weighing its
    inverse source frequency): the opening quotes only those. The top passage of each of the first
    two sources in BM25's order opened the report, and the second was often another library's
    README that shares "python", "library" and "install" with the question and is about something
    else (the research quality bench: 6 of 19 opening sentences cited no gold source)."""
    words = set(content_stems(question))
    said: dict[int, set[str]] = {}
    for (sid, _), text in zip(pool, texts, strict=True):
        said.setdefault(sid, set()).update(words & set(content_stems(text)))
    n = len(said)
    weight = {w: math.log(1 + (n - df + 0.5) / (df + 0.5)) for w in words if (df := sum(w in s for s in said.values()))}
    cover = {sid: sum(weight[w] for w in ws) for sid, ws in said.items()}
    best = max(cover.values(), default=0.0)
    return {sid for sid, c in cover.items() if c >= ON_SUBJECT_SHARE * best}


def _add_to_opening(chosen: list[tuple[int, list[str], set[str]]], sid: int, quote: list[str], words: set[str]) -> None:
    """Add ``quote`` to the opening: a sentence whose lead (``_with_lead``) ends a quote there
    already goes on in that quote; a lead quoted elsewhere is not quoted again."""
    lead = normalise(quote[0]) if len(quote) > 1 else None
    for i, (other_sid, other, other_words) in enumerate(chosen):
        if lead is not None and other_sid == sid and normalise(other[-1]) == lead:
            chosen[i] = (sid, [*other, *quote[1:]], other_words | words)
            return
    if lead is not None and any(normalise(s) == lead for _, other, _ in chosen for s in other):
        quote = quote[1:]
    chosen.append((sid, quote, words))


def _with_lead(sentences: Sequence[str], k: int, used: set[str]) -> list[str]:
    """Sentence ``k`` as a quote: after the sentence before it when it starts by pointing back
    (``_POINTS_BACK``), that one is not quoted yet and both fit ``MAX_QUOTE_CHARS``."""
    sentence = sentences[k]
    if k and _POINTS_BACK.match(sentence):
        before = sentences[k - 1]
        if normalise(before) not in used and len(before) + len(sentence) < MAX_QUOTE_CHARS:
            return [before, sentence]
    return [sentence]


def _section(query: str, terms: set[str], pool: Sequence[tuple[int, str]], wanted: int,
             used: set[str], taken: set[int]) -> list[str]:
    """Up to ``wanted`` quotes for one section, best passage first: the first always, each other
    only if BM25 scores it close to the first (``CLOSE_TO_BEST``) and it says ``opening_floor``
    of the query's words: a fixed count of items padded a short answer with passages that share
    a common word or two with the question and answer nothing. A passage left out stays free for
    a later section, whose search it may answer."""
    floor = opening_floor(set(content_stems(query)))
    items: list[str] = []
    best = 0.0
    for i, score in _ranked(query, pool):
        sid, text = pool[i]
        quote = _trim(sentences_of(text), terms, used) if i not in taken else []
        if not quote:
            continue
        best = best or score
        if items and (score < CLOSE_TO_BEST * best or len(_said(" ".join(quote), terms)) < floor):
            continue
        taken.add(i)
        used.update(normalise(s) for s in quote)
        items.append("- " + " ".join(_cite(s, sid) for s in quote))
        if len(items) == wanted:
            break
    return items


def extractive_report(
    question: str,
    sub_questions: Sequence[str],
    sources: Sequence[Mapping[str, Any]],
    passages: Mapping[str, Sequence[Passage]],
    per_query: int = 3,
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
    """
    pool, headings = _pool(sources, passages)
    said = source_texts(sources, passages)
    missing = unmentioned(question, said)
    # every name the question gives is in no source: the nearest passages share its common words
    # only, and so do those of its sub-questions: nothing is quoted
    off_topic = bool(missing) and len(missing) == len(named_terms(question))
    used: set[str] = set()
    opening = [] if off_topic else _opening(question, pool, used, headings)
    # one source's sentence a line: a quote never runs into the next source's
    lines = ["## In short", "", *(f"- {s}" for s in opening)] if opening else [
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
        terms = query_terms(section if i_section == 0 else f"{section} {question}")
        if i_section and absent:  # a search for what no source says
            lines.append(f"No passage found mentions {' or '.join(absent)}.")
            continue
        if i_section and unmentioned(section, said):  # a name the planner made up (``checksum_removed``)
            lines = lines[:-3]
            continue
        items = _section(section, terms, pool, wanted, used, taken)
        if items or i_section:
            lines += items or ["No passage found answers this sub-question."]
        else:  # the opening quoted all the question's passages had to say
            lines = lines[:-3]
    if lines[-1] == "## What the sources say":  # nothing under it
        lines = lines[:-2]
    if not opening and not any(line.startswith("- ") for line in lines):  # nothing quoted below either
        lines[2] = NO_ANSWER
    return "\n".join(lines).strip() + "\n"
