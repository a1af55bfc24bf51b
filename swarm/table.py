"""A plain text table for the terminal: the header, a rule, one line per row, columns padded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TextIO


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]], stream: TextIO) -> None:
    """``header`` and ``rows`` (cells as text) in padded columns, no trailing spaces."""
    lines = [tuple(header), *(tuple(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for n, line in enumerate(lines):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip(), file=stream)
        if n == 0:
            print("  ".join("-" * w for w in widths), file=stream)
