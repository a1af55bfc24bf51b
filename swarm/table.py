"""A plain text table for the terminal: the header, a rule, one line per row, columns padded."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TextIO

#: the characters a terminal acts on rather than shows: C0 (ESC, newline, CR, BEL), DEL and C1 (CSI)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    """``text`` with each control character written as its escape (``\\x1b``, ``\\n``): an
    upstream's error text in a table cell (``swarm health``'s last error) or a log line drove the
    terminal (cleared it, retitled it) or began a forged line of its own."""
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]], stream: TextIO) -> None:
    """``header`` and ``rows`` (cells as text) in padded columns, no trailing spaces."""
    lines = [tuple(map(terminal_safe, header)), *(tuple(map(terminal_safe, row)) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for n, line in enumerate(lines):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip(), file=stream)
        if n == 0:
            print("  ".join("-" * w for w in widths), file=stream)
