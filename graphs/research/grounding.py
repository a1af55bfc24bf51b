"""Deterministic checks on a report's sentences: each factual sentence held against the text of
the passages it cites (repeats are dropped before, by ``repeats.drop_repeats``).

``ground`` keeps a factual sentence only when a passage of a source it cites contains enough of
its content words (``MIN_OVERLAP``), every number it states and the words of every span it
quotes, in order, and the sentence of that passage it rests on neither denies what it states (nor
states what it denies), gives another ``true``/``false``, nor leaves its numbers to another
sentence (``_contradiction``: such a sentence is undecided, for a reviewer); an uncited factual sentence, or one citing only sources that were never
retrieved, goes too. Each removal is listed with its reason. A sentence copied from a passage
with its ``[n]`` is always kept.

The Markdown layout (code fences, wrapped paragraphs, headings) is walked by ``markdown_blocks``;
code blocks are not claims and are left as they are.

A sentence the words alone cannot settle (every number and quote found, but only between
``UNDECIDED_OVERLAP`` and ``MIN_OVERLAP`` of its content words) is *undecided*: ``ground`` lists it
in ``Grounding.undecided`` with the passages it cites, and removes it as unsupported unless a
``ReviewerVerdict`` for it is given (``entailment.py`` asks a reviewer of another family).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.cjk import CJK_FULL_STOPS, without_gaps
from graphs.research.citations import CITE_MARKER, invalid_citation, marker_ids
from graphs.research.markdown_blocks import dangling_lead_ins, drop_empty_sections, rewrite_sentences
from graphs.research.passages import Passage, ends_lead_in, sentences_of
from graphs.research.stems import content_stems, numbers_in

#: share of a sentence's content words one cited passage must contain
MIN_OVERLAP = 0.6
#: below MIN_OVERLAP but at least this share: undecided, for a reviewer to settle; below it: unsupported
UNDECIDED_OVERLAP = 0.3
#: passages of each undecided sentence kept for the reviewer: the best one of each cited source
UNDECIDED_PASSAGES = 3

_CODE_SPAN = re.compile(r"`[^`\n]*`")
_HEADING_TEXT = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_CODE_SPLIT = re.compile(r"(`[^`\n]*`)")
_MARKER_WITH_SPACE = re.compile(r"\s*" + CITE_MARKER.pattern)
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_QUOTED = re.compile(r"\"([^\"\n]{3,300})\"|“([^”\n]{3,300})”|`([^`\n]{2,200})`")
_ABOUT_SOURCES = re.compile(r"\b(?:sources?|documents?|passages?|search results?|excerpts?|context)\b", re.IGNORECASE)
#: what a sentence is compared by (``normalise``, ``_words``): runs of letters and digits of any
#: script, after NFKC (full-width ＰＣ is PC). With Latin letters and digits only, a Japanese or
#: Russian sentence was its numbers alone ("" or "30"), and every one the same as any other of
#: them: one quoted, the rest taken for repeats of it; "Größe" and "Grüße" were one word
_KEY_WORD = re.compile(r"[^\W_]+")
_NEGATION = re.compile(r"\b(?:not|no|none|nothing|neither|nor|lacks?|unclear|insufficient|silent)\b|n['’]t\b", re.IGNORECASE)
#: a question: the run of stops it ends with holds a question mark of any script ("?", "?!", CJK's
#: "？" and "！？", their small and vertical forms, "⁇ ⁈ ⁉ ‽", Arabic's "؟"); one inside a quote the
#: sentence ends after ('He asked "why?"') is the quote's, not the sentence's
_QUESTION = re.compile(f"[?？﹖︖⁇⁈⁉‽؟][.!?…{CJK_FULL_STOPS}‽؟]*$")


def normalise(sentence: str) -> str:
    """The comparison key of a sentence: lower case, no citations, only words and numbers (``_words``)."""
    return _words(CITE_MARKER.sub(" ", sentence))


def _claim(sentence: str) -> str:
    """``sentence`` without its citation markers (and the space before each), spacing collapsed;
    nothing else changes (a ``[7]`` inside a code span is code and stays), so a sentence copied
    from a passage stays a copy of it."""
    pieces = _CODE_SPLIT.split(sentence)  # odd pieces are code spans: `items[7]` is code, not a citation
    bare = (piece if i % 2 else _MARKER_WITH_SPACE.sub("", piece) for i, piece in enumerate(pieces))
    return " ".join("".join(bare).split())


def _words(text: str) -> str:
    """The words and numbers of ``text`` in order: what a quote or a copy is compared by, so
    that spacing, punctuation and Markdown or RST markup never decide it, nor a line break or a
    space inside Japanese or Chinese text (``cjk.without_gaps``: a source wrapped inside 再起動
    had the quoted `再起動` refused as not in it)."""
    return without_gaps(" ".join(_KEY_WORD.findall(unicodedata.normalize("NFKC", text).lower())))


def cited_ids(sentence: str) -> list[int]:
    """The source ids a sentence's markers name (``a[0]`` in code is no marker)."""
    markers = CITE_MARKER.finditer(_CODE_SPAN.sub("", sentence))
    return list(dict.fromkeys(i for m in markers for i in marker_ids(m.group(1))))


def is_factual(claim: str, *, cited: bool, lead_in: bool = True) -> bool:
    """Whether a sentence states something a source must back: not a question, a lead-in
    (ends with ':' or '：', ``passages.ends_lead_in``, and, ``lead_in``, something follows it),
    a fragment of under two content words, or an uncited remark that the sources lack something."""
    plain = _LINK.sub(r"\1", claim).replace("*", "").replace("_", " ").strip()
    if is_question(plain) or (lead_in and ends_lead_in(plain)) or len(content_stems(plain)) < 2:
        return False
    return cited or not (_ABOUT_SOURCES.search(plain) and _NEGATION.search(plain))


def is_question(text: str) -> bool:
    """``text`` asks rather than states: it ends with a question mark of any script
    (``_QUESTION``: "？" as "?"), and a question, sentence or heading, needs no source."""
    return _QUESTION.search(text.rstrip()) is not None


def _remark_on_sources(claim: str) -> bool:
    """An uncited remark that the sources do not cover something (``is_factual``'s exception)."""
    plain = _LINK.sub(r"\1", claim).replace("*", "").replace("_", " ").strip()
    return bool(_ABOUT_SOURCES.search(plain) and _NEGATION.search(plain))


@dataclass(frozen=True)
class ReviewerVerdict:
    """A reviewer's answer on one undecided sentence: does its cited passage entail it?"""

    entailed: bool
    model: str
    reason: str = ""


@dataclass
class Grounding:
    """What ``ground`` made of a report."""

    report: str
    factual: int = 0
    supported: int = 0
    unsupported: list[dict[str, Any]] = field(default_factory=list)
    invalid: list[dict[str, Any]] = field(default_factory=list)
    #: normalised claim -> {source_id, start, end, heading, page, overlap} of the passage backing it
    #: (plus ``reason: "reviewer: <model>"`` when a reviewer confirmed it)
    evidence: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: sentences the words alone could not settle and no verdict was given for:
    #: {key, sentence, source_ids, overlap, reason, passages: [{source_id, text, heading, page}]}
    undecided: list[dict[str, Any]] = field(default_factory=list)
    #: undecided sentences a given ``ReviewerVerdict`` settled: entailed, and not entailed
    entailed: int = 0
    not_entailed: int = 0

    @property
    def support(self) -> float | None:
        """Supported / factual sentences; None when the report states nothing."""
        return round(self.supported / self.factual, 3) if self.factual else None


#: how a cited passage judges a sentence, best first
_SUPPORTED, _UNDECIDED, _UNSUPPORTED = 2, 1, 0


@dataclass(frozen=True)
class _Verdict:
    rank: int
    overlap: float
    source_id: int | None = None
    passage: Passage | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.rank == _SUPPORTED


#: what turns a statement into its opposite: a sentence saying one of these where the passage's
#: sentence it rests on says none (or the reverse) may say the opposite of it
_DENIAL = re.compile(r"\b(?:not|no|never|none|neither|nor|without|cannot)\b|n['’]t\b", re.IGNORECASE)
#: settings' truth values: "limiter: true" where the passage says "limiter: false"
_TRUTH = re.compile(r"\b(true|false)\b", re.IGNORECASE)


#: a passage sentence shares at least this share of the best one's words with a claim to count as
#: what the claim rests on too (a claim may join two sentences that say the same thing of it)
_ALSO_ANCHOR = 0.75


def _anchor(words: set[str], text: str) -> tuple[str, str]:
    """The sentence of ``text`` that shares most content words with a claim of ``words``, and the
    sentences that share nearly as many (``_ALSO_ANCHOR``): the part of a passage a claim rests
    on (a passage holds several statements: "answers HTTP 403" and, of the rate limiter, "429")."""
    sentences = sentences_of(text) or [text]
    scores = [len(words & set(content_stems(s))) for s in sentences]
    top = max(scores)
    best = scores.index(top)
    return sentences[best], " ".join(s for s, n in zip(sentences, scores, strict=True) if n >= max(1, _ALSO_ANCHOR * top))


def _contradiction(claim: str, words: set[str], numbers: set[str], text: str, context: str = "") -> str:
    """Why ``claim`` may say other than the passage ``text`` though it shares its words: it denies
    what the sentence it rests on states (or the reverse), gives another truth value, or states a
    number the sentences it rests on do not (the passage says 403 there and 429 of something
    else). Words alone let "SearXNG must not have JSON output enabled" pass against "must have"."""
    sentence, rests_on = _anchor(words, text)
    if bool(_DENIAL.search(_CODE_SPAN.sub(" ", claim))) != bool(_DENIAL.search(_CODE_SPAN.sub(" ", sentence))):
        return "it may say the opposite of the cited passage (one of them denies what the other states)"
    truths = {t.lower() for t in _TRUTH.findall(claim)}
    if truths and _TRUTH.search(sentence) and not truths & {t.lower() for t in _TRUTH.findall(sentence)}:
        return f"the cited passage gives another value than {', '.join(sorted(truths))}"
    away = sorted(numbers - numbers_in(rests_on) - numbers_in(context))  # the title's and heading's hold for all of it
    if away:
        return f"the cited passage states {', '.join(away)} of something else"
    return ""


def _judge(claim: str, ids: Sequence[int], passages: Mapping[int, Sequence[Passage]], titles: Mapping[int, str]) -> _Verdict:
    words = set(content_stems(claim))
    numbers = numbers_in(claim)
    quotes = [_words(next(g for g in m.groups() if g)) for m in _QUOTED.finditer(claim)]
    best = _Verdict(_UNSUPPORTED, -1.0, problem="the cited sources have no text to check against")
    for sid in ids:
        for passage in passages.get(sid, ()):
            text = f"{titles.get(sid, '')}\n{passage.get('heading') or ''}\n{passage['text']}"
            overlap = len(words & set(content_stems(text))) / len(words)
            missing_numbers = sorted(numbers - numbers_in(text))
            words_of_text = _words(text)
            missing_quotes = [q for q in quotes if q not in words_of_text]
            problem = ""
            if missing_quotes:
                problem = f"the quoted {missing_quotes[0][:80]!r} is not in the cited passage"
            elif missing_numbers:
                problem = f"the cited passage does not state {', '.join(missing_numbers)}"
            elif overlap < MIN_OVERLAP:
                problem = f"only {overlap:.0%} of its content words are in the cited passage (needs {MIN_OVERLAP:.0%})"
            elif _words(claim) not in words_of_text:  # a copy of the passage says what it says
                # enough of its words: a reviewer settles one that may say other than the passage
                problem = _contradiction(claim, words, numbers, passage["text"],
                                         f"{titles.get(sid, '')}\n{passage.get('heading') or ''}")
            rank = _SUPPORTED if not problem else _UNSUPPORTED
            if problem and not missing_quotes and not missing_numbers and overlap >= UNDECIDED_OVERLAP:
                rank = _UNDECIDED
            verdict = _Verdict(rank, overlap, sid, passage, problem)
            if (verdict.rank, verdict.overlap) > (best.rank, best.overlap):
                best = verdict
    return best


def _cited_passages(claim: str, verdict: _Verdict, ids: Sequence[int], passages: Mapping[int, Sequence[Passage]]) -> list[dict[str, Any]]:
    """What a reviewer is shown: the passage that left ``claim`` undecided, then the passage of
    each other cited source that shares most content words with it."""
    words = set(content_stems(claim))
    best: list[tuple[int, int, Passage]] = []
    for sid in ids:
        if sid == verdict.source_id:
            continue
        scored = [(len(words & set(content_stems(p["text"]))), -i, p) for i, p in enumerate(passages.get(sid, ()))]
        if scored:
            hits, _, passage = max(scored, key=lambda t: t[:2])
            best.append((hits, sid, passage))
    best.sort(key=lambda t: -t[0])
    chosen = [(verdict.source_id, verdict.passage)] if verdict.passage is not None else []
    chosen += [(sid, p) for _, sid, p in best]
    return [{"source_id": sid, "text": p["text"], "heading": p.get("heading"), "page": p.get("page")}
            for sid, p in chosen[:UNDECIDED_PASSAGES]]


def _record(result: Grounding, claim: str, ids: list[int], verdict: _Verdict, reviewed: ReviewerVerdict | None,
            passages: Mapping[int, Sequence[Passage]]) -> bool:
    """Count a cited factual sentence in ``result`` by the passages' verdict, or the reviewer's
    when it settled an undecided one; True when the sentence stays."""
    key = normalise(claim)
    if reviewed is not None and not reviewed.entailed:
        result.not_entailed += 1
        reason = f"reviewer {reviewed.model}: not entailed" + (f" ({reviewed.reason})" if reviewed.reason else "")
        result.unsupported.append({"sentence": claim, "source_ids": ids, "reason": reason, "reviewer": reviewed.model})
        return False
    if not verdict.ok and reviewed is None:
        entry: dict[str, Any] = {"sentence": claim, "source_ids": ids, "reason": verdict.problem}
        if verdict.rank == _UNDECIDED:
            entry["undecided"] = True
            result.undecided.append({**entry, "key": key, "overlap": round(verdict.overlap, 2),
                                     "passages": _cited_passages(claim, verdict, ids, passages)})
        result.unsupported.append(entry)
        return False
    result.supported += 1
    where = verdict.passage or {}
    result.evidence[key] = {
        "source_id": verdict.source_id, "start": where.get("start"), "end": where.get("end"),
        "heading": where.get("heading"), "page": where.get("page"), "overlap": round(verdict.overlap, 2),
    }
    if verdict.passage is not None and where.get("start") is None:  # the source was not read
        result.evidence[key]["snippet"] = True
    if reviewed is not None:
        result.entailed += 1
        result.evidence[key]["reason"] = f"reviewer: {reviewed.model}"
    return True


def ground(
    report: str,
    passages: Mapping[int, Sequence[Passage]],
    *,
    titles: Mapping[int, str] | None = None,
    verdicts: Mapping[str, ReviewerVerdict] | None = None,
) -> Grounding:
    """Keep the sentences of ``report`` that the passages of their cited sources back.

    Args:
        report: Markdown whose citation markers are already in ``[n]`` form.
        passages: source id -> the passages read from it; its keys are the valid ids.
        titles: source id -> title, read as context of every passage of that source.
        verdicts: normalised claim (``normalise``) -> a reviewer's verdict on that undecided
            sentence; an undecided sentence without one is removed as unsupported.
    """
    result = Grounding(report="")
    valid = set(passages)
    names = titles or {}
    settled = verdicts or {}
    dangling = dangling_lead_ins(report)
    held = _Held(passages, names)

    def keep(sentence: str) -> bool | str:
        markers = list(CITE_MARKER.finditer(_CODE_SPAN.sub("", sentence)))  # `a[0]` is code, not a citation
        ids = cited_ids(sentence)
        claim = _claim(sentence)
        good = [i for i in ids if i in valid]
        if ids and not good:
            for marker in markers:
                result.invalid += [invalid_citation(marker.group(0), i, valid) for i in marker_ids(marker.group(1))]
            result.unsupported.append({"sentence": claim, "source_ids": ids, "reason": "cites only sources that were never retrieved"})
            return False
        if not is_factual(claim, cited=bool(ids), lead_in=sentence not in dangling):
            # a question or a lead-in is no claim, but held to what any source holds as a heading is
            # ("deletes query logs after 90 days, as follows:"); a remark that the sources do not
            # say something names what they lack ("None of the sources found mentions LangGraph 0.6.")
            missing = held.missing(claim) if not ids and not _remark_on_sources(claim) else []
            if missing:
                result.unsupported.append({"sentence": claim, "source_ids": [],
                                           "reason": f"states {missing[0][:80]!r}, which no source holds"})
            return not missing
        result.factual += 1
        if not good:
            result.unsupported.append({"sentence": claim, "source_ids": [], "reason": "states a fact without citing a source"})
            return False
        verdict = _judge(claim, good, passages, names)
        reviewed = settled.get(normalise(claim)) if verdict.rank == _UNDECIDED else None
        if not _record(result, claim, good, verdict, reviewed, passages):
            return False
        return _only_backing(sentence, markers, claim, good, verdict, passages, names)


    result.report = drop_empty_sections(rewrite_sentences(report, keep, _heading_check(held, result)))
    return result


def _only_backing(sentence: str, markers: list[re.Match[str]], claim: str, good: list[int], verdict: _Verdict,
                  passages: Mapping[int, Sequence[Passage]], titles: Mapping[int, str]) -> bool | str:
    """``sentence`` whose one marker names only the cited sources that back it: "[1-5]" of a
    sentence one source backs listed all five as cited, and a source's own page said that no
    passage of it backs a sentence of the report. A sentence of several markers (a clause each)
    is left as it is: each may be its clause's."""
    if verdict.rank != _SUPPORTED or len(good) < 2 or len(markers) != 1 or _CODE_SPAN.search(sentence):
        return True
    backing = [sid for sid in good if sid == verdict.source_id or _judge(claim, [sid], passages, titles).ok]
    if len(backing) == len(good):
        return True
    marker = markers[0]
    return f"{sentence[:marker.start()]}[{', '.join(map(str, backing))}]{sentence[marker.end():]}"


#: a heading's leading section number: "1. ", "2) ", "Step 3: ", "Part IV - "
_ORDINAL = re.compile(r"^\s*(?:(?:step|part|section|phase|stage)\s+)?(?:\d+|[ivxlc]+)(?:\.\d+)*[.):\-]?\s+", re.IGNORECASE)


class _Held:
    """What any passage or title of the sources holds: its numbers and words, read once a report."""

    def __init__(self, passages: Mapping[int, Sequence[Passage]], titles: Mapping[int, str]) -> None:
        self._passages, self._titles = passages, titles
        self._numbers: set[str] | None = None
        self._words = ""

    def missing(self, text: str) -> list[str]:
        """The numbers and code of ``text`` no source holds (a section's own number aside)."""
        if self._numbers is None:
            everything = "\n".join([*self._titles.values(), *(p["text"] for ps in self._passages.values() for p in ps)])
            self._numbers, self._words = numbers_in(everything), f" {_words(everything)} "
        # a section's own number ("## 2. Workers", "Step 3:") is the writer's order, not a claim
        missing = sorted(numbers_in(_ORDINAL.sub("", text)) - self._numbers)
        code = [_words(m.group(0)) for m in _CODE_SPAN.finditer(text)]
        return missing + [c for c in code if c and f" {c} " not in self._words]


def _heading_check(held: _Held, result: Grounding) -> Any:
    """A ``keep_line`` that drops a heading stating a number or code that no passage (nor
    title) holds: a heading cites nothing, so it is held to what any source says. A question,
    or an extractive ``Search: `...``` heading (a search string, not a statement), stays."""

    def keep_line(line: str) -> bool:
        heading = _HEADING_TEXT.match(line)
        if heading is None:
            return True
        text = _claim(heading.group(1))
        if is_question(text) or text.startswith("Search: `"):
            return True
        missing = held.missing(text)
        if missing:
            result.unsupported.append({"sentence": text, "source_ids": [],
                                       "reason": f"a heading states {missing[0][:80]!r}, which no source holds"})
        return not missing

    return keep_line
