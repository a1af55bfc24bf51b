"""Repeats out of a report: ``drop_repeats`` removes a sentence or line that repeats an earlier
one (compared by ``grounding.normalise``: lower-cased, without citations, punctuation or spacing)
and a sentence that loops on one phrase, unless a passage it cites holds it word for word (a code
example, a row of links).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence

from graphs.research.grounding import cited_ids, normalise
from graphs.research.markdown_blocks import rewrite_sentences
from graphs.research.passages import Passage

#: sentences that repeat a phrase of this many words this many times are loops
_LOOP_NGRAM, _LOOP_TIMES = 3, 3


def _loops(sentence: str) -> bool:
    words = re.findall(r"[a-z0-9]+", sentence.lower())
    grams = Counter(tuple(words[i : i + _LOOP_NGRAM]) for i in range(len(words) - _LOOP_NGRAM + 1))
    return bool(grams) and max(grams.values()) >= _LOOP_TIMES


def drop_repeats(text: str, passages: Mapping[int, Sequence[Passage]] | None = None) -> tuple[str, list[dict[str, str]]]:
    """``text`` without repeated lines or sentences and without looping sentences.

    A sentence that a passage of a source it cites holds word for word is no loop, however
    often a phrase recurs in it (a code example, a row of links): the source says it so.

    Args:
        text: the report.
        passages: source id -> its passages, for that exception; without them every looping
            sentence goes.

    Returns:
        The text and what was dropped: ``[{text, reason}]``.
    """
    held: dict[int, str] = {}

    def quoted(sentence: str) -> bool:
        words = f" {normalise(sentence)} "
        for sid in cited_ids(sentence):
            if sid not in held:
                held[sid] = "\n".join(f" {normalise(p['text'])} " for p in (passages or {}).get(sid, ()))
            if words.strip() and words in held[sid]:
                return True
        return False

    seen_lines: set[str] = set()
    seen_sentences: set[str] = set()
    dropped: list[dict[str, str]] = []

    def keep_line(line: str) -> bool:
        key = normalise(line)
        if key and key in seen_lines:
            dropped.append({"text": line.strip()[:300], "reason": "repeats an earlier line"})
            return False
        seen_lines.add(key)
        return True

    def keep(sentence: str) -> bool:
        key = normalise(sentence)
        if _loops(sentence) and not quoted(sentence):
            dropped.append({"text": sentence[:300], "reason": "repeats one phrase over and over"})
            return False
        if key and len(key.split()) >= 2 and key in seen_sentences:
            dropped.append({"text": sentence[:300], "reason": "repeats an earlier sentence"})
            return False
        seen_sentences.add(key)
        return True

    return rewrite_sentences(text, keep, keep_line), dropped
