"""Links that open a web source at the passage a report cites, not at the top of the page.

A URL text fragment (WICG "URL Fragment Text Directives": ``#:~:text=start,end``) makes the
browser scroll to and highlight the cited words. Only an http(s) web page gets one: a PDF or
another document opens at its page (``#page=N``, ``citations.py``), a local-index file has no
browser to scroll it, and a source that was not read has no words of its own to point at (its
search snippet is the engine's, often cut with "...").

``sources[].url`` stays the plain URL (it keys the source: normalised, read, fetched again);
the link the reader clicks in the Sources list, and ``citations[].passage.link``, carry the
fragment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from urllib.parse import quote, urlsplit

#: a passage of at most this many words, on one line, is matched whole (``text=words``)
EXACT_WORDS = 8
#: a longer one by its first and last words (``text=start,end``): few enough to survive a page
#: whose text changed a little, enough to be found once
EDGE_WORDS = 4
#: URLs of documents: opened by their page, or downloaded; never scrolled to a text
_DOCUMENT_SUFFIXES = (".pdf", ".docx", ".pptx", ".doc", ".ppt", ".odt", ".odp", ".rtf", ".epub", ".xls", ".xlsx")
#: the Markdown that ``html_to_text`` writes before a line (heading, list item, quote): no page text
_LINE_MARKUP = re.compile(r"^\s*(?:#{1,6}\s+|[-*+]\s+|\d{1,3}[.)]\s+|>\s*)+")
#: lines that are no running text of the page: code fences and table rows (``| a | b |``)
_NOT_TEXT = re.compile(r"^\s*(?:```|~~~|\|)")


def encode_term(text: str) -> str:
    """``text`` percent-encoded as one term of a text directive: everything but letters, digits
    and ``_.~`` encoded, ``-``, ``,`` and ``&`` included (the spec's own delimiters)."""
    return quote(text, safe="").replace("-", "%2D")


def text_directive(passage: str) -> str | None:
    """``text=...`` that finds ``passage`` on its page, or None when it has no running text.

    A term never spans two blocks of the page (a browser matches each within one): a short
    passage on one line is matched whole, any other by the first words of its first line and
    the last words of its last line."""
    lines = [_LINE_MARKUP.sub("", line).split() for line in passage.splitlines() if not _NOT_TEXT.match(line)]
    lines = [words for words in lines if words]
    if not lines:
        return None
    if len(lines) == 1 and len(lines[0]) <= EXACT_WORDS:
        return "text=" + encode_term(" ".join(lines[0]))
    start, end = lines[0][:EDGE_WORDS], lines[-1][-EDGE_WORDS:]
    return f"text={encode_term(' '.join(start))},{encode_term(' '.join(end))}"


def with_directive(url: str, directive: str) -> str:
    """``url`` with ``directive`` in its fragment directive (after ``:~:``): a fragment it has
    (``#section``) is kept before it; a text directive it already had (a search engine's
    highlight) is replaced, any other directive kept."""
    base, _, fragment = url.partition("#")
    fragment, delimiter, directives = fragment.partition(":~:")
    kept = [d for d in directives.split("&") if d and not d.startswith("text=")] if delimiter else []
    return f"{base}#{fragment}:~:{'&'.join([*kept, directive])}"


def passage_link(url: str, passage: str) -> str | None:
    """``url`` opened at ``passage``, or None where a text fragment does not apply (not an
    http(s) URL, a document's URL, a passage without running text)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or parts.path.lower().endswith(_DOCUMENT_SUFFIXES):
        return None
    directive = text_directive(passage)
    return with_directive(url, directive) if directive else None


def _read_passage(where: Mapping[str, Any], passages: Mapping[str, Sequence[Mapping[str, Any]]]) -> str | None:
    """The text of the read passage ``where`` names (``{source_id, start, end, page}``), or
    None: a snippet, a page of a document, a passage no longer held."""
    if where.get("source_id") is None or where.get("start") is None or where.get("page"):
        return None
    key = (where.get("start"), where.get("end"))
    found = next((p for p in passages.get(str(where["source_id"]), ()) if (p.get("start"), p.get("end")) == key), None)
    if found is None:
        return None
    return str(found.get("text") or "") or None


def cited_quotes(evidence: Iterable[Mapping[str, Any]],
                 passages: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[int, str]:
    """Source id -> the text of the first read passage the report cites from it (grounding's
    evidence, in the report's order); a source cited by snippet or by page only is left out."""
    quotes: dict[int, str] = {}
    for where in evidence:
        text = _read_passage(where, passages)
        if text and int(where["source_id"]) not in quotes:
            quotes[int(where["source_id"])] = text
    return quotes


def linked(where: Mapping[str, Any], sources: Sequence[Mapping[str, Any]],
           passages: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """A citation's ``passage`` (grounding's evidence) with ``link``: its source's URL opened at
    it, where a text fragment applies (else as it was)."""
    text = _read_passage(where, passages)
    url = next((str(s["url"]) for s in sources if str(s["id"]) == str(where.get("source_id"))), None)
    link = passage_link(url, text) if text and url else None
    return {**where, "link": link} if link else dict(where)
