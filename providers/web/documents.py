"""Text out of the documents people keep: PDF, DOCX, PPTX, HTML, Markdown and plain text
(reStructuredText, AsciiDoc, Org and the other plain-text markups are read as text).

``extract(path, raw)`` returns the title and the text of each page (PDF pages, PPTX slides; one
"page" for the formats without pages). The parsers are small and pure Python on top of what the
worker already installs (pypdf; python-docx and python-pptx over lxml), and each is imported on
first use, so nothing here slows ``swarm-mcp``'s start. HTML goes through ``providers.web.text``,
the same extraction that reads web pages.

What cannot be read raises ``UnreadableDocument`` with the reason (corrupt, encrypted, a PDF with
no text layer); the same bytes give the same answer, so the index remembers it. A parser that
is not installed raises ``ConfigError`` naming the ``pip install`` to run.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import ConfigError, InputError
from core.rules import PAGE_BREAK
from providers.web.html import markdown_table as html_table
from providers.web.hyphenation import _unbroken, hyphenated_words, unbroken_pages
from providers.web.text import NotText, document_text

#: the largest file read, by format family: text is indexed whole, Office and PDF files are parsed
MAX_TEXT_BYTES = 5 * 1024 * 1024
MAX_DOCUMENT_BYTES = 100 * 1024 * 1024
_MAX_TITLE_CHARS = 120
#: formats the index does not read, and what to do about them (any other suffix it does not read
#: is named too: ``not_read_reason``)
UNSUPPORTED = {
    ".doc": "the legacy Word format is not read: save it as .docx",
    ".ppt": "the legacy PowerPoint format is not read: save it as .pptx",
}
#: text formats by suffix, and the kind ``swarm index stats`` counts them as; their markup is left in
#: (the research graph's passages know reStructuredText's and Markdown's headings)
TEXT_KINDS = {
    ".md": "markdown", ".markdown": "markdown", ".mdown": "markdown", ".mkd": "markdown",
    ".html": "html", ".htm": "html",
    ".txt": "text", ".text": "text",
    ".rst": "restructuredtext", ".rest": "restructuredtext",
    ".adoc": "asciidoc", ".asciidoc": "asciidoc",
    ".org": "org", ".textile": "textile", ".wiki": "wiki", ".mediawiki": "wiki", ".tex": "latex",
}
#: a document's own title line in the markups that ``first_line_title`` does not read
_OWN_TITLE = {
    "asciidoc": re.compile(r"^=[ \t]+(\S[^\n]*)$", re.MULTILINE),
    "org": re.compile(r"^#\+title:[ \t]*(\S[^\n]*)$", re.MULTILINE | re.IGNORECASE),
    "latex": re.compile(r"\\title\{([^}\n]+)\}"),
}


class UnreadableDocument(InputError):
    """A file that cannot be read as what its name says: corrupt, encrypted, or without text.

    ``kind`` is ``no_text`` for a PDF without a text layer (it wants OCR), else ``unreadable``.
    """

    def __init__(self, message: str, *, kind: str = "unreadable") -> None:
        self.kind = kind
        super().__init__(message)


@dataclass(frozen=True)
class Extracted:
    """What one file holds: its title and the text of each page."""

    title: str
    pages: tuple[str, ...]
    kind: str
    #: PDF and PPTX: page numbers are real (cited as ``p. N``); else one page standing for the file
    paged: bool = False
    #: pages with no text (a scanned page of a PDF, a picture-only slide)
    empty_pages: tuple[int, ...] = ()

    @property
    def body(self) -> str:
        """The text as indexed: pages joined by ``PAGE_BREAK`` when the document has pages."""
        return PAGE_BREAK.join(self.pages) if self.paged else "".join(self.pages)

    @property
    def note(self) -> str:
        """What the build should say about a document it did index (some pages without text)."""
        if not self.paged or not self.empty_pages:
            return ""
        unit = "slides" if self.kind == "pptx" else "pages"
        return f"{len(self.empty_pages)} of {len(self.pages)} {unit} have no text ({_spans(self.empty_pages)})"


def _spans(numbers: Iterable[int]) -> str:
    runs: list[list[int]] = []
    for n in sorted(numbers):
        if runs and n == runs[-1][-1] + 1:
            runs[-1].append(n)
        else:
            runs.append([n])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


#: the typographic ligatures a PDF font's glyphs come out as (U+FB00-FB06), written out, and the
#: soft hyphen (U+00AD) dropped: "conﬁguration" was another word than "configuration" to the
#: index and to the research's quote check
_TYPOGRAPHY = str.maketrans({"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl",
                             "\ufb05": "st", "\ufb06": "st", "\u00ad": None})


def _clean(text: str) -> str:
    """Page text with the page separator and NULs taken out, ligatures written out (``_TYPOGRAPHY``)
    and runs of blank lines shortened."""
    text = text.replace(PAGE_BREAK, "\n").replace("\x00", "").translate(_TYPOGRAPHY)
    return re.sub(r"\n[ \t]*\n(?:[ \t]*\n)+", "\n\n", text).strip()


_HEADING_WORDS = 8
_HEADING_CHARS = 60


def _looks_like_heading(line: str, before: str, after: str) -> bool:
    """A PDF line that is a heading: short, unpunctuated, on its own after a finished sentence (or
    at the top), and followed by a line that starts a sentence. A wrapped line fails the second
    test, a table cell usually the last."""
    return (
        0 < len(line) <= _HEADING_CHARS and len(line.split()) <= _HEADING_WORDS
        and line[-1] not in ".,;:!?-" and (line[0].isupper() or line[0].isdigit())
        and (not before or before[-1] in ".!?:") and after[:1].isupper()
    )


def _pdf_page_text(text: str, hyphenated: Collection[str] = frozenset()) -> str:
    """pypdf's lines of one page, with the lines that look like headings written as Markdown
    headings (``## Failure handling``) so a passage knows its section and a sentence does not run
    into the title above it, and the words justified text broke at a line's end whole again
    (``_unbroken``: "configu-" "ration" was in no search nor quote; ``hyphenated``: the compounds
    the document writes whole, which keep their hyphen)."""
    lines = [line.strip() for line in _clean(_unbroken(text, hyphenated)).splitlines()]
    following = [""] * len(lines)  # the next non-empty line after each (a slice per line was quadratic)
    for i in range(len(lines) - 2, -1, -1):
        following[i] = lines[i + 1] or following[i + 1]
    out: list[str] = []
    before = ""
    for line, after in zip(lines, following, strict=True):
        out.append(f"\n## {line}\n" if _looks_like_heading(line, before, after) else line)
        before = line or before
    return _clean("\n".join(out))


def _title(found: str | None, first_text: str, path: Path) -> str:
    """A document's own title, else its first short line, else its file name."""
    found = " ".join(str(found or "").split())
    if found:
        return found[:_MAX_TITLE_CHARS]
    from providers.web.text import first_line_title

    if first := first_line_title(first_text, _MAX_TITLE_CHARS):
        return first.lstrip("# ").strip() or path.stem
    return path.stem.replace("_", " ").replace("-", " ")


def _needs(module: str, package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"reading these files needs {package}: pip install {package}") from None


def _plain(path: Path, raw: bytes) -> Extracted:
    try:
        title, body = document_text(path, raw)
    except NotText as exc:
        raise UnreadableDocument(str(exc)) from None
    if not body.strip():
        raise UnreadableDocument("the file holds no text")
    kind = TEXT_KINDS.get(path.suffix.lower(), "text")
    own = _OWN_TITLE[kind].search(body) if kind in _OWN_TITLE else None
    if own:
        title = " ".join(own.group(1).split())[:_MAX_TITLE_CHARS]
    return Extracted(title=title, pages=(body,), kind=kind)


def _pdf(path: Path, raw: bytes) -> Extracted:
    pypdf = _needs("pypdf", "pypdf")
    from pypdf.errors import DependencyError, PyPdfError

    try:
        reader = pypdf.PdfReader(io.BytesIO(raw))
        if reader.is_encrypted and not reader.decrypt(""):
            raise UnreadableDocument("the PDF is encrypted with a password; save an unprotected copy")
        metadata_title = reader.metadata.title if reader.metadata else None
        pages = list(reader.pages)
    except DependencyError as exc:  # AES-encrypted: pypdf needs the cryptography package
        raise ConfigError(f"reading this PDF needs more than pypdf: {exc}") from None
    except (PyPdfError, RecursionError, NotImplementedError, ValueError, KeyError, TypeError, AttributeError) as exc:
        # a hostile file (a web source) makes pypdf raise more than its own errors: deep nesting, an
        # unknown encryption; one document unread, not a research job or an index build failed
        raise UnreadableDocument(f"not a readable PDF ({type(exc).__name__}: {exc})") from None
    raw_texts: list[str] = []
    failed: list[str] = []
    for number, page in enumerate(pages, start=1):
        try:
            raw_texts.append(page.extract_text() or "")
        except Exception as exc:  # one broken page must not lose the others; reported
            raw_texts.append("")
            failed.append(f"page {number}: {type(exc).__name__}: {exc}"[:200])
    hyphenated = hyphenated_words(raw_texts)
    texts = [_pdf_page_text(text, hyphenated) for text in unbroken_pages(raw_texts)]
    if not texts:
        raise UnreadableDocument("the PDF has no pages")
    if failed and not any(texts):
        raise UnreadableDocument(f"no page could be read ({failed[0]})")
    empty = tuple(i for i, text in enumerate(texts, start=1) if not text)
    if len(empty) == len(texts):
        raise UnreadableDocument(
            f"no text layer on any of its {len(texts)} page(s) (a scan, or drawings only): run OCR first"
            " (e.g. ocrmypdf) to index it",
            kind="no_text",
        )
    title = _title(metadata_title, next(t for t in texts if t), path)
    return Extracted(title=title, pages=tuple(texts), kind="pdf", paged=True, empty_pages=empty)


_DOCX_HEADING = re.compile(r"^Heading ([1-6])$")


def markdown_table(rows: list[list[str]]) -> str:
    """A DOCX or PPTX table as a Markdown one, its first row the header: "a | b" rows run three rows
    into one quoted "sentence" ("Secret | Rotation API tokens | 30 days TLS certificates | 365 days"),
    and the research quotes a Markdown table's rows one by one, naming each cell by its column.
    Empty rows are left out; "" when no row holds text."""
    rows = [row for row in rows if any(cell for cell in row)]
    if not rows:
        return ""
    width = max(len(row) for row in rows)
    return "\n".join(html_table([row + [""] * (width - len(row)) for row in rows]))


def _docx_blocks(document: Any) -> Iterator[str]:
    from docx.table import Table

    for item in document.iter_inner_content():
        if isinstance(item, Table):
            # a merged cell repeats in every cell it spans: kept once
            rows = [list(dict.fromkeys(" ".join(c.text.split()) for c in row.cells)) for row in item.rows]
            if table := markdown_table(rows):
                yield table
            continue
        text = " ".join(item.text.split())
        if not text:
            continue
        style = item.style.name if item.style is not None else ""
        heading = _DOCX_HEADING.match(style or "")
        if style == "Title" or heading:
            yield "#" * (int(heading.group(1)) if heading else 1) + " " + text
        elif (style or "").startswith("List"):
            yield "- " + text
        else:
            yield text


def _docx(path: Path, raw: bytes) -> Extracted:
    docx = _needs("docx", "python-docx")
    try:
        document = docx.Document(io.BytesIO(raw))
        blocks = list(_docx_blocks(document))
        own_title = document.core_properties.title
    except Exception as exc:  # python-docx raises many kinds on a broken file; reported
        raise UnreadableDocument(f"not a readable DOCX ({type(exc).__name__}: {exc})") from None
    body = "\n\n".join(blocks)
    if not body.strip():
        raise UnreadableDocument("the document holds no text")
    return Extracted(title=_title(own_title, body, path), pages=(body,), kind="docx")


def _shape_texts(shapes: Iterable[Any]) -> Iterator[str]:
    """Text of the shapes of a slide in reading order (top to bottom, left to right)."""
    from pptx.shapes.group import GroupShape

    for shape in sorted(shapes, key=lambda s: (s.top or 0, s.left or 0)):
        if isinstance(shape, GroupShape):
            yield from _shape_texts(shape.shapes)
        elif shape.has_table:
            if table := markdown_table([[" ".join(c.text.split()) for c in row.cells] for row in shape.table.rows]):
                yield table
        elif shape.has_text_frame:
            lines = [line for line in (" ".join(p.text.split()) for p in shape.text_frame.paragraphs) if line]
            # a frame of several paragraphs is a slide's bullets: each one its own item ("Ship
            # multi-region replication Cut p99 ingest latency below 250 ms" was quoted as one sentence)
            if len(lines) > 1:
                lines = [f"- {line}" for line in lines]
            if lines:
                yield "\n".join(lines)


def _slide_text(slide: Any) -> str:
    title_shape = slide.shapes.title
    title = " ".join(title_shape.text.split()) if title_shape is not None and title_shape.has_text_frame else ""
    others = [s for s in slide.shapes if title_shape is None or s.shape_id != title_shape.shape_id]
    blocks = list(_shape_texts(others))
    if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
        notes = " ".join(slide.notes_slide.notes_text_frame.text.split())
        if notes:
            blocks.append(f"Notes: {notes}")
    if title and blocks:
        blocks.insert(0, f"# {title}")
    elif title:
        blocks = [title]
    return _clean("\n\n".join(blocks))


def _pptx(path: Path, raw: bytes) -> Extracted:
    pptx = _needs("pptx", "python-pptx")
    try:
        deck = pptx.Presentation(io.BytesIO(raw))
        slides = tuple(_slide_text(slide) for slide in deck.slides)
        own_title = deck.core_properties.title
    except Exception as exc:  # python-pptx raises many kinds on a broken file; reported
        raise UnreadableDocument(f"not a readable PPTX ({type(exc).__name__}: {exc})") from None
    if not any(slides):
        raise UnreadableDocument(f"no text on any of its {len(slides)} slide(s)")
    empty = tuple(i for i, text in enumerate(slides, start=1) if not text)
    title = _title(own_title, next(s for s in slides if s), path)
    return Extracted(title=title, pages=slides, kind="pptx", paged=True, empty_pages=empty)


#: suffix -> reader; the table every format is chosen from
READERS: dict[str, Callable[[Path, bytes], Extracted]] = {
    **dict.fromkeys(TEXT_KINDS, _plain), ".pdf": _pdf, ".docx": _docx, ".pptx": _pptx,
}
SUFFIXES = frozenset(READERS)


def size_limit(path: Path) -> int:
    """The largest file of this format that is read."""
    return MAX_TEXT_BYTES if path.suffix.lower() in TEXT_KINDS else MAX_DOCUMENT_BYTES


def not_read_reason(path: Path) -> str | None:
    """Why the index does not read a file of this type (what to do about it where there is a fix),
    or None for a format it reads."""
    suffix = path.suffix.lower()
    if suffix in READERS:
        return None
    if suffix in UNSUPPORTED:
        return UNSUPPORTED[suffix]
    what = f"{suffix} files are" if suffix else "a file without a suffix is"
    return f"{what} not read (not a document format the index knows)"


def extract(path: Path, raw: bytes) -> Extracted:
    """Title and pages of the file at ``path`` whose bytes are ``raw``.

    Raises:
        UnreadableDocument: corrupt, encrypted, or without any text (the reason says which).
        ConfigError: the parser for this format is not installed (says what to install).
    """
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise UnreadableDocument(not_read_reason(path) or "")
    quiet = logging.getLogger("pypdf")  # its warnings about malformed PDFs would break a progress bar
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return reader(path, raw)
    finally:
        quiet.setLevel(level)
