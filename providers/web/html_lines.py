"""The lines an HTML page's text is written as (``Flow``, ``Table``, ``markdown_table``) and how
they are joined into the page's text (``page_text``: its <main> or <article>s where those hold it,
no stray <form>); ``providers.web.html`` reads the page into them."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

#: the share of a page's text its <main> (or its <article>s) must hold to be read alone: less, and
#: the landmark is a fragment (a hero banner, a comment) and the page's text is elsewhere
_LANDMARK_SHARE = {"main": 0.2, "article": 0.5}


class Where(NamedTuple):
    """Where a line of the page was written: inside <main>, inside an <article>, in which <form>."""

    main: bool
    article: bool
    form: int | None


class Flow:
    """Lines of text as they are written: finished lines (``""`` a blank one) and the words of the next."""

    def __init__(self, where: Callable[[], Where]) -> None:
        self.lines: list[tuple[str, Where]] = []
        self.words: list[str] = []
        self.prefix = ""  # what the next line starts with: "- ", "1. ", "## "
        self.indent = ""  # what a further line of the same list item starts with
        self.where = where

    def end_line(self) -> None:
        text = " ".join("".join(self.words).split())
        self.words = []
        if text:
            self.lines.append((self.prefix + text, self.where()))
            self.prefix = self.indent

    def end_paragraph(self) -> None:
        self.end_line()
        if self.lines and self.lines[-1][0]:
            self.lines.append(("", self.where()))

    def block(self) -> None:
        """A block's edge: a paragraph break, or in a list item a line break (its next line)."""
        if self.indent:
            self.end_line()
        else:
            self.end_paragraph()

    def code(self, raw: str) -> None:
        """A <pre> block as a fenced code block (a fence longer than any in the code)."""
        lines = [line.rstrip() for line in raw.removeprefix("\n").rstrip().splitlines()]
        while lines and not lines[0]:
            lines.pop(0)
        if not lines:
            return
        longest = max((len(run) for run in re.findall(r"`+", raw)), default=0)
        fence = "`" * max(3, longest + 1)
        self.end_paragraph()
        self.lines += [(line, self.where()) for line in (fence, *lines, fence)]
        self.end_paragraph()


class Table:
    """A <table> being read: each row's cells, each cell its own flow and whether it is a <th>."""

    def __init__(self, outer: Flow) -> None:
        self.outer = outer
        self.rows: list[list[tuple[Flow, bool]]] = []

    def write(self) -> None:
        """Into the flow around it: a data table as Markdown rows (``| a | b |``); a layout table
        (one column, or a cell of paragraphs, a list or a heading) as the text of its cells in order."""
        cells = [[[text for text, _ in flow.lines if text] for flow, _ in row] for row in self.rows if row]
        simple = all(len(lines) <= 1 and not (lines and re.match(r"#|```", lines[0]))
                     for row in cells for lines in row)
        self.outer.end_paragraph()
        if simple and max((len(row) for row in cells), default=0) > 1:
            where = self.outer.where()
            header = len(cells) > 1 and all(th for _, th in self.rows[0])
            texts = [[lines[0] if lines else "" for lines in row] for row in cells]
            self.outer.lines += [(line, where) for line in markdown_table(texts, header=header)]
        else:
            for cells_of_row in self.rows:
                for flow, _ in cells_of_row:
                    self.outer.lines += flow.lines
                    self.outer.end_paragraph()
        self.outer.end_paragraph()


def markdown_table(rows: list[list[str]], *, header: bool = True) -> list[str]:
    """Rows of cell texts as the lines of a Markdown table, each cell's ``|`` escaped, and under
    the first row a ``| --- |`` separator when it is the header (an HTML table's <th> row, a DOCX
    or PPTX table's first)."""
    lines = ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return [*lines[:1], "|" + " --- |" * len(rows[0]), *lines[1:]] if header and rows else lines



def page_text(lines: list[tuple[str, Where]], page_forms: set[int]) -> str:
    """The page's lines as text: those of a <form> that does not hold the page left out (a
    newsletter sign-up), and of <main>, else of its <article>s, alone when they hold
    ``_LANDMARK_SHARE`` of the rest."""
    def kept(where: Where, landmark: str | None = None) -> bool:
        return (where.form is None or where.form in page_forms) and (landmark is None or getattr(where, landmark))

    size = sum(len(text) for text, where in lines if kept(where))
    for landmark, share in _LANDMARK_SHARE.items():
        held = sum(len(text) for text, where in lines if kept(where, landmark))
        if held and held >= share * size:
            return _joined(lines, partial(kept, landmark=landmark))
    return _joined(lines, kept)


def _joined(lines: list[tuple[str, Where]], keep: Callable[[Where], bool]) -> str:
    """The lines ``keep`` keeps, one blank line at most between two, and one where lines were left out."""
    out: list[str] = []
    gap = False
    for text, where in lines:
        if not keep(where):
            gap = True
            continue
        if text and gap and out and out[-1]:
            out.append("")
        gap = False
        if text or (out and out[-1]):
            out.append(text)
    return "\n".join(out).strip("\n")
