"""The local index's side of CJK text (``core.cjk`` splits it): the pairs a document's columns
hold, and a snippet around a CJK match."""

from __future__ import annotations

import re

from core.cjk import CJK_LETTERS, WIDTH_FORMS, has_cjk, plain_forms, split_cjk

#: a word as a question's are read (``index_query.query_terms``)
_WORD = re.compile(r"\w+")
_RUN = re.compile(f"[{CJK_LETTERS}]+")


def cjk_index_text(text: str) -> str:
    """Each word of ``text`` that holds CJK letters as its pieces (``split_cjk``), space-separated:
    its CJK pairs, which a question's pairs are matched against, and the Latin words glued to
    them ("Docker를", "PostgreSQLの": FTS5 reads each as one token, and "docker" found nothing).
    A run's last character is there too, so that each character starts a term and a question of
    one ("猫", Korean's "키") finds it as a prefix (``index_query.fts_query``); a word written
    full-width or with a ligature is there in its plain form (``cjk.plain_forms``: Japanese writes
    ＵＳＢ, １０分, ﾒﾓﾘ, and "USB", "10分" found nothing). Empty for other text, so it ranks as it did."""
    pieces: list[str] = []
    for word in _WORD.findall(text):
        plain = plain_forms(word)
        if has_cjk(plain):
            pieces += split_cjk(plain)
            pieces += [run[-1] for run in _RUN.findall(plain) if len(run) > 1]
        elif plain != word:
            pieces.append(plain)
    return " ".join(pieces)


#: characters a CJK snippet holds (``cjk_snippet``): about what FTS5's 32 tokens of English hold
SNIPPET_CHARS = 120


def cjk_snippet(text: str, pairs: list[str], chars: int = SNIPPET_CHARS) -> str:
    """The part of ``text`` around the place it says most of ``pairs`` (a question's CJK pairs,
    or its words found glued to CJK letters; in any case, full-width letters as plain ones),
    marked `` … `` where cut; empty when it says none. FTS5's ``snippet()`` cuts the body column,
    where a CJK run is one token (a sentence, or a paragraph): it marked no match there and
    returned the page's first 32 such "words"."""
    folded = text.translate(WIDTH_FORMS).lower()  # one character for one: a match is where it is in text
    if len(folded) != len(text):  # a letter whose small form is longer: positions would shift
        folded = text.translate(WIDTH_FORMS)
    firsts = sorted({i for pair in pairs if (i := folded.find(pair)) >= 0})
    if not firsts:
        return ""

    def said(start: int) -> int:
        window = folded[start:start + chars]
        return sum(pair in window for pair in pairs)

    start = max((max(0, at - chars // 4) for at in firsts), key=said)
    end = min(len(text), start + chars)
    return ("… " if start else "") + text[start:end] + (" …" if end < len(text) else "")
