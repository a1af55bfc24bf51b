"""Deterministic checks on a report's sentences: repeats dropped, and each factual sentence held
against the text of the passages it cites.

``drop_repeats`` removes a sentence or line that repeats an earlier one (compared lower-cased,
without citations, punctuation or spacing) and a sentence that loops on one phrase.
``ground`` keeps a factual sentence only when a passage of a source it cites contains enough of
its content words (``MIN_OVERLAP``), every number it states and every span it quotes verbatim;
an uncited factual sentence, or one citing only sources that were never retrieved, goes too.
Each removal is listed with its reason.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from graphs.research.citations import CITE_MARKER, invalid_citation, marker_ids, split_sentences
from graphs.research.passages import Passage, content_stems, numbers_in

#: share of a sentence's content words one cited passage must contain
MIN_OVERLAP = 0.6
#: sentences that repeat a phrase of this many words this many times are loops
_LOOP_NGRAM, _LOOP_TIMES = 3, 3

_PREFIX = re.compile(r"^(\s*(?:>\s*)*(?:(?:[-*+]|\d+[.)])\s+)?)")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_QUOTED = re.compile(r"\"([^\"\n]{3,300})\"|“([^”\n]{3,300})”|`([^`\n]{2,200})`")
_ABOUT_SOURCES = re.compile(r"\b(?:sources?|documents?|passages?|search results?|excerpts?|context)\b", re.IGNORECASE)
_NEGATION = re.compile(r"\b(?:not|no|none|nothing|neither|nor|lacks?|unclear|insufficient|silent)\b|n't\b", re.IGNORECASE)


def normalise(sentence: str) -> str:
    """The comparison key of a sentence: lower case, no citations, only words and numbers."""
    return " ".join(re.findall(r"[a-z0-9]+", CITE_MARKER.sub(" ", sentence).lower()))


def _flat(text: str) -> str:
    return " ".join(text.replace("`", "").replace("*", "").lower().split())


def _block_start(line: str) -> bool:
    """A line that begins a block of its own: blank, heading, list item, quote, table, fence."""
    stripped = line.strip()
    return not stripped or bool(_HEADING.match(line) or _LIST_ITEM.match(line)) or stripped[0] in ">|`"


def _reflow(text: str) -> list[str]:
    """Lines with hard-wrapped paragraphs and list items joined, so a sentence is never cut
    from the citation at its end; code blocks are left as they are."""
    lines: list[str] = []
    in_code = joinable = False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_code = not in_code
            lines.append(line)
            joinable = False
            continue
        if joinable and not in_code and not _block_start(line):
            lines[-1] = f"{lines[-1].rstrip()} {line.strip()}"
            continue
        lines.append(line)
        joinable = not in_code and bool(line.strip()) and not _HEADING.match(line) and line.strip()[0] not in "|`"
    return lines


def _rewrite(text: str, keep: Callable[[str], bool], keep_line: Callable[[str], bool] | None = None) -> str:
    """``text`` with the sentences ``keep`` refuses taken out (a line left empty goes too).

    Code blocks are kept as they are; headings go to ``keep_line`` only.
    """
    out: list[str] = []
    in_code = False
    for line in _reflow(text):
        if line.strip().startswith("```"):
            in_code = not in_code
            out.append(line)
            continue
        if in_code or not line.strip() or set(line.strip()) <= set("|-: =*_"):
            out.append(line)
            continue
        if _HEADING.match(line):
            if keep_line is None or keep_line(line):
                out.append(line)
            continue
        if keep_line is not None and not keep_line(line):
            continue
        prefix = _PREFIX.match(line).group(1)  # type: ignore[union-attr]
        kept = [s for s in split_sentences(line[len(prefix):]) if keep(s)]
        if kept:
            out.append(prefix + " ".join(kept))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip() + "\n"


def _loops(sentence: str) -> bool:
    words = re.findall(r"[a-z0-9]+", sentence.lower())
    grams = Counter(tuple(words[i : i + _LOOP_NGRAM]) for i in range(len(words) - _LOOP_NGRAM + 1))
    return bool(grams) and max(grams.values()) >= _LOOP_TIMES


def drop_repeats(text: str) -> tuple[str, list[dict[str, str]]]:
    """``text`` without repeated lines or sentences and without looping sentences.

    Returns:
        The text and what was dropped: ``[{text, reason}]``.
    """
    seen_lines: set[str] = set()
    seen_sentences: set[str] = set()
    dropped: list[dict[str, str]] = []

    def keep_line(line: str) -> bool:
        key = normalise(line)
        if key and key in seen_lines:
            dropped.append({"text": line.strip()[:300], "reason": "repeats an earlier line"})
            return False
        seen_lines.add(key)
        return True

    def keep(sentence: str) -> bool:
        key = normalise(sentence)
        if _loops(sentence):
            dropped.append({"text": sentence[:300], "reason": "repeats one phrase over and over"})
            return False
        if key and len(key.split()) >= 2 and key in seen_sentences:
            dropped.append({"text": sentence[:300], "reason": "repeats an earlier sentence"})
            return False
        seen_sentences.add(key)
        return True

    return _rewrite(text, keep, keep_line), dropped


def is_factual(claim: str, *, cited: bool) -> bool:
    """Whether a sentence states something a source must back: not a question, a lead-in
    (ends with ':'), a fragment of under two content words, or an uncited remark that the
    sources do not cover something."""
    plain = _LINK.sub(r"\1", claim).replace("*", "").replace("_", " ").strip()
    if plain.endswith(("?", ":")) or len(content_stems(plain)) < 2:
        return False
    return cited or not (_ABOUT_SOURCES.search(plain) and _NEGATION.search(plain))


@dataclass
class Grounding:
    """What ``ground`` made of a report."""

    report: str
    factual: int = 0
    supported: int = 0
    unsupported: list[dict[str, Any]] = field(default_factory=list)
    invalid: list[dict[str, Any]] = field(default_factory=list)
    #: normalised claim -> {source_id, start, end, heading, page, overlap} of the passage backing it
    evidence: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def support(self) -> float | None:
        """Supported / factual sentences; None when the report states nothing."""
        return round(self.supported / self.factual, 3) if self.factual else None


@dataclass(frozen=True)
class _Verdict:
    ok: bool
    overlap: float
    source_id: int | None = None
    passage: Passage | None = None
    problem: str = ""


def _judge(claim: str, ids: Sequence[int], passages: Mapping[int, Sequence[Passage]], titles: Mapping[int, str]) -> _Verdict:
    words = set(content_stems(claim))
    numbers = numbers_in(claim)
    quotes = [_flat(next(g for g in m.groups() if g)) for m in _QUOTED.finditer(claim)]
    best = _Verdict(False, -1.0, problem="the cited sources have no text to check against")
    for sid in ids:
        for passage in passages.get(sid, ()):
            text = f"{titles.get(sid, '')}\n{passage.get('heading') or ''}\n{passage['text']}"
            overlap = len(words & set(content_stems(text))) / len(words)
            missing_numbers = sorted(numbers - numbers_in(text))
            missing_quotes = [q for q in quotes if q not in _flat(text)]
            problem = ""
            if missing_quotes:
                problem = f"the quoted {missing_quotes[0][:80]!r} is not in the cited passage"
            elif missing_numbers:
                problem = f"the cited passage does not state {', '.join(missing_numbers)}"
            elif overlap < MIN_OVERLAP:
                problem = f"only {overlap:.0%} of its content words are in the cited passage (needs {MIN_OVERLAP:.0%})"
            verdict = _Verdict(not problem, overlap, sid, passage, problem)
            if (verdict.ok, verdict.overlap) > (best.ok, best.overlap):
                best = verdict
    return best


def ground(
    report: str,
    passages: Mapping[int, Sequence[Passage]],
    *,
    titles: Mapping[int, str] | None = None,
) -> Grounding:
    """Keep the sentences of ``report`` that the passages of their cited sources back.

    Args:
        report: Markdown whose citation markers are already in ``[n]`` form.
        passages: source id -> the passages read from it; its keys are the valid ids.
        titles: source id -> title, read as context of every passage of that source.
    """
    result = Grounding(report="")
    valid = set(passages)
    names = titles or {}

    def keep(sentence: str) -> bool:
        markers = list(CITE_MARKER.finditer(_CODE_SPAN.sub("", sentence)))  # `a[0]` is code, not a citation
        ids = list(dict.fromkeys(i for m in markers for i in marker_ids(m.group(1))))
        claim = re.sub(r"\s+([.,;:!?])", r"\1", " ".join(CITE_MARKER.sub(" ", sentence).split()))
        good = [i for i in ids if i in valid]
        if ids and not good:
            for marker in markers:
                result.invalid += [invalid_citation(marker.group(0), i, valid) for i in marker_ids(marker.group(1))]
            result.unsupported.append({"sentence": claim, "source_ids": ids, "reason": "cites only sources that were never retrieved"})
            return False
        if not is_factual(claim, cited=bool(ids)):
            return True
        result.factual += 1
        if not good:
            result.unsupported.append({"sentence": claim, "source_ids": [], "reason": "states a fact without citing a source"})
            return False
        verdict = _judge(claim, good, passages, names)
        if not verdict.ok:
            result.unsupported.append({"sentence": claim, "source_ids": good, "reason": verdict.problem})
            return False
        result.supported += 1
        where = verdict.passage or {}
        result.evidence[normalise(claim)] = {
            "source_id": verdict.source_id, "start": where.get("start"), "end": where.get("end"),
            "heading": where.get("heading"), "page": where.get("page"), "overlap": round(verdict.overlap, 2),
        }
        return True

    result.report = drop_empty_sections(_rewrite(report, keep))
    return result


def _heading_level(line: str) -> int | None:
    match = _HEADING.match(line)
    return len(match.group(1)) if match else None


def drop_empty_sections(text: str) -> str:
    """Remove headings left with nothing under them before the next heading of their level."""
    lines = text.splitlines()

    def body_follows(index: int, level: int) -> bool:
        for line in lines[index + 1 :]:
            found = _heading_level(line)
            if found is not None:
                if found <= level:
                    return False
                continue
            if line.strip():
                return True
        return False

    kept: Iterator[str] = (
        line for i, line in enumerate(lines) if (level := _heading_level(line)) is None or body_follows(i, level)
    )
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip() + "\n"
