"""Stop a free-text answer where the model starts repeating itself.

A small local model (the bundled 135M one) can fall into a loop: the same sentence, or the same
few sentences, over and over until its token limit. On 2 cores that is 20-30 s of output that the
research check then removes as repeats. A model with ``stop_on_loop`` (config) has its free-text
answers streamed through ``LoopGuard``, which ends the stream when a sentence of at least
``MIN_CHARS`` characters comes round the ``REPEATS``-th time; the answer keeps what came before
that sentence's second occurrence, so one copy of the repeated passage stays. Closing the stream
stops the generation too: llama-cpp-python's server checks for a gone client after every token.

Sentences are compared lower-cased, spacing collapsed, without a citation marker (`` [2]``, after
white space) and without their closing punctuation, so "Rivers flow [1]." and "rivers flow [2]!"
are one sentence; every other character counts (``a + 1`` is not ``a - 1``, ``buffer[0]`` not
``buffer[1]``). Two loops never end a sentence and are caught at the end of the text instead
(``_tail_loop``): a run-on one ("and the river flows and the river flows and ..." with no full
stop) and one of short lines ("- Paris\\n- London\\n" over and over): the same run of words and
symbols, back to back, at the end of the answer, ``REPEATS`` times over at least ``TAIL_CHARS``
characters (``TAIL_REPEATS`` times where the run is shorter than ``MIN_CHARS``), the run holding
a word (numbers and symbols alone may be data); one copy stays. Nothing inside a fenced code
block counts: code repeats itself by nature.
"""

from __future__ import annotations

import re

#: shorter sentences ("Yes.", "}", "- item") may legitimately recur
MIN_CHARS = 16
#: the occurrence of one sentence that ends the answer
REPEATS = 3
#: a run repeated back to back at the end of the text is a loop once its copies span this many
#: characters ...
TAIL_CHARS = 3 * MIN_CHARS
#: ... and come this often (a run shorter than MIN_CHARS: "ha ha ha" or "- one" thrice is no loop)
TAIL_REPEATS = 6
#: the longest run (in tokens: words and symbols) looked for at the end of the text
TAIL_MAX_TOKENS = 80
#: a sentence ends at . ! or ? before white space, or at a line break
_END = re.compile(r"[.!?](?=\s)|\n")
_SPACE = re.compile(r"\s")
#: a word, or one symbol: what the tail is compared by
_TOKEN = re.compile(r"[^\W_]+|[^\w\s]")
#: a citation marker: brackets of numbers after white space (``buffer[0]`` is code, not a citation)
_CITATION = re.compile(r"(?<=\s)\[\s*\d+(?:\s*[,;-]\s*\d+)*\s*\]")
#: a line that opens or closes a fenced code block
_FENCE = re.compile(r"^[ \t]{0,3}(?:```|~~~)", re.MULTILINE)


def sentence_key(sentence: str) -> str:
    """What a sentence is compared by: lower case, spacing collapsed, citation markers and the
    closing punctuation aside; every other character kept."""
    return " ".join(_CITATION.sub(" ", f" {sentence}").lower().split()).rstrip(".!?;:, ")


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
        #: pieces fed (one token each from a llama.cpp server): what a stream cut off midway was billed
        self.pieces = 0
        self.cut: int | None = None  # where the answer ends, once a loop is found
        self._next = 0  # where the next sentence starts
        self._starts: dict[str, list[int]] = {}  # sentence (normalised) -> where each occurrence starts
        self._tokens: list[tuple[str, int]] = []  # the tail's complete tokens (lower case) and where each starts
        self._scanned = 0  # where the next token may start
        self._since_word = 0  # tokens since the last one holding a letter
        self._fences: list[int] = []  # where each fence line found so far starts
        self._fence_scanned = 0  # fences are looked for in complete lines up to here

    def feed(self, piece: str) -> bool:
        """Add ``piece``; ``True`` once the answer loops (``answer`` is then cut before the loop)."""
        if self.cut is not None:
            return True
        self.pieces += 1
        self.text += piece
        self._scan_fences()
        for match in _END.finditer(self.text, self._next):
            start, self._next = self._next, match.end()
            sentence = self.text[start:self._next]
            if len(" ".join(sentence.split())) < self.min_chars or self._in_code(start):
                continue
            starts = self._starts.setdefault(sentence_key(sentence), [])
            starts.append(start)
            if len(starts) >= self.repeats:
                self.cut = self._unit_start(starts[0], starts[1])
                return True
        self.cut = self._tail_loop()
        return self.cut is not None

    def _scan_fences(self) -> None:
        end = self.text.rfind("\n") + 1  # complete lines only: a fence may still be arriving
        if end > self._fence_scanned:
            self._fences += [m.start() for m in _FENCE.finditer(self.text, self._fence_scanned, end)]
            self._fence_scanned = end

    def _in_code(self, position: int) -> bool:
        """Whether ``position`` lies inside a fenced code block (an odd number of fences before it)."""
        return sum(1 for fence in self._fences if fence < position) % 2 == 1

    def _tail_loop(self) -> int | None:
        """Where the second copy starts if the text ends in one run of tokens back to back (a
        loop that never ends a sentence), else ``None``. Only complete tokens count."""
        added = False
        for match in _TOKEN.finditer(self.text, self._scanned):
            token = match.group()
            if match.end() == len(self.text) and token[-1].isalnum():  # the word may go on
                break
            self._tokens.append((token.lower(), match.start()))
            self._since_word = 0 if any(c.isalpha() for c in token) else self._since_word + 1
            self._scanned, added = match.end(), True
        # a run without a letter (numbers, symbols: "0 0 0", "| --- |") may be data: a run of at
        # most `period` tokens holds a word only when one came in the last `period` tokens
        if not added or self._since_word >= TAIL_MAX_TOKENS or self._in_code(len(self.text)):
            return None
        del self._tokens[: max(0, len(self._tokens) - TAIL_MAX_TOKENS * (TAIL_REPEATS + 1))]
        keys = [key for key, _ in self._tokens]
        n = len(keys)
        for period in range(self._since_word + 1, min(TAIL_MAX_TOKENS, n // self.repeats) + 1):
            if keys[n - 1] != keys[n - 1 - period]:
                continue
            first, floor = n - period, max(0, n - (TAIL_REPEATS + 1) * period)
            while first > floor and keys[first - 1] == keys[first - 1 + period]:
                first -= 1
            copies = (n - first) // period
            if copies < self.repeats:
                continue
            start = n - copies * period
            first_at, second_at = self._tokens[start][1], self._tokens[start + period][1]
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
