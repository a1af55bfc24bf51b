"""reStructuredText, which Python projects' READMEs and docs are written in, read as the lines
``quoting.flatten`` takes for Markdown: its markup (directives, link targets, comments, titles'
adornments, inline references and roles) out, its prose and code kept.
"""

from __future__ import annotations

import re

#: a directive line (``.. image:: url``), a link target (``.. _name: url``, ``__ url``), a comment (``..``), a field
#: option of a directive (``:target: url``) and an adornment line (a title's under- or overline)
_RST_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+([\w:-]+)::(.*)$")
_RST_TARGET = re.compile(r"^\s*(?:\.\.\s+_[^:]*:|__\s)")
_RST_COMMENT = re.compile(r"^(\s*)\.\.(?:\s|$)")
_RST_OPTION = re.compile(r"^\s+:[\w -]+:(?:\s|$)")
_RST_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+:._])\1{2,}\s*$")
#: directives whose body is prose (admonitions): their text is kept; of the others only code is
_RST_PROSE = frozenset({"note", "warning", "tip", "hint", "important", "attention", "caution", "danger", "error",
                        "admonition", "seealso", "versionadded", "versionchanged", "deprecated", "topic", "sidebar"})
_RST_CODE = frozenset({"code", "code-block", "sourcecode", "doctest"})
#: inline references and roles: `text <url>`_, `text`__, word_, :role:`text`
_RST_LINK = re.compile(r"(?<!`)`([^`<>]+?)(?:\s*<[^>`]*>)?`__?(?![\w`])")
_RST_WORD_REF = re.compile(r"(?<![\w`/])([A-Za-z][A-Za-z0-9]*)__?(?=[\s.,;:!?)]|$)")
_RST_ROLE = re.compile(r":[\w-]+(?::[\w-]+)?:(`[^`]+`)")
#: what says a text is reStructuredText: a directive, a link target, a literal block's ``::``, a
#: reference (```DiskCache`_``)
_RST_SIGNS = re.compile(r"^\s*\.\.\s+(?:[\w:-]+::|_)|^__\s|\S::\s*$|^::\s*$|(?<!`)`[^`\n]+`__?(?![\w`])", re.MULTILINE)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def rst_lines(lines: list[str]) -> list[str]:
    """reStructuredText's markup out of ``lines``, as ``quoting.flatten`` then reads them: a directive with
    its options and body left out (a badge's ``.. image::``), an admonition's body kept as prose,
    a code block (``.. code-block::``, a paragraph ending ``::``) fenced with backticks, link
    targets and comments left out, a title and its adornment made one ATX heading line (a ``~~~``
    underline had opened a code fence and turned the rest of the passage into code)."""
    reader = _RstReader(lines)
    for n, line in enumerate(lines):
        reader.read(n, line)
    if reader.body is not None and reader.body[0] == "code":
        _close_code(reader.out)
    return reader.out


class _RstReader:
    """``rst_lines``'s state, one line at a time."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.out: list[str] = []
        self.body: tuple[str, int] | None = None  # inside a directive's body: "skip" or "code", and its indent
        self.literal = False  # the paragraph before ended with "::": the indented block after it is code
        self.options = False  # right after a directive line: its ``:name: value`` options, left out

    def read(self, n: int, line: str) -> None:
        if self.options and _RST_OPTION.match(line):
            return
        self.options = False
        if self._in_body(line) or self._literal_code(line) or self._markup(line):
            return
        stripped = line.strip()
        if _RST_ADORNMENT.match(stripped) and self._adornment(n, stripped):
            return
        if stripped.endswith("::"):
            self.literal = True
            line = line.rstrip()[:-2].rstrip()
            line = f"{line}:" if line.strip() else line
        self.out.append(line)

    def _in_body(self, line: str) -> bool:
        """The line belongs to the directive body open (kept as code, or left out); a line that
        ends it closes a code block."""
        if self.body is None:
            return False
        kind, indent = self.body
        if not line.strip() or _indent(line) > indent:
            if kind == "code" and line.strip():
                self.out.append(line.strip())
            return True
        if kind == "code":
            _close_code(self.out)
        self.body = None
        return False

    def _literal_code(self, line: str) -> bool:
        """The first line after a ``::`` paragraph: code when indented."""
        if not (self.literal and line.strip()):
            return False
        self.literal = False
        if _indent(line) == 0:
            return False
        self.out += ["```", line.strip()]
        self.body = ("code", 0)  # until the next line that is not indented
        return True

    def _markup(self, line: str) -> bool:
        """A directive, link target or comment: what it opens is read on."""
        if directive := _RST_DIRECTIVE.match(line):
            name = directive.group(2).lower()
            self.options = True
            if name in _RST_PROSE:  # its body follows, indented: prose, kept
                if directive.group(3).strip():
                    self.out.append(directive.group(3).strip())
                return True
            self.body = ("code" if name in _RST_CODE else "skip", _indent(line))
            if name in _RST_CODE:
                self.out.append("```")
            return True
        if _RST_TARGET.match(line):
            return True
        if comment := _RST_COMMENT.match(line):
            self.body = ("skip", len(comment.group(1)))
            return True
        return False

    def _adornment(self, n: int, stripped: str) -> bool:
        """An under- or overline of a title: the title becomes one heading line."""
        lines = self.lines
        above = lines[n - 1].strip() if n else ""
        below = lines[n + 1].strip() if n + 1 < len(lines) else ""
        if above and self.out and self.out[-1].strip() == above and not _RST_ADORNMENT.match(above):
            self.out[-1] = f"# {above}"  # an underline: the line above is a title
            return True
        # an overline: the title and its underline follow
        return bool(below and not _RST_ADORNMENT.match(below) and n + 2 < len(lines)
                    and _RST_ADORNMENT.match(lines[n + 2].strip()))


def _close_code(out: list[str]) -> None:
    """End the code block ``out`` ends in; one with no line (its code is in the next passage) is left out."""
    if out and out[-1] == "```":
        out.pop()
    else:
        out.append("```")


def rst_inline(line: str) -> str:
    """A prose line without reStructuredText's reference marks: `text <url>`_ and `text`__ read
    "text", xxHash_ reads "xxHash", :role:`text` reads `text`."""
    return _RST_WORD_REF.sub(r"\1", _RST_LINK.sub(r"\1", _RST_ROLE.sub(r"\1", line)))


def is_rst(text: str) -> bool:
    """``text`` is reStructuredText: it holds a directive, a link target, a literal block's ``::``
    or a reference (``_RST_SIGNS``)."""
    return _RST_SIGNS.search(text) is not None
