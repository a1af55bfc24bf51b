"""The Markdown structure a report is checked within: code fences, hard-wrapped paragraphs,
list and quote prefixes, headings.

``rewrite_sentences`` walks a report line by line and hands each prose sentence to a ``keep``
test, leaving code blocks as they are; ``drop_empty_sections`` then removes the headings left
with nothing under them. ``grounding`` decides what to keep; this module only knows the layout.

Code between a fence line (only ```, and a language word when it opens) and a closing one is
not a claim and is left as it is. A line that merely opens with inline ```code``` is prose; a
fence that never closes is dropped, and the lines after it are checked as prose.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence

from core.cjk import join_text
from graphs.research.citations import join_sentences, split_sentences
from graphs.research.passages import ends_lead_in

_PREFIX = re.compile(r"^(\s*(?:>\s*)*(?:(?:[-*+]|\d+[.)])\s+)?)")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s")
_LIST_ITEM = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
#: a code fence: a line that is only ``` and, when it opens a block, a language word
_FENCE_OPEN = re.compile(r"^\s*```\s*[\w+#.-]*\s*$")
_FENCE_CLOSE = re.compile(r"^\s*```\s*$")


def _fenced(lines: Sequence[str]) -> list[bool]:
    """For each line, whether it is a fence of a code block that closes. A line opening with
    inline code (```x``` text) is no fence; a fence that never closes is no fence either, so
    the lines after it are read as prose (and checked) rather than hidden as code."""
    marks = [False] * len(lines)
    opened: int | None = None
    for i, line in enumerate(lines):
        if opened is None and _FENCE_OPEN.match(line):
            opened = i
        elif opened is not None and _FENCE_CLOSE.match(line):
            marks[opened] = marks[i] = True
            opened = None
    return marks


def _block_start(line: str) -> bool:
    """A line that begins a block of its own: blank, heading, list item, quote, table, fence."""
    stripped = line.strip()
    return not stripped or bool(_HEADING.match(line) or _LIST_ITEM.match(line)) or stripped[0] in ">|`"


def _reflow(text: str) -> list[str]:
    """Lines with hard-wrapped paragraphs and list items joined (without a space inside CJK
    text: ``cjk.join_text``), so a sentence is never cut from the citation at its end; code
    blocks are left as they are."""
    lines: list[str] = []
    in_code = joinable = False
    raw = text.splitlines()
    for line, fence in zip(raw, _fenced(raw), strict=True):
        if fence:
            in_code = not in_code
            lines.append(line)
            joinable = False
            continue
        if not in_code and _FENCE_OPEN.match(line):  # a fence that never closes: the marker goes
            joinable = False
            continue
        if joinable and not in_code and not _block_start(line):
            lines[-1] = join_text(lines[-1].rstrip(), line.strip())
            continue
        lines.append(line)
        joinable = not in_code and bool(line.strip()) and not _HEADING.match(line) and line.strip()[0] not in "|`"
    return lines


def rewrite_sentences(text: str, keep: Callable[[str], bool | str], keep_line: Callable[[str], bool] | None = None) -> str:
    """``text`` with the sentences ``keep`` refuses taken out (a line left empty goes too), and
    those it returns a string for put as that string.

    Code blocks (between fences that close) are kept as they are; headings go to ``keep_line`` only.
    """
    out: list[str] = []
    in_code = False
    lines = _reflow(text)
    for line, fence in zip(lines, _fenced(lines), strict=True):
        if fence:
            in_code = not in_code
            out.append(line)
            continue
        if in_code or not line.strip() or set(line.strip()) <= set("|-: =*_"):
            out.append(line)
            continue
        if _HEADING.match(line):
            if keep_line is None or keep_line(line):
                out.append(line)
            continue
        if keep_line is not None and not keep_line(line):
            continue
        prefix = _PREFIX.match(line).group(1)  # type: ignore[union-attr]
        kept = [s if said is True else said for s in split_sentences(line[len(prefix):]) if (said := keep(s))]
        if kept:
            out.append(prefix + join_sentences(kept))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(_drop_orphan_separators(out))).strip() + "\n"



def dangling_lead_ins(text: str) -> set[str]:
    """The sentences that end a line as a lead-in (``ends_lead_in``) and lead into nothing: after
    them comes only a heading, or the end of the text. Such a sentence is a statement cut short,
    not a lead-in (a keyless writer's whole invented report was one, and read as no claim at all)."""
    found: set[str] = set()
    in_code = False
    lines = _reflow(text)
    for index, (line, fence) in enumerate(zip(lines, _fenced(lines), strict=True)):
        if fence:
            in_code = not in_code
            continue
        if in_code or not line.strip() or _HEADING.match(line):
            continue
        prefix = _PREFIX.match(line).group(1)  # type: ignore[union-attr]
        sentences = split_sentences(line[len(prefix):])
        if not sentences or not ends_lead_in(sentences[-1]):
            continue
        after = next((later for later in lines[index + 1:] if later.strip()), None)
        if after is None or _HEADING.match(after):
            found.add(sentences[-1])
    return found

_TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?\s*$")


def _drop_orphan_separators(lines: Sequence[str]) -> list[str]:
    """``lines`` without a table's ``|---|---|`` row once the header row above it is gone
    (removed as a sentence): alone it draws nothing, or a rule, and says nothing."""
    kept: list[str] = []
    for line in lines:
        if "|" in line and _TABLE_SEPARATOR.match(line) and not (kept and "|" in kept[-1]):
            continue
        kept.append(line)
    return kept


def _heading_level(line: str) -> int | None:
    match = _HEADING.match(line)
    return len(match.group(1)) if match else None


def drop_empty_sections(text: str) -> str:
    """Remove headings left with nothing under them before the next heading of their level."""
    lines = text.splitlines()

    def body_follows(index: int, level: int) -> bool:
        for line in lines[index + 1 :]:
            found = _heading_level(line)
            if found is not None:
                if found <= level:
                    return False
                continue
            if line.strip():
                return True
        return False

    kept: Iterator[str] = (
        line for i, line in enumerate(lines) if (level := _heading_level(line)) is None or body_follows(i, level)
    )
    return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip() + "\n"
