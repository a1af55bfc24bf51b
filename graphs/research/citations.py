"""Citation checking: every ``[n]`` in a report must name a source that was retrieved.

``check_citations`` repairs common variants (``[Source 2]``, ``[^2]``, ``[2](url)``), removes
citations to sources that do not exist, replaces any Sources section the model wrote with one
generated from the real sources, and ties every sentence carrying a citation to its source ids.
``renumber_report`` renumbers a checked report's markers and Sources list (``numbering.py``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from core.cjk import CJK_FULL_STOPS, CJK_LETTERS, CJK_SENTENCE_END, cjk_terms, spaceless
from graphs.research.fragments import passage_link
from graphs.research.passages import LATIN_CLOSERS, LATIN_STOPS, SENTENCE_BREAK

_CITE = re.compile(r"\[\s*(\d{1,4}(?:\s*(?:,|;|-|–)\s*\d{1,4})*)\s*\]")
#: a citation marker, ``[2]``, ``[1, 3]`` or ``[2-4]``; group 1 holds the ids (see ``marker_ids``)
CITE_MARKER = _CITE
_REPAIRS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\[(?:sources?|src|ref|refs|citation)\s*#?\s*(\d{1,4}(?:\s*,\s*\d{1,4})*)\]", re.IGNORECASE), r"[\1]"),
    (re.compile(r"\[\^(\d{1,4})\](?!:)"), r"[\1]"),
    (re.compile(r"【(\d{1,4})】"), r"[\1]"),
    (re.compile(r"(\[\d{1,4}(?:\s*,\s*\d{1,4})*\])\((?:[^()\s]|\([^()\s]*\))*\)"), r"\1"),
)
_SOURCES_HEADING = re.compile(
    r"^(?:#{1,6}\s*|\*\*)?(?:sources|references|bibliography|citations|works cited)\b[^\n]*$",
    re.IGNORECASE | re.MULTILINE,
)
_HEADING = re.compile(r"^(#{1,6})\s")
_LIST_MARKER = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
_WORD = re.compile(r"[a-z0-9]{4,}")
_MAX_RANGE = 20
_CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]*`", re.DOTALL)
#: the heading of the Sources list ``check_citations`` ends a report with, and one line of it
SOURCES_LIST_HEADING = "## Sources"
#: one entry of the Sources list: a list item (an earlier version wrote the bare ``[n]`` line, which
#: Markdown runs into one paragraph with the next)
_SOURCE_LINE = re.compile(r"^(?:- )?\[(\d{1,4})\] ")


@dataclass
class CitationCheck:
    """What the checker made of a report."""

    report: str
    citations: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    cited_ids: list[int] = field(default_factory=list)
    dropped_sources_section: bool = False


def _protect_code(text: str) -> tuple[str, list[str]]:
    """Hide code spans and fences (``a[0]`` is not a citation) behind placeholders."""
    saved: list[str] = []

    def keep(match: re.Match[str]) -> str:
        saved.append(match.group(0))
        return f"\x01{len(saved) - 1}\x01"

    return _CODE.sub(keep, text), saved


def _restore_code(text: str, saved: Sequence[str]) -> str:
    return re.sub(r"\x01(\d+)\x01", lambda m: saved[int(m.group(1))], text)


def marker_ids(inner: str) -> list[int]:
    """The source ids inside one marker's brackets (``1, 3`` or ``2-4``), in order, once each."""
    ids: list[int] = []
    for part in re.split(r"\s*[,;]\s*", inner.strip()):
        bounds = re.split(r"\s*[-–]\s*", part)
        if len(bounds) == 2 and bounds[0].isdigit() and bounds[1].isdigit():
            low, high = int(bounds[0]), int(bounds[1])
            ids.extend(range(low, min(high, low + _MAX_RANGE) + 1) if low <= high else [low, high])
        elif part.isdigit():
            ids.append(int(part))
    return list(dict.fromkeys(ids))


def _drop_sources_section(text: str) -> tuple[str, bool]:
    """Remove a model-written Sources/References section (up to the next heading at its level)."""
    match = _SOURCES_HEADING.search(text)
    if not match:
        return text, False
    heading = _HEADING.match(match.group(0))
    level = len(heading.group(1)) if heading else 6
    rest = text[match.end():]
    end = len(rest)
    for line in re.finditer(r"^(#{1,6})\s[^\n]*$", rest, re.MULTILINE):
        if len(line.group(1)) <= level:
            end = line.start()
            break
    return (text[: match.start()] + rest[end:]).rstrip() + "\n", True


def invalid_citation(marker: str, bad: int, valid: Collection[int]) -> dict[str, Any]:
    """The ``removed_citations`` entry for id ``bad`` of ``marker``."""
    span = valid and f"sources are {min(valid)}-{max(valid)}" or "no sources were retrieved"
    return {"marker": marker, "source_id": bad, "reason": f"no source {bad} was retrieved ({span})"}


def _strip_invalid(text: str, valid: set[int], removed: list[dict[str, Any]]) -> str:
    def replace(match: re.Match[str]) -> str:
        ids = marker_ids(match.group(1))
        kept = [i for i in ids if i in valid]
        removed.extend(invalid_citation(match.group(0), bad, valid) for bad in ids if bad not in valid)
        return f"[{', '.join(map(str, kept))}]" if kept else "\x00"

    cleaned = _CITE.sub(replace, text)
    return re.sub(r"[ \t]*\x00", "", cleaned)


#: a space before punctuation, left where a marker was taken out of a claim ("…です [1]。", "on [1]…")
_SPACE_BEFORE_STOP = re.compile(rf"\s+([.,;:!?…、；：{CJK_FULL_STOPS}])")
_LEAD_MARKERS = re.compile(r"^((?:\[[\d,\s;\-–]+\]\s*)+)(.*)$")
_CLOSER_CLASS = re.escape(LATIN_CLOSERS)
_STARTS = rf"[\"'(\[*`A-Z0-9\x01{CJK_LETTERS}]"
#: where ``SENTENCE_BREAK`` misses the end of a sentence that ``quoting.cite`` cited: after a stop
#: and up to three closing quotes, brackets or emphasis marks (``passages.LATIN_CLOSERS``), before
#: the markers ('He said "yes." [1] Next', "**Note.** [1] Next"), and after a marker and its "…"
#: ("It goes on [1]… Next"); the markers stay with the sentence before them
_CITED_BREAK = (rf"(?:(?<=[{LATIN_STOPS}][{_CLOSER_CLASS}])|(?<=[{LATIN_STOPS}][{_CLOSER_CLASS}]{{2}})"
                rf"|(?<=[{LATIN_STOPS}][{_CLOSER_CLASS}]{{3}}))"
                rf"\s+(?=(?:\[[\d,\s;\-–]+\]\s*)+{_STARTS})|(?<=\]…)\s+(?={_STARTS})")
_REPORT_BREAK = re.compile(f"{SENTENCE_BREAK.pattern}|{_CITED_BREAK}")
#: the citation markers a sentence ends with
_END_MARKERS = re.compile(r"(?:\s*\[[\d,\s;\-–]+\])+\s*$")


def split_sentences(line: str) -> list[str]:
    """Sentences of one line; a citation written after the full stop (or the closing quote after
    it: ``_CITED_BREAK``) stays with its sentence."""
    sentences: list[str] = []
    for piece in _REPORT_BREAK.split(line.strip()):
        lead = _LEAD_MARKERS.match(piece)
        if lead and sentences:
            # after a CJK sentence's end a citation follows with no space ("…です。[1]", "…。」[1]")
            space = "" if CJK_SENTENCE_END.search(sentences[-1]) else " "
            sentences[-1] += space + lead.group(1).strip()
            piece = lead.group(2)
        if piece.strip():
            sentences.append(piece.strip())
    return sentences


def join_sentences(sentences: Iterable[str]) -> str:
    """``sentences`` as one line (as ``split_sentences`` read it): joined with a space, but none
    after a Japanese or Chinese sentence before another (``cjk.spaceless``, its markers after its
    。 aside: "…です [1]。次に…", "…です。[1]次に…"), as CJK text writes them."""
    line: str | None = None
    previous = ""
    for sentence in sentences:
        if line is None:
            line = sentence
        else:
            bare = _END_MARKERS.sub("", previous) if previous.endswith("]") else previous
            line += sentence if spaceless(bare, sentence) else f" {sentence}"
        previous = sentence
    return line or ""


def _sentences(body: str) -> list[str]:
    sentences: list[str] = []
    in_code = False
    for line in body.splitlines():
        if line.strip().startswith("```"):
            in_code = not in_code
            continue
        if in_code or not line.strip() or _HEADING.match(line):
            continue
        sentences += split_sentences(_LIST_MARKER.sub("", line))
    return sentences


def _support_words(text: str) -> set[str]:
    """What ``support`` compares: Latin words of four letters or more, and CJK character pairs
    (``cjk.cjk_terms``: a Japanese claim had no word, and no support)."""
    return set(_WORD.findall(text.lower())) | set(cjk_terms(text))


def _support(claim: str, ids: Sequence[int], texts: Mapping[int, str]) -> float | None:
    words = _support_words(claim)
    if not words or not any(i in texts for i in ids):
        return None
    found: set[str] = set()
    for i in ids:
        found |= words & _support_words(texts.get(i, ""))
    return round(len(found) / len(words), 2)


def _repair(text: str) -> tuple[str, bool]:
    for pattern, replacement in _REPAIRS:
        text = pattern.sub(replacement, text)
    return _drop_sources_section(text)


def normalize_report(report: str) -> tuple[str, bool]:
    """``report`` with citation variants repaired to ``[n]`` and any Sources section the model
    wrote removed (code left as it is); True when such a section was removed."""
    text, code = _protect_code(report)
    text, dropped = _repair(text)
    return _restore_code(text, code), dropped


def page_label(pages: Collection[int]) -> str:
    """``p. 12`` or ``pp. 3-5, 12``: the pages of one source that the report cites."""
    ordered = sorted(set(pages))
    runs: list[list[int]] = []
    for page in ordered:
        if runs and page == runs[-1][-1] + 1:
            runs[-1].append(page)
        else:
            runs.append([page])
    spans = [str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs]
    return ("p. " if len(ordered) == 1 else "pp. ") + ", ".join(spans)


def cited_pages(evidence: Iterable[Mapping[str, Any]]) -> dict[int, list[int]]:
    """Source id -> the pages of the passages that back the report's sentences (grounding's
    evidence: ``{source_id, page, ...}``); sources without pages are left out."""
    pages: dict[int, set[int]] = {}
    for where in evidence:
        if where.get("source_id") is not None and where.get("page"):
            pages.setdefault(int(where["source_id"]), set()).add(int(where["page"]))
    return {sid: sorted(found) for sid, found in pages.items()}


def _source_line(sid: int, source: Mapping[str, Any], pages: Sequence[int], quote: str | None = None) -> str:
    title = re.sub(r"[\[\]\n\r<>]", " ", str(source.get("title") or source["url"])).strip()
    url = str(source["url"])
    where = ""
    if pages:  # a paged document: name the file and the cited pages; the link opens the first
        parts = urlsplit(url)
        name = unquote(parts.path.rsplit("/", 1)[-1]) or parts.netloc
        where = f" — {' '.join(name.split())} {page_label(pages)}"
        url = url.split("#", 1)[0] + f"#page={min(pages)}"
    elif quote:  # a web page: the link opens it at the first passage cited (a text fragment)
        url = passage_link(url, quote) or url
    url = url.replace(">", "%3E").replace(" ", "%20")
    return f"- [{sid}] [{' '.join(title.split())}](<{url}>){where}"


def sources_section(
    sources: Sequence[Mapping[str, Any]], cited: Sequence[int], pages: Mapping[int, Sequence[int]] | None = None,
    quotes: Mapping[int, str] | None = None,
) -> str:
    """A Markdown Sources list of the cited sources, built from retrieved data only; a source
    with cited ``pages`` (source id -> page numbers) reads ``- [3] [Title](<url#page=12>) — file.pdf p. 12``,
    a web page with a cited passage in ``quotes`` (``fragments.cited_quotes``) links to it:
    ``- [2] [Title](<https://host/page#:~:text=first%20words,last%20words>)``."""
    by_id = {int(s["id"]): s for s in sources}
    lines = [_source_line(i, by_id[i], (pages or {}).get(i, ()), (quotes or {}).get(i)) for i in cited]
    return f"{SOURCES_LIST_HEADING}\n\n" + "\n".join(lines) + "\n" if lines else ""


def split_sources_section(report: str) -> tuple[str, list[str]]:
    """``report`` (``check_citations``' output) as (the body before the Sources list it ends with,
    that list's lines); ``(report, [])`` when it ends with none."""
    at = report.rfind(f"\n{SOURCES_LIST_HEADING}\n\n")
    if at < 0:
        return report, []
    lines = report[at + len(SOURCES_LIST_HEADING) + 3:].rstrip("\n").split("\n")
    if not all(_SOURCE_LINE.match(line) for line in lines):  # a heading of the body, not the list
        return report, []
    return report[: at + 1], lines


def cited_in_order(text: str) -> list[int]:
    """The source ids the citation markers of ``text`` name (code left out), in order of first
    appearance, once each."""
    plain, _ = _protect_code(text)
    return list(dict.fromkeys(i for m in _CITE.finditer(plain) for i in marker_ids(m.group(1))))


def renumber_markers(text: str, new_id: Mapping[int, int]) -> str:
    """``text`` with each citation marker's ids replaced by ``new_id`` (ids it lacks stay), in
    ascending order; a marker ``new_id`` changes nothing in is left as written, code too."""
    def renumber(match: re.Match[str]) -> str:
        ids = marker_ids(match.group(1))
        renumbered = [new_id.get(i, i) for i in ids]
        return match.group(0) if renumbered == ids else f"[{', '.join(map(str, sorted(set(renumbered))))}]"

    plain, code = _protect_code(text)
    return _restore_code(_CITE.sub(renumber, plain), code)


def renumber_report(report: str, new_id: Mapping[int, int]) -> str:
    """``report`` (``check_citations``' output) with its markers and its Sources list renumbered
    by ``new_id`` (old id -> new id); the list stays in ascending order of the new ids."""
    body, lines = split_sources_section(report)
    body = renumber_markers(body, new_id)
    if not lines:
        return body
    entries = [(int(m.group(1)), m.string[m.end():]) for m in map(_SOURCE_LINE.match, lines) if m]
    numbered = sorted((new_id.get(old, old), rest) for old, rest in entries)
    return f"{body}{SOURCES_LIST_HEADING}\n\n" + "\n".join(f"- [{new}] {rest}" for new, rest in numbered) + "\n"


def check_citations(
    report: str,
    sources: Sequence[Mapping[str, Any]],
    texts: Mapping[int, str] | None = None,
    *,
    pages: Mapping[int, Sequence[int]] | None = None,
    quotes: Mapping[int, str] | None = None,
) -> CitationCheck:
    """Repair, prune and map the citations of ``report`` against ``sources`` (dicts with ``id``).

    Args:
        report: the model's Markdown.
        sources: the retrieved sources; their ``id`` values are the only valid citations.
        texts: source id -> text the writer saw; used to score how much of each claim's
            wording its cited sources contain (``support``, 0..1).
        pages: source id -> the pages its cited passages lie on (``cited_pages``), named in
            the Sources list.
        quotes: source id -> the first passage cited from it (``fragments.cited_quotes``):
            a web page's link in the Sources list opens at it.
    """
    valid = {int(s["id"]) for s in sources}
    text, code = _protect_code(report)
    text, dropped = _repair(text)
    removed: list[dict[str, Any]] = []
    text = _strip_invalid(text, valid, removed)
    citations: list[dict[str, Any]] = []
    cited: dict[int, None] = {}
    for sentence in _sentences(text):
        ids = [i for m in _CITE.finditer(sentence) for i in marker_ids(m.group(1))]
        if not ids:
            continue
        # spacing tidied outside code only: the claim's code reads as the report's
        prose = _SPACE_BEFORE_STOP.sub(r"\1", " ".join(_CITE.sub("", sentence).split()))
        claim = _restore_code(prose, code).strip()
        ids = list(dict.fromkeys(ids))
        cited.update(dict.fromkeys(ids))
        entry: dict[str, Any] = {"claim": claim, "source_ids": sorted(ids)}
        if texts is not None:
            entry["support"] = _support(claim, ids, texts)
        citations.append(entry)
    ordered = sorted(cited)
    body = _restore_code(text, code).rstrip()
    section = sources_section(sources, ordered, pages, quotes)
    final = f"{body}\n\n{section}" if section else body + "\n"
    return CitationCheck(report=final, citations=citations, removed=removed, cited_ids=ordered, dropped_sources_section=dropped)


def cited_passages(
    citations: Sequence[Mapping[str, Any]],
    passages: Mapping[str, Sequence[Mapping[str, Any]]],
    sources: Sequence[Mapping[str, Any]],
) -> dict[str, list[dict[str, Any]]]:
    """Source id (a string) -> the passages that back the report's citations, once each, in
    document order: ``{text, start, end, heading, page}``, plus ``snippet: True`` for a source
    that was not read (its search snippet, without offsets). What a reader opens to see a
    citation's evidence (``swarm://jobs/{id}/sources/{n}``).

    Args:
        citations: the report's citations (``passage``: ``{source_id, start, end}`` where known).
        passages: source id (a string) -> the passages read from it.
        sources: the retrieved sources (``id``, ``snippet``).
    """
    snippets = {str(s["id"]): str(s.get("snippet") or "") for s in sources}
    found: dict[str, dict[tuple[Any, Any], dict[str, Any]]] = {}
    for citation in citations:
        where = citation.get("passage") or {}
        sid = str(where.get("source_id", ""))
        if sid not in snippets:
            continue
        key = (where.get("start"), where.get("end"))
        if key in found.get(sid, {}):
            continue
        if where.get("start") is None:
            entry = {"text": " ".join(snippets[sid].split()), "start": None, "end": None,
                     "heading": None, "page": None, "snippet": True}
        else:
            match = next((p for p in passages.get(sid, ()) if (p.get("start"), p.get("end")) == key), None)
            if match is None:
                continue
            entry = {k: match.get(k) for k in ("text", "start", "end", "heading", "page")}
        found.setdefault(sid, {})[key] = entry
    return {sid: sorted(entries.values(), key=lambda p: p["start"] if p["start"] is not None else -1)
            for sid, entries in sorted(found.items(), key=lambda item: int(item[0]))}
