"""Plain text and a title out of Markdown, text and HTML, with the standard library only."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

_SKIP_TAGS = {"script", "style", "noscript", "template", "svg", "head", "iframe", "object"}
_BLOCK_TAGS = {
    "p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article", "header", "footer",
    "h1", "h2", "h3", "h4", "h5", "h6", "pre", "blockquote", "main", "nav", "aside", "dd", "dt",
}


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip_depth = 0
        self.title: str | None = None
        self.h1: str | None = None
        self._in_title = False
        self._in_h1 = False
        self._buffer: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title, self._buffer = True, []
        elif tag == "h1" and self.h1 is None:
            self._in_h1, self._buffer = True, []
        if tag in _SKIP_TAGS:
            self.skip_depth += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title" and self._in_title:
            self.title, self._in_title = " ".join("".join(self._buffer).split()), False
        elif tag == "h1" and self._in_h1:
            self.h1, self._in_h1 = " ".join("".join(self._buffer).split()), False
        if tag in _SKIP_TAGS and self.skip_depth:
            self.skip_depth -= 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title or self._in_h1:
            self._buffer.append(data)
        if not self.skip_depth:
            self.parts.append(data)


def html_to_text(html: str) -> tuple[str, str | None]:
    """Visible text of an HTML page (scripts and styles dropped) and its title, if any."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    text = "".join(parser.parts)
    lines = (" ".join(line.split()) for line in text.splitlines())
    body = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return body, (parser.title or parser.h1 or None)


_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def document_text(path: Path, raw: bytes) -> tuple[str, str]:
    """(title, body) of one file: first heading or <title>, else the file name."""
    text = raw.decode("utf-8", errors="replace")
    title: str | None = None
    if path.suffix.lower() in (".html", ".htm"):
        text, title = html_to_text(text)
    elif path.suffix.lower() in (".md", ".markdown"):
        match = _MD_HEADING.search(text)
        title = match.group(1).strip() if match else None
    else:
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        title = first[:120] if 0 < len(first) <= 120 and not first.endswith(".") else None
    return (title or path.stem.replace("_", " ").replace("-", " ")), text
