"""The local index's side of CJK text (``core.cjk`` splits it): the pairs a document's columns
hold, and a snippet around a CJK match."""

from __future__ import annotations

from core.cjk import cjk_terms


def cjk_index_text(text: str) -> str:
    """``cjk_terms`` of ``text``, space-separated: what the index matches a question's pairs
    against (empty for text without CJK letters, so other text ranks as it did)."""
    return " ".join(cjk_terms(text))


#: characters a CJK snippet holds (``cjk_snippet``): about what FTS5's 32 tokens of English hold
SNIPPET_CHARS = 120


def cjk_snippet(text: str, pairs: list[str], chars: int = SNIPPET_CHARS) -> str:
    """The part of ``text`` around the place it says most of ``pairs`` (a question's CJK pairs),
    marked `` … `` where cut; empty when it says none. FTS5's ``snippet()`` cuts the body column,
    where a CJK run is one token (a sentence, or a paragraph): it marked no match there and
    returned the page's first 32 such "words"."""
    firsts = sorted({i for pair in pairs if (i := text.find(pair)) >= 0})
    if not firsts:
        return ""

    def said(start: int) -> int:
        window = text[start:start + chars]
        return sum(pair in window for pair in pairs)

    start = max((max(0, at - chars // 4) for at in firsts), key=said)
    end = min(len(text), start + chars)
    return ("… " if start else "") + text[start:end] + (" …" if end < len(text) else "")
