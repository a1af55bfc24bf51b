"""A thread's earlier turns in a prompt, within a budget: what research and delegation share.

The door sends the thread's stored turns in the job input (``history``). The turns are taken
newest first: a turn that fits is kept whole; an answer that does not is shortened (a research
report to its "## In short" section, else its first sentences, cut at a sentence or word end and
marked ``[shortened]``) after room is kept for the question it answers; a turn that does not fit
even shortened is left out, with every older one. A follow-up such as "How long does it stay
open?" is only answerable with the earlier question in the prompt, so a long answer before it no
longer takes the whole exchange out. The ``thread`` trace step says which turns the prompt carries
whole, which shortened and which were left out, and under which limit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from providers.base import TraceStep

#: a thread id as ``swarm.threads`` mints it
THREAD_ID_PATTERN = r"^thr-[0-9a-f]{32}$"


class Turn(BaseModel):
    """One stored turn: the user's message or a model's answer (``model`` names who wrote it)."""

    model_config = ConfigDict(extra="ignore")

    n: int = Field(ge=1)
    role: Literal["user", "assistant"]
    model: str | None = Field(default=None, max_length=128)
    content: str


#: how a shortened turn ends in the planner's prompt
SHORTENED_MARK = " [shortened]"
#: characters a shortened turn needs at least (its mark included); with less room it is left out
MIN_SHORTENED_CHARS = 60
_IN_SHORT = re.compile(r"^#{1,6}\s*In short\s*#*\s*$", re.IGNORECASE | re.MULTILINE)
_HEADING = re.compile(r"^#{1,6}\s", re.MULTILINE)
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+")
#: a line that may open or close a fenced code block: its mark, then the rest of the line
_FENCE_LINE = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})(.*)$", re.MULTILINE)
#: a sentence's end: . ! or ? (closing quotes or brackets after it) before a space or the end
_SENTENCE_END = re.compile(r"[.!?][\"'\u201d\u2019)\]]*(?=\s|$)")


@dataclass(frozen=True)
class Fitted:
    """The turns the planner reads, oldest first, as ``(turn, text, shortened)``, and those left out."""

    kept: list[tuple[Turn, str, bool]]
    left_out: list[Turn]


def flat(text: str) -> str:
    """``text`` with its whitespace collapsed to single spaces."""
    return " ".join(text.split())


def summary(content: str) -> str:
    """A long answer's gist: a report's "## In short" section (its bullets as running text), else
    the whole answer; whitespace collapsed."""
    found = _IN_SHORT.search(content)
    if not found:
        return flat(content)
    rest = content[found.end():]
    following = _HEADING.search(rest)
    section = rest[: following.start()] if following else rest
    lines = [_BULLET.sub("", line) for line in section.splitlines()]
    return flat(" ".join(lines)) or flat(content)


def shorten(content: str, limit: int, keep_lines: bool = False) -> str:
    """``content``'s summary in at most ``limit`` characters, cut at the last sentence end that
    keeps half the room (else at a word end that does, with "…"), ending in ``SHORTENED_MARK``;
    "" when ``limit`` is under ``MIN_SHORTENED_CHARS``.

    ``keep_lines``: the answer as written instead (a delegation's code keeps its lines and
    indentation), cut at a line end too, and a code fence the cut leaves open closed."""
    if limit < MIN_SHORTENED_CHARS:
        return ""
    text, room = (content.strip() if keep_lines else summary(content)), limit - len(SHORTENED_MARK)
    if len(text) <= room:
        return f"{text}\n{SHORTENED_MARK.strip()}" if keep_lines else text + SHORTENED_MARK
    if keep_lines and (marks := [len(m.group(1)) for m in _FENCE_LINE.finditer(text)]):
        room -= 1 + max(marks)  # for the fence that closes a cut code block
    ends = [m.end() for m in _SENTENCE_END.finditer(text[: room + 1]) if m.end() <= room]  # "3.5" is no end
    if keep_lines:
        ends = sorted(ends + [n for n in range(room + 1) if text[n: n + 1] == "\n"])
    if ends and ends[-1] >= room // 2:
        head = text[: ends[-1]]
    else:
        head = text[: room - 1]  # room for the "…"
        words = re.split(r"\s(?=\S*$)", head, maxsplit=1)[0]
        if len(words) >= room // 2:  # else a very long word: cut inside it
            head = words
        head = head.rstrip(" ,;:") + "…"
    # on a line of its own after code: "``` [shortened]" would be no closing fence
    return f"{_closed(head.rstrip())}\n{SHORTENED_MARK.strip()}" if keep_lines else head + SHORTENED_MARK


def _closed(text: str) -> str:
    """``text`` with the fenced code block it leaves open closed by its opener's own mark."""
    fence = _open_fence(text)
    return f"{text}\n{fence}" if fence else text


def _open_fence(text: str) -> str | None:
    """The mark of the fenced code block left open at ``text``'s end (``None``: none), read as
    CommonMark does: an opener is 3+ backticks or tildes and an info string (a backtick fence's
    holds no backtick); only a bare mark of the same character, at least as long, closes it; any
    other fence-like line inside the block is code."""
    fence: str | None = None
    for found in _FENCE_LINE.finditer(text):
        mark, rest = found.group(1), found.group(2)
        if fence is None:
            fence = mark if mark[0] == "~" or "`" not in rest else None
        elif mark[0] == fence[0] and len(mark) >= len(fence) and not rest.strip():
            fence = None
    return fence


def fit(turns: list[Turn], max_chars: int, keep_lines: bool = False) -> Fitted:
    """The newest turns within ``max_chars`` characters, each counted as the prompt has it:
    whitespace collapsed (the planner's), or with ``keep_lines`` as stored, code and lines intact
    (a delegation's chat messages).

    A turn that fits is kept whole; an answer only when its question still fits after it, whole
    or shortened (``MIN_SHORTENED_CHARS``). An answer that does not is shortened to the room left
    once the question before it is counted: whole when that leaves the answer room to be
    shortened, else shortened too, into a third of the room (a model is never shown an answer
    without what it answered). A turn with too little room even shortened is left out, and so is
    every older one, except the question of a left-out answer when that question fits whole.
    """
    texts = [t.content if keep_lines else flat(t.content) for t in turns]
    chosen: dict[int, tuple[str, bool]] = {}
    room = max_chars
    i = len(turns) - 1
    while i >= 0:
        question = i - 1 if turns[i].role == "assistant" and i and turns[i - 1].role == "user" else None
        # room its question needs after the answer: whole, or at least shortened
        needed = 0 if question is None else min(len(texts[question]), MIN_SHORTENED_CHARS)
        if len(texts[i]) + needed <= room:
            chosen[i] = (texts[i], False)
            room -= len(texts[i])
            i -= 1
            continue
        whole = question is not None and len(texts[question]) + MIN_SHORTENED_CHARS <= room
        reserve = 0 if question is None else len(texts[question]) if whole else max(MIN_SHORTENED_CHARS, room // 3)
        short = shorten(turns[i].content, room - reserve, keep_lines)
        if short:
            chosen[i] = (short, True)
            room -= len(short)
            i -= 1
            continue
        if question is not None and len(texts[question]) <= room:  # the answer left out, its question kept
            chosen[question] = (texts[question], False)
        break
    kept = [(turns[j], *chosen[j]) for j in sorted(chosen)]
    return Fitted(kept=kept, left_out=[t for j, t in enumerate(turns) if j not in chosen])


def spans(numbers: list[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    out: list[list[int]] = []
    for n in sorted(numbers):
        if out and out[-1][1] == n - 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in out)


def _turns(numbers: list[int]) -> str:
    return f"{'turns' if len(numbers) > 1 else 'turn'} {spans(numbers)}"


def context_text(fitted: Fitted) -> str:
    """The planner's ``<conversation>``: one line a turn, each answer named by the model that wrote it."""
    return "\n".join(f"{(t.model or 'a model') if t.role == 'assistant' else 'user'}: {text}"
                     for t, text, _ in fitted.kept)


def thread_step(thread_id: str, turns: list[Turn], fitted: Fitted, limit: str) -> dict[str, Any]:
    """The ``thread`` trace step: the turns the prompt carries (whole or shortened), those dropped
    by the store and those left out here, and ``limit`` (the budget that cut them)."""
    kept = [t.n for t, _, _ in fitted.kept]
    notes = [f"turn {t.n} shortened to {len(text)} of {len(t.content)} characters ({limit})"
             for t, text, shortened in fitted.kept if shortened]
    if fitted.left_out:
        notes.append(f"{_turns([t.n for t in fitted.left_out])} left out ({limit})")
    return thread_trace_step(thread_id, turns, _turns(kept) if kept else None, notes)


def thread_trace_step(thread_id: str, turns: list[Turn], kept: str | None, notes: list[str]) -> dict[str, Any]:
    """The ``thread`` trace step of a prompt carrying ``kept`` (``"turns 5-6"``; ``None``: no earlier
    turn), the turns the store dropped before (``threads.max_turns``), then ``notes`` (what the
    caller's own budget cut)."""
    parts = [f"thread {thread_id}: " + (f"{kept} in the prompt" if kept else "no earlier turns")]
    if turns and turns[0].n > 1:  # a range, not a list of numbers: n comes from the job input, unbounded
        dropped = "turn 1" if turns[0].n == 2 else f"turns 1-{turns[0].n - 1}"
        parts.append(f"{dropped} dropped earlier (threads.max_turns)")
    return TraceStep(step="thread", kind="node", provider="graph", detail="; ".join(parts + notes)).model_dump()
