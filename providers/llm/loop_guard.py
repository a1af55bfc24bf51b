"""Stop a free-text answer where the model starts repeating itself.

A small local model (the bundled 135M one) can fall into a loop: the same sentence, or the same
few sentences, over and over until its token limit. On 2 cores that is 20-30 s of output that the
research check then removes as repeats. A model with ``stop_on_loop`` (config) has its free-text
answers streamed through ``LoopGuard``, which ends the stream when a sentence of at least
``MIN_CHARS`` characters comes round the ``REPEATS``-th time; the answer keeps what came before
that sentence's second occurrence, so one copy of the repeated passage stays. Closing the stream
stops the generation too: llama-cpp-python's server checks for a gone client after every token.
"""

from __future__ import annotations

import re

#: shorter sentences ("Yes.", "}", "- item") may legitimately recur
MIN_CHARS = 16
#: the occurrence of one sentence that ends the answer
REPEATS = 3
#: a sentence ends at . ! or ? before white space, or at a line break
_END = re.compile(r"[.!?](?=\s)|\n")
_SPACE = re.compile(r"\s")


class LoopGuard:
    """Fed a streamed answer piece by piece; says when it loops and where to cut it.

    Args:
        min_chars: the shortest sentence (white space collapsed) that counts.
        repeats: the occurrence of one sentence that is a loop.
    """

    def __init__(self, min_chars: int = MIN_CHARS, repeats: int = REPEATS) -> None:
        self.min_chars = min_chars
        self.repeats = repeats
        self.text = ""
        self.cut: int | None = None  # where the answer ends, once a loop is found
        self._next = 0  # where the next sentence starts
        self._starts: dict[str, list[int]] = {}  # sentence (normalised) -> where each occurrence starts

    def feed(self, piece: str) -> bool:
        """Add ``piece``; ``True`` once the answer loops (``answer`` is then cut before the loop)."""
        if self.cut is not None:
            return True
        self.text += piece
        for match in _END.finditer(self.text, self._next):
            start, self._next = self._next, match.end()
            key = " ".join(self.text[start:self._next].split()).lower()
            if len(key) < self.min_chars:
                continue
            starts = self._starts.setdefault(key, [])
            starts.append(start)
            if len(starts) >= self.repeats:
                self.cut = self._unit_start(starts[0], starts[1])
                return True
        return False

    def _unit_start(self, first: int, second: int) -> int:
        """Where the second copy of the repeated passage starts: the sentence's second occurrence,
        moved back over what precedes both occurrences alike (the loop's other sentences), to a
        word boundary."""
        period, cut, text = second - first, second, self.text
        while cut - period > 0 and text[cut - 1] == text[cut - 1 - period]:
            cut -= 1
        if cut < second and not text[cut - 1].isspace():
            space = _SPACE.search(text, cut, second)
            cut = space.end() if space else second
        return cut

    @property
    def answer(self) -> str:
        """The text so far, without the loop once one was found."""
        return self.text if self.cut is None else self.text[: self.cut].rstrip()

    @property
    def dropped_chars(self) -> int:
        """Characters of repeats cut off the end."""
        return len(self.text) - len(self.answer) if self.cut is not None else 0
