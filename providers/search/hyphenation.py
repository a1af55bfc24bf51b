"""Words justified PDF text broke at a line's end ("configu-" / "ration") made whole again, within
a page and over a page's end, so that the index, a snippet and the research's quote check see
"configuration"; a compound the document writes whole with its hyphen, and an address, keep it."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence

#: the word (a compound's words too) before a break, the word after it; a compound written whole
_HEAD, _TAIL, _COMPOUND = re.compile(r"[\w-]{1,80}$"), re.compile(r"\w{1,80}"), re.compile(r"\w+(?:-\w+)+")


def hyphenated_words(texts: Iterable[str]) -> frozenset[str]:
    """The hyphenated compounds ``texts`` write whole on a line ("state-of-the-art"), in small letters."""
    return frozenset(word.lower() for text in texts for word in _COMPOUND.findall(text))


def _breaks(before: str, after: str) -> bool:
    """Whether a line ending ``before`` and the next starting ``after`` hold a broken word: a
    hyphen after a small letter, a small letter next ("Mid-" "Atlantic" and "2019-" "2020" do not)."""
    return before.endswith("-") and "a" <= before[-2:-1] <= "z" and "a" <= after[:1] <= "z"


def _unbroken(text: str, hyphenated: Collection[str]) -> str:
    """``text`` with each word justified text broke at a line's end (a hyphen after a small letter,
    a small letter on the next line) whole again, where the line broke: without its hyphen
    ("configu-" "ration": configuration), unless the document writes it with one (``hyphenated``:
    "state-of-the-" "art") or a path's or an address's (".../getting-" "started"). The next line's
    first word comes up with its punctuation ("ration," left a line starting ","), and no blank line
    is left where it was all of its line."""
    lines: list[str] = []
    for line in text.split("\n"):
        before, after = (lines[-1].rstrip(" \t") if lines else ""), line.lstrip(" \t")
        if not _breaks(before, after):
            lines.append(line)
            continue
        word, *rest = after.split(None, 1)
        head, tail = _HEAD.search(before, max(0, len(before) - 81), len(before) - 1), _TAIL.match(word)
        whole = f"{head.group() if head else ''}-{tail.group() if tail else ''}".lower()
        lines[-1] = before[:-1] + ("-" if whole in hyphenated or "/" in before.rsplit(None, 1)[-1] else "") + word
        lines += rest
    return "\n".join(lines)


def unbroken_pages(texts: Sequence[str]) -> list[str]:
    """Pages' texts with the rest of each word broken at a page's end ("configu-" the last line of
    page 3, "ration," the first of page 4) moved up, with its punctuation, to a line of its own at
    the end of the page where the word starts, for ``_unbroken`` to join there (or keep its
    hyphen). The next page starts after it, keeps its other text, and loses the line the rest was
    all of; a word broken twice ("in-" / "compre-" "hensible") comes up whole. Pages stay as many."""
    pages = list(texts)
    for i in range(len(pages) - 1):
        while _breaks(before := pages[i].rstrip(), after := pages[i + 1].lstrip()):
            first, newline, others = after.partition("\n")
            word, *rest = first.split(None, 1)
            pages[i], pages[i + 1] = f"{before}\n{word}", "\n".join([*rest, others] if newline else rest)
    return pages
