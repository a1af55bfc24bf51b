"""What a search asks the local index (``local_index``): the FTS5 MATCH expression a question
becomes (``fts_query``: quoted words, CJK runs as their character pairs), the query that ranks
each document's best page, and the snippet shown of a hit.
"""

from __future__ import annotations

import re
import sqlite3

from core.cjk import has_cjk, is_cjk, is_cjk_filler, plain_forms, split_cjk
from providers.search.cjk import cjk_snippet
from providers.search.index_schema import BM25_WEIGHTS, GRAM_COLUMNS

_STOPWORDS = frozenset(
    "a an and are as at be by can do does for from how i in is it of on or should that the this to"
    " what when where which who why will with you your".split()
)
_MAX_QUERY_TERMS = 32
_HEADING_MARK = re.compile(r"(?:^|(?<=\s))#{1,6}\s")
_HEADING_LINE = re.compile(r"^[ \t]*#{1,6}[ \t][^\n]*(?:\n|$)", re.MULTILINE)


def snippet_text(raw: str) -> str:
    """A snippet as one line, without its Markdown heading lines: a heading's text run into the
    paragraph under it reads as one garbled sentence ("Progress and long jobs Tools report ...").
    A snippet that is only headings keeps their text."""
    body = _HEADING_LINE.sub(" ", raw)
    if not body.strip(" …\n"):
        body = raw
    return " ".join(_HEADING_MARK.sub(" ", body).split())


#: the best page of each document is chosen among its matching pages (FTS5's bm25() cannot be
#: aggregated directly, hence the materialized step)
BEST_PAGES = f"""
WITH hits AS MATERIALIZED (
    SELECT rowid AS row, bm25(docs_fts, {BM25_WEIGHTS}) AS rank FROM docs_fts WHERE docs_fts MATCH :match)
SELECT row / :slots AS doc, row, min(rank) AS best FROM hits GROUP BY doc ORDER BY best LIMIT :limit
"""


def fts_query(text: str) -> str:
    """A safe FTS5 MATCH expression from free text: quoted terms joined by OR.

    Every term is a quoted string of word characters, so FTS5 operators, quotes, colons and
    parentheses in the user's text are plain words, never syntax. A CJK run's character pairs
    (``query_terms``) are matched in the index's pair columns, a CJK word of one character
    ("猫", "키") as the start of a term there: it is in no pair of its own.
    """
    terms = query_terms(text)
    quoted = [f'"{w}"' for w in terms if not is_cjk(w)]
    pairs = [f'"{w}"' + ("*" if len(w) == 1 else "") for w in terms if is_cjk(w)]
    if pairs:
        quoted.append(f"{GRAM_COLUMNS}: ({' OR '.join(pairs)})")
    return " OR ".join(quoted)


def query_terms(text: str) -> list[str]:
    """The words of ``text`` a search matches, first said first: content words, and each CJK run
    as its character pairs (``cjk.split_cjk``; those of Hiragana alone or of a question word are
    stop words: ``cjk.is_cjk_filler``); all of its words where it has no content word. Read in
    their plain form (``cjk.plain_forms``: "ＵＳＢ" is "usb"), as the index's pair columns hold them."""
    pieces = [piece for word in re.findall(r"\w+", plain_forms(text).lower()) for piece in split_cjk(word)]
    words = [w for w in pieces if len(w) > 1 or w.isdigit() or is_cjk(w)]
    content = list(dict.fromkeys([w for w in words if w not in _STOPWORDS and not is_cjk_filler(w)] or words))
    # pairs and other words have a limit each: a CJK run gives a pair per character, and a long
    # Japanese question's pairs took every place before the English words it ended with
    kept = {*[w for w in content if not is_cjk(w)][:_MAX_QUERY_TERMS], *[w for w in content if is_cjk(w)][:_MAX_QUERY_TERMS]}
    return [w for w in content if w in kept]


#: the marks around a match in FTS5's snippet(): they say whether it found one, and are taken out
_MATCH_OPEN, _MATCH_CLOSE = "\x02", "\x03"


def snippets(conn: sqlite3.Connection, match: str, rows: list[int], terms: list[str]) -> dict[int, str]:
    """Each row's snippet: FTS5's cut of its body around the matches, or, where it marked none
    (the question's CJK pairs, or a word glued to CJK letters, matched in the pair columns), the
    body around the question's terms (``query_terms``; ``cjk.cjk_snippet``)."""
    if not rows:
        return {}
    marks = ",".join("?" * len(rows))
    found = dict(conn.execute(
        f"SELECT rowid, snippet(docs_fts, 1, ?, ?, ' … ', 32) FROM docs_fts WHERE docs_fts MATCH ? AND rowid IN ({marks})",
        (_MATCH_OPEN, _MATCH_CLOSE, match, *rows),
    ).fetchall())
    unmarked = [row for row, text in found.items() if _MATCH_OPEN not in str(text)]
    if terms and unmarked:
        bodies = conn.execute(f"SELECT rowid, body FROM docs_fts WHERE rowid IN ({','.join('?' * len(unmarked))})", unmarked)
        # a page without CJK letters matched in its title only: FTS5's cut (its start) stands
        found |= {row: (cjk_snippet(str(body), terms) if has_cjk(str(body)) else "") or found[row] for row, body in bodies}
    return {row: str(text).replace(_MATCH_OPEN, "").replace(_MATCH_CLOSE, "") for row, text in found.items()}
