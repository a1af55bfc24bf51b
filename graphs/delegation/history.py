"""A thread's earlier turns in a delegation prompt: which model said what.

The door sends the thread's stored turns in the job input (``history``); ``graphs.turns.fit`` keeps
the newest within ``threads.max_chars``, and this module writes them as chat messages. Who wrote each
earlier answer is said once, in the system prompt (``history_note``), never inside the answer: a
label opening an answer (``[local]: ...``) is text a model copies, small local ones above all, so
it came back in the new answer and was stored in the thread, growing turn by turn. For the same
reason ``strip_label`` takes such a label off a new answer and off turns stored before this fix.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from graphs.turns import Turn
from providers.base import Message

HISTORY_NOTE = (
    "Earlier turns of this conversation follow as messages; you may be a different model than the one "
    "that wrote the earlier answers. Continue the conversation."
)
#: what ``messages`` once put before an earlier answer when its model was not recorded
UNKNOWN_MODEL = "unknown model"
#: ``[name]:`` at the start of a text (with any spaces, and the bold markers a model may add)
_LABEL = re.compile(r"\A\s*(?:\*\*)?\[([^\]\n]{1,128})\](?:\*\*)?\s*:(?:\*\*)?[ \t]*")


def label_names(turns: Iterable[Turn], *more: str | None) -> set[str]:
    """The names a copied label may carry: each earlier answer's model, ``more`` (the model that
    answers now, its family) and the placeholders once written for an unnamed model."""
    names = {t.model for t in turns if t.role == "assistant"} | set(more) | {UNKNOWN_MODEL, "model", "assistant"}
    return {n.strip().casefold() for n in names if n and n.strip()}


def strip_label(text: str, names: set[str]) -> str:
    """``text`` without the ``[name]: `` labels it opens with, for a ``name`` of ``names`` (compared
    case-blind; a label repeated as a thread grew is removed each time). Another bracketed opening
    (``[1]: https://...``, a link reference) is the answer's own and stays."""
    rest = text
    while (match := _LABEL.match(rest)) and match.group(1).strip().casefold() in names:
        rest = rest[match.end():]
    return rest if rest.strip() else text  # a label and nothing else: no answer to take it off


def history_note(turns: list[Turn]) -> str:
    """``HISTORY_NOTE`` and, outside the answers themselves, which model wrote which earlier answer."""
    written = [f"turn {t.n} by {t.model or UNKNOWN_MODEL}" for t in turns if t.role == "assistant"]
    return f"{HISTORY_NOTE} Earlier answers: {', '.join(written)}." if written else HISTORY_NOTE


def messages(turns: list[Turn]) -> list[Message]:
    """The turns as chat messages, each answer as the assistant's own message, with no label in
    its text (who wrote it is in ``history_note``, in the system prompt: see ``prompts``)."""
    names = label_names(turns)
    return [Message(role="assistant", content=strip_label(t.content, names)) if t.role == "assistant"
            else Message(role="user", content=t.content) for t in turns]


def transcript(turns: list[Turn]) -> str:
    """The turns as plain text (for a reviewer, who gets one user message and answers in JSON)."""
    names = label_names(turns)
    return "\n".join(f"user: {t.content}" if t.role == "user" else f"{t.model or 'model'}: {strip_label(t.content, names)}"
                     for t in turns)
