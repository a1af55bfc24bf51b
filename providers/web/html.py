"""HTML as Markdown-like plain text, with the standard library only (``html_to_text``): the page's
own words, its headings as ``#`` lines, list items as ``- `` lines, data tables as Markdown rows,
code fenced; menus, banners, footers, scripts and styles left out."""

from __future__ import annotations

from collections.abc import Callable
from html.parser import HTMLParser
from typing import NamedTuple

from providers.web.html_lines import Flow, Table, Where, page_text
from providers.web.html_lines import markdown_table as markdown_table  # imported from here by documents.py

#: elements whose content is no text of the page: code, styles, media, controls, and the page's
#: furniture (menus, banners, footers) that a quote would cite as the page's own words ("Home | Docs
#: | Blog | Sign in Subscribe to our newsletter for updates [1]!")
_DROP_TAGS = frozenset({"script", "style", "noscript", "template", "svg", "head", "title", "iframe", "object",
                        "canvas", "video", "audio", "dialog", "nav", "footer", "button", "select", "textarea"})
#: the same furniture named by its ARIA role
_DROP_ROLES = frozenset({"navigation", "banner", "contentinfo", "search", "complementary"})
#: a <header> inside these is an article's or a section's (its title), not the site's banner
_HEADER_KEPT_IN = frozenset({"article", "main", "section"})
#: elements with no content and no end tag
_VOID_TAGS = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param",
                        "source", "track", "wbr"})
_BLOCK_TAGS = frozenset({"address", "article", "blockquote", "caption", "center", "dd", "details", "div", "dl",
                         "dt", "fieldset", "figcaption", "figure", "form", "header", "legend", "main", "p",
                         "section", "summary", "aside"})
_HEADINGS = {f"h{level}": level for level in range(1, 7)}
_LISTS = frozenset({"ul", "ol", "menu"})
#: an element's start tag closes an open one (``<li>a<li>b``): (the tags it closes, the tags it stops at)
_IMPLIED_END = {
    "li": (frozenset({"li"}), _LISTS),
    "dt": (frozenset({"dt", "dd"}), frozenset({"dl"})),
    "dd": (frozenset({"dt", "dd"}), frozenset({"dl"})),
    "tr": (frozenset({"tr", "td", "th"}), frozenset({"table"})),
    "td": (frozenset({"td", "th"}), frozenset({"tr", "table"})),
    "th": (frozenset({"td", "th"}), frozenset({"tr", "table"})),
    **{part: (frozenset({"tr", "td", "th", "thead", "tbody", "tfoot"}), frozenset({"table"}))
       for part in ("thead", "tbody", "tfoot")},
    "body": (frozenset({"head"}), frozenset()),
}
#: elements open at once at most; deeper start tags are read as text only (every walk of the open
#: elements stays this short: a hostile page's nesting made the parse quadratic)
_MAX_DEPTH = 512


class _Open(NamedTuple):
    """An open element: its tag, and what its start did (undone at its end)."""

    tag: str
    drops: bool = False  # its content is left out
    read: bool = False  # its start was read (not inside dropped content)
    main: bool = False
    article: bool = False
    form: bool = False
    in_code: bool = False  # it opened inside a <pre>: text of the code, no block of its own


_Attributes = dict[str, str | None]


class _TextExtractor(HTMLParser):
    """An HTML page as Markdown-like text: a heading as ``## Title``, a list item as ``- item``, a
    table row as ``| a | b |``, <pre> as fenced code, paragraphs between blank lines; the page's
    furniture (``_DROP_TAGS``, ``_DROP_ROLES``) left out. Also its first <title> and <h1>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title: str | None = None
        self.h1: str | None = None
        self.page_forms: set[int] = set()  # the forms that hold the page (ASP.NET wraps every page in one)
        self._capture: tuple[str, list[str]] | None = None  # the <title> or first <h1> being read
        self._open: list[_Open] = []
        #: how many of each tag are open: a stray end tag or a <header> costs no walk of the stack
        self._counts: dict[str, int] = {}
        self._dropped = 0  # open elements whose content is left out
        self._main = self._article = self._forms = 0
        self._form: int | None = None
        self.root = self.flow = Flow(self._where)
        self._tables: list[Table] = []
        self._lists: list[int | None] = []  # each open list's next number (None: a bulleted list)
        self._heading: str | None = None
        self._pre: list[str] | None = None
        self._starts: dict[str, Callable[[str, _Attributes], None]] = {
            **dict.fromkeys(_HEADINGS, self._start_heading), **dict.fromkeys(_LISTS, self._start_list),
            "pre": self._start_pre, "li": self._start_item, "table": self._start_table, "tr": self._start_row,
            "td": self._start_cell, "th": self._start_cell}
        self._ends: dict[str, Callable[[str], None]] = {
            **dict.fromkeys(_HEADINGS, self._end_heading), **dict.fromkeys(_LISTS, self._end_list),
            "pre": self._end_pre, "li": self._end_item, "table": self._end_table, "tr": self._end_row,
            "td": self._end_cell, "th": self._end_cell}

    def _where(self) -> Where:
        return Where(self._main > 0, self._article > 0, self._form)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self._capture_start(tag)
        self._end_implied(tag)
        if tag in _VOID_TAGS:
            if not self._dropped:
                self._void(tag)
            return
        if len(self._open) >= _MAX_DEPTH:  # a hostile page's 20,000 nested <div>s: their text still reads
            return
        drops = self._drops(tag, attributes)
        read = not self._dropped and not drops
        roles = (attributes.get("role") or "").lower().split()
        entry = _Open(tag, drops, read, main=read and (tag == "main" or "main" in roles),
                      article=read and tag == "article", form=read and tag == "form" and self._form is None,
                      in_code=self._pre is not None)
        self._open.append(entry)
        self._counts[tag] = self._counts.get(tag, 0) + 1
        if drops:
            self._dropped += 1
            self.flow.words.append(" ")
        if read:
            self._enter(entry, attributes)

    def handle_endtag(self, tag: str) -> None:
        self._capture_end(tag)
        if not self._counts.get(tag):  # not open: nothing to close
            return
        for n in range(len(self._open) - 1, -1, -1):
            if self._open[n].tag == tag:
                self._close_from(n)
                return

    def handle_data(self, data: str) -> None:
        if self._capture is not None:
            self._capture[1].append(data)
        if self._dropped:
            return
        if self._pre is not None:
            self._pre.append(data)
        else:
            self.flow.words.append(data)

    def text(self) -> str:
        """The page's text, once it is all fed: its <main> (or <article>s) where that holds its text."""
        self._close_from(0)
        self.root.end_paragraph()
        return page_text(self.root.lines, self.page_forms)

    def _drops(self, tag: str, attributes: _Attributes) -> bool:
        if tag in _DROP_TAGS or _DROP_ROLES.intersection((attributes.get("role") or "").lower().split()):
            return True
        if tag == "header":  # the site's banner, unless it is an article's or a section's (its title)
            return not (self._main or any(self._counts.get(kept) for kept in _HEADER_KEPT_IN))
        if tag == "aside":  # a sidebar, unless it is a note inside an article
            return not self._article
        return False

    def _capture_start(self, tag: str) -> None:
        if tag == "title" and self.title is None and not self._counts.get("svg"):
            self._capture = ("title", [])  # an <svg>'s <title> names an icon, not the page
        elif tag == "h1" and self.h1 is None and self._capture is None:
            self._capture = ("h1", [])

    def _capture_end(self, tag: str) -> None:
        if self._capture is not None and self._capture[0] == tag:
            text = " ".join("".join(self._capture[1]).split())
            if tag == "title":
                self.title = text
            else:
                self.h1 = text
            self._capture = None

    def _end_implied(self, tag: str) -> None:
        """Close what ``tag``'s start closes (``<li>a<li>b``: the first item)."""
        closes, stops = _IMPLIED_END.get(tag, (frozenset(), frozenset()))
        for n in range(len(self._open) - 1, -1, -1):
            if self._open[n].tag in stops:
                return
            if self._open[n].tag in closes:
                self._close_from(n)
                return

    def _close_from(self, n: int) -> None:
        """Close the open elements from the ``n``-th up (an end tag closes those left open inside it)."""
        while len(self._open) > n:
            entry = self._open.pop()
            self._counts[entry.tag] -= 1
            if entry.drops:
                self._dropped -= 1
            if entry.read:
                self._main -= entry.main
                self._article -= entry.article
                if entry.form:
                    self._form = None
                if not entry.in_code:
                    self._ends.get(entry.tag, self._end_block)(entry.tag)

    def _enter(self, entry: _Open, attributes: _Attributes) -> None:
        self._main += entry.main
        self._article += entry.article
        if entry.form:
            self._forms += 1
            self._form = self._forms
        if self._form is not None and (entry.main or entry.article or entry.tag in ("h1", "h2")):
            self.page_forms.add(self._form)
        if not entry.in_code:
            self._starts.get(entry.tag, self._start_block)(entry.tag, attributes)

    def _void(self, tag: str) -> None:
        if tag == "br":
            if self._pre is not None:
                self._pre.append("\n")
            elif self._heading:
                self.flow.words.append(" ")
            else:
                self.flow.end_line()
        elif tag == "hr":
            self._block()

    def _block(self) -> None:
        if self._heading:  # a <div> or <br> inside a heading: still one line
            self.flow.words.append(" ")
        elif self._pre is None:
            self.flow.block()

    def _start_block(self, tag: str, attributes: _Attributes) -> None:
        if tag in _BLOCK_TAGS or tag in ("tr", "td", "th"):
            self._block()

    def _end_block(self, tag: str) -> None:
        self._start_block(tag, {})

    def _start_heading(self, tag: str, attributes: _Attributes) -> None:
        if self._heading or self.flow.indent:  # a heading in a list item is a line of it
            self._block()
            return
        self.flow.end_paragraph()
        self.flow.prefix = "#" * _HEADINGS[tag] + " "
        self._heading = tag

    def _end_heading(self, tag: str) -> None:
        if self._heading != tag:
            self._block()
            return
        # a documentation generator's permalink after the title ("Installation¶") is no word of it
        self.flow.words = ["".join(self.flow.words).strip().rstrip("¶§").strip()]
        self.flow.end_line()
        self.flow.prefix, self._heading = self.flow.indent, None
        self.flow.end_paragraph()

    def _start_pre(self, tag: str, attributes: _Attributes) -> None:
        self.flow.end_paragraph()
        self._pre = []

    def _end_pre(self, tag: str) -> None:
        self.flow.code("".join(self._pre or []))
        self._pre = None

    def _start_list(self, tag: str, attributes: _Attributes) -> None:
        self._block()
        start = (attributes.get("start") or "1").strip()
        # "²" is a digit int() refuses, and 5,000 digits pass Python's limit: either failed the page
        number = int(start) if start.isascii() and start.isdigit() and len(start) < 10 else 1
        self._lists.append(number if tag == "ol" else None)

    def _end_list(self, tag: str) -> None:
        if self._lists:
            self._lists.pop()
        self._block()

    def _start_item(self, tag: str, attributes: _Attributes) -> None:
        self.flow.end_line()
        number = self._lists[-1] if self._lists else None
        if number is not None:
            self._lists[-1] = number + 1
        depth = max(len(self._lists), 1)
        self.flow.prefix = "  " * (depth - 1) + ("- " if number is None else f"{number}. ")
        self.flow.indent = "  " * depth

    def _end_item(self, tag: str) -> None:
        self.flow.end_line()
        self.flow.prefix = self.flow.indent = "  " * (len(self._lists) - 1)

    def _start_table(self, tag: str, attributes: _Attributes) -> None:
        self.flow.end_paragraph()
        self._tables.append(Table(self.flow))

    def _end_table(self, tag: str) -> None:
        if self._tables:
            table = self._tables.pop()
            self.flow = table.outer
            table.write()

    def _start_row(self, tag: str, attributes: _Attributes) -> None:
        if self._tables:
            self._tables[-1].rows.append([])
        else:
            self._block()

    def _end_row(self, tag: str) -> None:
        if not self._tables:
            self._block()

    def _start_cell(self, tag: str, attributes: _Attributes) -> None:
        if not self._tables:
            self._block()
            return
        table = self._tables[-1]
        if not table.rows:
            table.rows.append([])
        self.flow = Flow(self._where)
        table.rows[-1].append((self.flow, tag == "th"))

    def _end_cell(self, tag: str) -> None:
        if self._tables:
            self.flow.end_paragraph()
            self.flow = self._tables[-1].outer
        else:
            self._block()



def html_to_text(html: str) -> tuple[str, str | None]:
    """The text of an HTML page as Markdown (``_TextExtractor``: headings, list items, table rows,
    code; no menus, banners, footers or scripts) and its title (its <title>, else its first <h1>), if any."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return parser.text(), (parser.title or parser.h1 or None)
