"""Words justified PDF text broke at a line's end ("configu-" / "ration") made whole again, within
a page and over a page's end (past a running header or footer), so that the index, a snippet and
the research's quote check see "configuration"; a compound the document writes whole with its
hyphen, and an address, keep it. A soft hyphen (U+00AD) breaks a word the same way, and goes."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable, Sequence

#: the word (a compound's words too) before a break, the word after it; a compound written whole
_HEAD, _TAIL, _COMPOUND = re.compile(r"[\w-]{1,80}$"), re.compile(r"\w{1,80}"), re.compile(r"\w+(?:-\w+)+")


def hyphenated_words(texts: Iterable[str]) -> frozenset[str]:
    """The hyphenated compounds ``texts`` write whole on a line ("state-of-the-art"), in small letters."""
    return frozenset(word.lower() for text in texts for word in _COMPOUND.findall(text))


SOFT_HYPHEN = "\u00ad"


def _breaks(before: str, after: str) -> bool:
    """Whether a line ending ``before`` and the next starting ``after`` hold a broken word: a
    hyphen after a small letter, a small letter next ("Mid-" "Atlantic" and "2019-" "2020" do not),
    or a soft hyphen between letters (it marks where a word may break, and only that)."""
    if before.endswith(SOFT_HYPHEN):
        return before[-2:-1].isalpha() and after[:1].isalpha()
    return before.endswith("-") and "a" <= before[-2:-1] <= "z" and "a" <= after[:1] <= "z"


def _unbroken(text: str, hyphenated: Collection[str]) -> str:
    """``text`` with each word justified text broke at a line's end (a hyphen after a small letter,
    a small letter on the next line) whole again, where the line broke: without its hyphen
    ("configu-" "ration": configuration), unless the document writes it with one (``hyphenated``:
    "state-of-the-" "art") or a path's or an address's (".../getting-" "started"); a soft hyphen
    never stays. The next line's
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
        kept = before.endswith("-") and (whole in hyphenated or "/" in before.rsplit(None, 1)[-1])
        lines[-1] = before[:-1] + ("-" if kept else "") + word
        lines += rest
    return "\n".join(lines)


#: a line that is a page number: "7", "- 7 -", "Page 7", "7 of 12", "7/12"
_PAGE_NUMBER = re.compile(r"(?:page\s+)?\d{1,4}(?:\s*(?:/|of)\s*\d{1,4})?|[-–—]\s*\d{1,4}\s*[-–—]", re.IGNORECASE)
#: how many lines at the top and at the bottom of a page a running header or footer is looked for in
_EDGE_LINES = 3


def _shape(line: str) -> str:
    """A line as a running header or footer is compared by: its numbers alike ("Page 3", "Page 4")."""
    return re.sub(r"\d+", "0", " ".join(line.split())).lower()


def _running_lines(pages: Sequence[str]) -> frozenset[str]:
    """The ``_shape`` of each line at the edges (``_EDGE_LINES``) of more than one page: a running
    header or footer ("User Guide", "Page 3")."""
    edges: Counter[str] = Counter()
    for page in pages:
        lines = [line for line in page.split("\n") if line.strip()]
        edges.update({_shape(line) for line in (*lines[:_EDGE_LINES], *lines[-_EDGE_LINES:])})
    return frozenset(shape for shape, count in edges.items() if count > 1)


def _running_count(lines: Iterable[str], running: Collection[str]) -> int:
    """How many of ``lines`` in a row, from the first, are blank, a page number or ``running``."""
    count = 0
    for line in lines:
        if line.strip() and not _PAGE_NUMBER.fullmatch(line.strip()) and _shape(line) not in running:
            break
        count += 1
    return count


def unbroken_pages(texts: Sequence[str]) -> list[str]:
    """Pages' texts with the rest of each word broken at a page's end ("configu-" the last line of
    page 3, "ration," the first of page 4) moved up, with its punctuation, to a line of its own at
    the end of the page where the word starts, for ``_unbroken`` to join there (or keep its
    hyphen). A running footer below the break and a running header above the rest
    (``_running_lines``, or a page number) are passed over and stay where they are. The next page
    starts after the rest, keeps its other text, and loses the line the rest was all of; a word
    broken twice ("in-" / "compre-" "hensible") comes up whole. Pages stay as many."""
    pages = list(texts)
    running = _running_lines(pages)
    for i in range(len(pages) - 1):
        while True:
            lines, next_lines = pages[i].rstrip().split("\n"), pages[i + 1].lstrip().split("\n")
            body_end = len(lines) - _running_count(reversed(lines), running)
            head_end = _running_count(next_lines, running)
            before, after = "\n".join(lines[:body_end]).rstrip(), "\n".join(next_lines[head_end:]).lstrip()
            if not _breaks(before, after):
                break
            first, newline, others = after.partition("\n")
            word, *rest = first.split(None, 1)
            pages[i] = "\n".join([before, word, *lines[body_end:]])
            pages[i + 1] = "\n".join([*next_lines[:head_end], *rest, *([others] if newline else [])])
    return pages
