"""Plain text and a title out of Markdown, text and HTML, with the standard library only."""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from providers.web.html import html_to_text

__all__ = ["NotText", "decode_text", "document_text", "first_line_title", "html_to_text"]

_MD_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
#: a line that is no title: an RST adornment (``=====``), directive, option or comment
#: (``.. image::``, ``:alt: logo``), a Markdown image or linked badge
_NOT_A_TITLE = re.compile(r"^(?:([=\-~^\"'`#*+:._])\1{2,}|:[\w -]+:(?:\s.*)?|\.\.(?:\s.*)?|\[?!\[.*)$")
#: an RST substitution reference (``|pypi|``): a row of them is badges
_SUBSTITUTION = re.compile(r"\|[^|\s][^|]*\|")


def _no_title(line: str) -> bool:
    return not line or bool(_NOT_A_TITLE.match(line)) or not _SUBSTITUTION.sub("", line).strip(" |")


def first_line_title(text: str, most: int = 120) -> str | None:
    """The first line of ``text`` that reads as its title, when it is short, no sentence, and
    stands alone (a blank line or an underline after it); None otherwise. Markup is no title
    (``_NOT_A_TITLE``): pluggy's README was titled "=====...", websockets' ".. image:: logo/horizontal.svg",
    and pytest's a wrapped sentence, "The ``pytest`` framework makes it easy to write small tests, yet"."""
    lines = [line.strip() for line in text.splitlines()[:200]]
    for n, line in enumerate(lines):
        if _no_title(line):
            continue
        after = lines[n + 1] if n + 1 < len(lines) else ""
        alone = not after or line.startswith("# ") or bool(_NOT_A_TITLE.match(after) and set(after) <= set("=-~^\"'`#*+:._"))
        return line[:most] if 0 < len(line) <= most and not line.endswith(".") and alone else None
    return None


#: byte-order marks, longest first (a UTF-32 LE mark starts with UTF-16 LE's)
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
#: control characters a text file does not hold (tab, newlines, form feed and escape aside; a stray NUL
#: is taken out, and UTF-16 is read before this counts)
_CONTROL = re.compile(r"[\x01-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f]")
#: the share of control characters over which bytes are not text but a binary file named .txt
_BINARY_SHARE = 0.02


class NotText(ValueError):
    """Bytes that no text encoding reads: a binary file under a text file's name."""


def decode_text(raw: bytes) -> str:
    """The text of a file's bytes: the encoding its byte-order mark names (UTF-8, UTF-16 as
    Windows Notepad saves "Unicode", UTF-32), else UTF-8 (a stray invalid byte read as U+FFFD),
    else Windows-1252 (the Latin-1 that "café" in an old Windows file is written in); NULs taken out.

    Raises:
        NotText: the bytes are a binary file's (control characters past ``_BINARY_SHARE``).
    """
    encoding = next((name for bom, name in _BOMS if raw.startswith(bom)), None)
    if encoding is None and len(raw) >= 4 and raw.count(0) * 4 >= len(raw) and raw[1::2].count(0) * 2 >= len(raw) // 2:
        encoding = "utf-16-le"  # UTF-16 without a mark: every other byte of ASCII text is NUL
    if encoding is not None:
        text = raw.decode(encoding, errors="replace")
    else:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            # UTF-8 with a stray byte stays UTF-8 (one U+FFFD, not "CafÃ©" throughout); bytes that
            # are mostly not UTF-8 are an old Windows file's
            text = raw.decode("utf-8", errors="replace")
            bad = text.count("\ufffd")
            if sum(1 for ch in text if ord(ch) > 127 and ch != "\ufffd") <= bad:
                text = raw.decode("cp1252", errors="replace")
    if text and len(_CONTROL.findall(text)) > _BINARY_SHARE * len(text):
        raise NotText("it is not text (control bytes throughout: a binary file?)")
    return text.replace("\x00", "")


def document_text(path: Path, raw: bytes) -> tuple[str, str]:
    """(title, body) of one file: first heading or <title>, else the file name.

    Raises:
        NotText: the file is not text (``decode_text``).
    """
    text = decode_text(raw)
    title: str | None = None
    if path.suffix.lower() in (".html", ".htm"):
        text, title = html_to_text(text)
    elif path.suffix.lower() in (".md", ".markdown"):
        match = _MD_HEADING.search(text)
        title = match.group(1).strip() if match else None
    else:
        title = first_line_title(text)
    return (title or path.stem.replace("_", " ").replace("-", " ")), text
