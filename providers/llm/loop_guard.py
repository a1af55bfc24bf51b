"""Stop a free-text answer where the model starts repeating itself.

A small local model (the bundled 135M one) can fall into a loop: the same sentence, or the same
few sentences, over and over until its token limit. On 2 cores that is 20-30 s of output that the
research check then removes as repeats. A model with ``stop_on_loop`` (config) has its free-text
answers streamed through ``LoopGuard``, which ends the stream when a sentence of at least
``MIN_CHARS`` characters comes round the ``REPEATS``-th time; the answer keeps what came before
that sentence's second occurrence, so one copy of the repeated passage stays. Closing the stream
stops the generation too: llama-cpp-python's server checks for a gone client after every token.

Sentences are compared by their words and numbers (case, punctuation, spacing and citation
markers such as ``[2]`` aside), so "Rivers flow. [1]" and "rivers flow [2]" are one sentence. Two
loops never end a sentence and are caught at the end of the text instead (``_tail_loop``): a
run-on one ("and the river flows and the river flows and ..." with no full stop) and one of
short lines ("- Paris\n- London\n" over and over): the same run of words, back to back, at the
end of the answer, ``REPEATS`` times over at least ``TAIL_CHARS`` characters (``TAIL_REPEATS``
times where the run is shorter than ``MIN_CHARS``); one copy stays.
"""

from __future__ import annotations

import re

#: shorter sentences ("Yes.", "}", "- item") may legitimately recur
MIN_CHARS = 16
#: the occurrence of one sentence that ends the answer
REPEATS = 3
#: a run of words repeated back to back at the end of the text is a loop once its copies span this
#: many characters ...
TAIL_CHARS = 3 * MIN_CHARS
#: ... and come this often (a run shorter than MIN_CHARS: "ha ha ha" or "- one" thrice is no loop)
TAIL_REPEATS = 6
#: the longest run (in words) looked for at the end of the text
TAIL_MAX_WORDS = 60
#: a sentence ends at . ! or ? before white space, or at a line break
_END = re.compile(r"[.!?](?=\s)|\n")
_SPACE = re.compile(r"\s")
_WORD = re.compile(r"[^\W_]+")
_CITATION = re.compile(r"\[\s*\d+(?:\s*[,;-]\s*\d+)*\s*\]")


def sentence_key(sentence: str) -> str:
    """What a sentence is compared by: its words and numbers, lower case, citation markers aside."""
    return " ".join(_WORD.findall(_CITATION.sub(" ", sentence).lower()))


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
        self._words: list[tuple[str, int]] = []  # the tail's complete words (lower case) and where each starts
        self._scanned = 0  # where the next word may start

    def feed(self, piece: str) -> bool:
        """Add ``piece``; ``True`` once the answer loops (``answer`` is then cut before the loop)."""
        if self.cut is not None:
            return True
        self.text += piece
        for match in _END.finditer(self.text, self._next):
            start, self._next = self._next, match.end()
            sentence = self.text[start:self._next]
            key = sentence_key(sentence)
            if len(" ".join(sentence.split())) < self.min_chars or not key:
                continue
            starts = self._starts.setdefault(key, [])
            starts.append(start)
            if len(starts) >= self.repeats:
                self.cut = self._unit_start(starts[0], starts[1])
                return True
        self.cut = self._tail_loop()
        return self.cut is not None

    def _tail_loop(self) -> int | None:
        """Where the second copy starts if the text ends in one run of words back to back (a
        loop that never ends a sentence), else ``None``. Only complete words count."""
        added = False
        for match in _WORD.finditer(self.text, self._scanned):
            if match.end() == len(self.text):  # the word may go on in the next piece
                break
            self._words.append((match.group().lower(), match.start()))
            self._scanned, added = match.end(), True
        if not added:
            return None
        keys = [key for key, _ in self._words]
        del self._words[: max(0, len(keys) - TAIL_MAX_WORDS * TAIL_REPEATS)]  # older words cannot be in a new loop
        keys = [key for key, _ in self._words]
        n = len(keys)
        for period in range(1, min(TAIL_MAX_WORDS, n // self.repeats) + 1):
            first = n - period  # start of the last copy; walk back while the copies agree
            while first > 0 and keys[first - 1] == keys[first - 1 + period]:
                first -= 1
            copies = (n - first) // period
            if copies < self.repeats:
                continue
            start = n - copies * period
            first_at, second_at = self._words[start][1], self._words[start + period][1]
            if not any(not key.isdigit() for key in keys[start : start + period]):
                continue  # numbers alone ("0 0 0 ...") may be data
            if len(self.text) - first_at >= TAIL_CHARS and (second_at - first_at >= self.min_chars or copies >= TAIL_REPEATS):
                return self._unit_start(first_at, second_at)
        return None

    def _unit_start(self, first: int, second: int) -> int:
        """Where the second copy of the repeated passage starts: the sentence's (or run's) second
        occurrence, moved back over what precedes both occurrences alike (the loop's other
        sentences, a list's dash), to a word boundary."""
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
