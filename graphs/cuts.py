"""An answer the model did not end by itself, said in words a reader understands.

Two finish reasons end an answer early: ``length`` (its token limit: it may stop mid-sentence) and
``loop`` (``providers.llm.loop_guard`` ended the stream where the model began repeating itself;
one copy of the repeated passage stays, the repeats are gone). Every graph says them the same way,
from here: in a trace step's detail (``cut_note``) and in a result's warnings (``cut_warning``).
"""

from __future__ import annotations

#: finish reason -> (what a trace step's detail adds, what a warning says of the answer)
_SAID = {
    "length": ("cut at its token limit: the answer may end mid-sentence",
               "was cut at its token limit and may end mid-sentence"),
    "loop": ("stopped where the model began repeating itself: the repeats are left out",
             "was stopped where the model began repeating itself (the repeats are left out)"),
}


def cut_reason(finish_reason: str | None) -> str | None:
    """``finish_reason`` when it ended the answer early (``length``, ``loop``), else None."""
    return finish_reason if finish_reason in _SAID else None


def cut_note(finish_reason: str | None) -> str:
    """What a trace step's detail adds for an answer ended early ("" for one that ended by itself):
    `` (stopped where the model began repeating itself: the repeats are left out)``."""
    reason = cut_reason(finish_reason)
    return f" ({_SAID[reason][0]})" if reason else ""


def cut_warning(subject: str, finish_reason: str | None) -> str | None:
    """A result's warning about ``subject`` ("the answer") ended early, None for one that ended
    by itself: "the answer was cut at its token limit and may end mid-sentence"."""
    reason = cut_reason(finish_reason)
    return f"{subject} {_SAID[reason][1]}" if reason else None
