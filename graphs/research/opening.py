"""The extractive report's opening ("In short"): the best sentence of each of the top passages
for the question, from the sources on its subject, each carrying the ``[n]`` of its source; none
that says fewer of the question's words than ``opening_floor`` asks (then the report says that no
sentence of the sources answers the question on its own).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

from graphs.research.citations import join_sentences
from graphs.research.grounding import normalise
from graphs.research.passages import bm25_term_weights, sentences_of
from graphs.research.quoting import (
    MAX_QUOTE_CHARS,
    cite,
    is_list_like,
    opening_floor,
    ranked,
    said_terms,
    with_lead,
)
from graphs.research.stems import compounds, content_stems, query_terms, says_compound, stem, words_of
from graphs.research.subjects import named_terms, says_asked, without_frame, written_words

OPENING_SENTENCES = 2
#: a source opens the report only when it says this share of what the best one says of the question
ON_SUBJECT_SHARE = 0.7
#: a source's passages whose sentences may open the report: its best for the question and those
#: BM25 scores at least this share of it. Its best alone opened "How does LangGraph checkpointing make
#: a run resumable?" with the list of savers under "Checkpoints", and left the answer ("To resume an
#: interrupted run, invoke again with None ...") in the next passage, quoted only in the body
NEAR_BEST_PASSAGE = 0.75


def opening(question: str, pool: Sequence[tuple[int, str]], used: set[str], headings: Sequence[str] = ()) -> list[str]:
    """The best sentence of each of the top passages for the whole question, other sources
    first, then, while there is room, another sentence of those passages that holds words of the
    question the opening lacks (a question of two parts answered by one passage); none that
    shares fewer than ``opening_floor`` of its words (then the report says the sources found do
    not answer it, and still quotes what they say under each search).

    A passage's heading counts with its sentences (the sentence under "Circuit breakers" that
    says "closes the circuit" answers "what does a circuit breaker do"), in ranking the passages and
    in the words a sentence shares with the question, for a sentence that says one of them itself."""
    plain = without_frame(question)  # not "work" of "How does X work?"; its floor counts it still
    terms = query_terms(plain) | _asked_verbs(plain)
    floor = opening_floor(set(content_stems(question)))
    titled = _titled(pool, headings)
    scored = ranked(plain, [(sid, text) for (sid, _), text in zip(pool, titled, strict=True)])
    best_first = [i for i, _ in scored]
    on_subject = _subject_sources(plain, pool, titled)
    by_source: dict[int, int] = {}
    for i in best_first:
        if pool[i][0] in on_subject:
            by_source.setdefault(pool[i][0], i)
    groups = _near_best(pool, by_source, dict(scored))[:OPENING_SENTENCES] or [[i] for i in best_first[:OPENING_SENTENCES]]
    weight = _rarity(terms, titled)

    def says(i: int, sentence: str) -> set[str]:
        own = said_terms(sentence, terms)
        heading = headings[i] if i < len(headings) else ""
        return own | said_terms(heading, terms) if own and heading else own

    chosen: list[tuple[int, list[str], set[str]]] = []
    more: list[tuple[int, list[str], set[str]]] = []  # the other sentences of the picked passages that reach the floor
    for group in groups:
        sid = pool[group[0]][0]
        split = {i: sentences_of(pool[i][1]) for i in group}
        fit = [(i, k, says(i, s)) for i in group for k, s in enumerate(split[i])
               if normalise(s) not in used and len(s) <= MAX_QUOTE_CHARS and not _is_markup(s)]
        # another passage's sentence only where it says a word of the question its best one does not
        best_says = {t for i, _, w in fit if i == group[0] for t in w}
        fit = [(i, k, w) for i, k, w in fit if i == group[0] or w - best_says]
        # a list ("Savers: A, B and C.") says many of the words and defines nothing: after the rest;
        # a word few passages say (what is asked: "resumable") weighs more than one they all say
        # (the subject: "LangGraph"); of a CJK question, one character pair is half a word (``says_asked``)
        fit = sorted(((i, k, w) for i, k, w in fit if len(w) >= floor and says_asked(terms, w)),
                     key=lambda f: (is_list_like(split[f[0]][f[1]]), -len(f[2]), -sum(weight[t] for t in f[2]), len(split[f[0]][f[1]])))
        chosen += [(sid, with_lead(split[i], k, used), w) for i, k, w in fit[:1]]
        more += [(sid, with_lead(split[i], k, used), w) for i, k, w in fit[1:] if i == group[0]]
    covered = {t for _, _, w in chosen for t in w}
    for sid, quote, words in more:
        if len(chosen) < OPENING_SENTENCES and words - covered:
            _add_to_opening(chosen, sid, quote, words)
            covered |= words
    # the opening's first line says what the subject is, not what it lists, where another line can
    chosen.sort(key=lambda c: is_list_like(c[1][-1]))
    used.update(normalise(s) for _, quote, _ in chosen for s in quote)
    return [join_sentences(cite(s, sid) for s in quote) for sid, quote, _ in chosen]


#: an adjective that says a thing can be done ("resumable", "retryable", "configurable"): the light
#: stemmer keeps "resuma", which no form of "resume" shares, so "To resume an interrupted run,
#: invoke again ..." said one word of "How does LangGraph checkpointing make a run resumable?"
_ABLE = re.compile(r"^([^\W\d_]{4,}?)(?:able|ible)$")


def _asked_verbs(question: str) -> set[str]:
    """The stems of the verbs the question's ``_ABLE`` adjectives are made from, with and
    without a silent "e" ("resum", "resume")."""
    return {stem(m.group(1) + end) for w in words_of(question) if (m := _ABLE.match(w)) for end in ("", "e")}


#: an HTML tag outside a code span; a sentence with this many is a page's layout (a logo, badges)
_HTML_TAG = re.compile(r"<[A-Za-z][A-Za-z0-9]*(?:\s[^<>`]*)?/?>")
_CODE_SPAN = re.compile(r"`[^`]*`")
MARKUP_TAGS = 2


def _is_markup(sentence: str) -> bool:
    """``sentence`` is HTML layout ("<p align="center"><a href=...><img ...>"), no answer: it
    opened "Which HTTP versions ... does HTTPX support?" with HTTPX's logo."""
    return len(_HTML_TAG.findall(_CODE_SPAN.sub(" ", sentence))) >= MARKUP_TAGS


def _near_best(pool: Sequence[tuple[int, str]], by_source: Mapping[int, int], scores: Mapping[int, float]) -> list[list[int]]:
    """For each source's best passage (``by_source``, in rank order), that passage and the
    source's others that BM25 scores at least ``NEAR_BEST_PASSAGE`` of it, best first."""
    return [[best, *sorted((i for i, score in scores.items() if i != best and pool[i][0] == sid
                            and score >= NEAR_BEST_PASSAGE * scores[best]), key=lambda i: (-scores[i], i))]
            for sid, best in by_source.items()]


def _rarity(terms: set[str], texts: Sequence[str]) -> dict[str, float]:
    """Each of ``terms``' inverse frequency among the passages ``texts`` (as ``_on_subject``
    weighs words), at least a little for one none of them says."""
    said = [said_terms(text, terms) for text in texts]
    frequency = {t: sum(t in s for s in said) for t in terms}
    return {t: math.log(1 + (len(said) - df + 0.5) / (df + 0.5)) for t, df in frequency.items()}


def subject_sources(question: str, pool: Sequence[tuple[int, str]], headings: Sequence[str] = ()) -> set[int]:
    """The sources on the question's subject, the only ones its opening quotes: those that say its
    rarer words nearly as well as the best (``_on_subject``) and say the word the search's first of
    them is most about (``_saying_its_subject``); not "work" of "How does X work?" (``without_frame``)."""
    return _subject_sources(without_frame(question), pool, _titled(pool, headings))


def _titled(pool: Sequence[tuple[int, str]], headings: Sequence[str]) -> list[str]:
    """Each passage's text after its heading, if it has one."""
    return [f"{headings[i]}. {text}" if i < len(headings) and headings[i] else text for i, (_, text) in enumerate(pool)]


def _subject_sources(question: str, pool: Sequence[tuple[int, str]], titled: Sequence[str]) -> set[int]:
    said = _said(question, pool, titled)
    on_subject = _on_subject(question, said)
    # the search ranked whole sources (``pool`` is in its order): its first on the subject says what that is
    first = next((sid for sid, _ in pool if sid in on_subject), None)
    chosen = on_subject & _saying_its_subject(question, pool, titled, first, said)
    naming = _naming(question, pool, titled)
    return (chosen & naming) or (on_subject & naming) or naming if naming else chosen


def _naming(question: str, pool: Sequence[tuple[int, str]], texts: Sequence[str]) -> set[int]:
    """The sources that say a name the question gives (``named_terms``) as a word of its own in one
    of their passages (``written_words``: every word of it, identifiers whole), where any does. Its common words are no subject beside a name: "Which
    config formats does Quillmark read?" was answered with SearXNG's ``formats: [html, json]``
    (the page that says "config" and "formats" most), and "Which environment variable does Tavily
    need and which header does the request carry?" with RunPod's ``Authorization`` header, though
    a source on Quillmark, and one on Tavily, had been read."""
    names = [written_words(name) for name in named_terms(question)]
    names = [words for words in names if words]
    if not names:
        return set()
    # the name as a word of its own: a page that lists ``TAVILY_API_KEY`` among RunPod's settings
    # is not on Tavily
    words: dict[int, set[str]] = {}
    for (sid, _), text in zip(pool, texts, strict=True):
        words.setdefault(sid, set()).update(written_words(text))
    return {sid for sid, said in words.items() if any(name <= said for name in names)}


def _said(question: str, pool: Sequence[tuple[int, str]], texts: Sequence[str]) -> dict[int, set[str]]:
    """The stems of the question each source says in one of its passages. A source that writes
    two of the question's adjacent words as one says both: "fallbacks" says "fall back" (the
    page on fallback chains lost "How does the swarm fall back between providers when a model
    fails?" to the overview, the one page that says "fall back")."""
    words = set(content_stems(question))
    joins = compounds(question)
    said: dict[int, set[str]] = {}
    for (sid, _), text in zip(pool, texts, strict=True):
        said.setdefault(sid, set()).update(words & set(content_stems(text)))
        text_words = words_of(text) if joins else []
        said[sid].update(w for joined, parts in joins if says_compound(text_words, joined) for w in parts)
    return said


def _on_subject(question: str, said: Mapping[int, set[str]]) -> set[int]:
    """The sources whose passages say (``said``), between them, the question's rarer words nearly
    as well as the source that says most of them (``ON_SUBJECT_SHARE`` of its weight, each word
    weighing its inverse source frequency): the opening quotes only those. The top passage of each
    of the first two sources in BM25's order opened the report, and the second was often another
    library's README that shares "python", "library" and "install" with the question and is about
    something else (the research quality bench: 6 of 19 opening sentences cited no gold source)."""
    words = set(content_stems(question))
    n = len(said)
    weight = {w: math.log(1 + (n - df + 0.5) / (df + 0.5)) for w in words if (df := sum(w in s for s in said.values()))}
    cover = {sid: sum(weight[w] for w in ws) for sid, ws in said.items()}
    best = max(cover.values(), default=0.0)
    return {sid for sid, c in cover.items() if c >= ON_SUBJECT_SHARE * best}


def _saying_its_subject(question: str, pool: Sequence[tuple[int, str]], texts: Sequence[str], first: int | None,
                        said: Mapping[int, set[str]]) -> set[int]:
    """Source ``first`` (the search's best on the question's subject) and the sources that say the
    question's word it is most about (its largest BM25 weight among the sources' whole texts:
    "uvicorn" in uvicorn's README, "sort" in Sorted Containers'), as ``said`` has them ("fall" in a
    page that says "fallback"). Saying the question's words nearly as well
    (``_on_subject``) let another README open the report through its common ones: MCP's "The
    `cli` extra adds ..." shares "install", "add" and "standard" with "Which protocols does uvicorn
    support, and what does installing uvicorn[standard] add?" and never says "uvicorn" (the research
    quality bench: 2 of 16 opening lines)."""
    joined: dict[int, list[str]] = {}
    for (sid, _), text in zip(pool, texts, strict=True):
        joined.setdefault(sid, []).append(text)
    if first not in joined:
        return set(joined)
    sids = list(joined)
    weights = bm25_term_weights(set(content_stems(question)), [" ".join(joined[sid]) for sid in sids])
    own = weights[sids.index(first)]
    if not own:
        return set(joined)
    subject = max(sorted(own), key=own.__getitem__)
    return {sid for sid, weight in zip(sids, weights, strict=True) if subject in weight or subject in said[sid]}


def _add_to_opening(chosen: list[tuple[int, list[str], set[str]]], sid: int, quote: list[str], words: set[str]) -> None:
    """Add ``quote`` to the opening: a sentence whose lead (``with_lead``) ends a quote there
    already goes on in that quote; a sentence quoted elsewhere is not quoted again."""
    lead = normalise(quote[0]) if len(quote) > 1 else None
    for i, (other_sid, other, other_words) in enumerate(chosen):
        if lead is not None and other_sid == sid and normalise(other[-1]) == lead:
            chosen[i] = (sid, [*other, *quote[1:]], other_words | words)
            return
    # a sentence quoted there already (a lead another quote carried along) is not quoted again;
    # nothing left, nothing added (it opened the report as a second line repeating the first)
    quoted = {normalise(s) for _, other, _ in chosen for s in other}
    if normalise(quote[-1]) in quoted:  # the sentence it is for is there: its lead alone says less
        return
    chosen.append((sid, [s for s in quote if normalise(s) not in quoted], words))

