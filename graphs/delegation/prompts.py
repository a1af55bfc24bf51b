"""Prompts of the delegation graph. Task text is the user's; it is passed as data."""

from __future__ import annotations

from graphs.delegation.history import history_note, transcript
from graphs.delegation.history import messages as history_messages
from graphs.turns import Turn
from providers.base import Message

PRIMARY_SYSTEM = {
    "bulk_content": "You are a careful, efficient writer. Complete the task fully and concisely.",
    "critical": (
        "You are a meticulous expert. Complete the task with care: state assumptions, "
        "double-check facts and reasoning, and say plainly what you are unsure of."
    ),
}
DEFAULT_SYSTEM = PRIMARY_SYSTEM["bulk_content"]

#: each verdict field and what the review prompt says of it (``nodes.parse_verdict`` drops an
#: issue that only repeats these words back)
VERDICT_FIELDS = {
    "approved": "true/false",
    "score": "1-10",
    "issues": "a list of short strings, empty when approved",
    "suggestion": "one short paragraph",
}
REVIEW_SYSTEM = (
    "You review another model's answer to a task. Judge correctness, completeness and "
    "clarity. Reply with JSON only: " + ", ".join(f"{k} ({v})" for k, v in VERDICT_FIELDS.items()) + "."
)

#: a verdict's longest issue and suggestion, in characters: with no bound the bundled model's
#: constrained JSON ran a string to its 512-token cap (~16 s) and the cut verdict was unusable
ISSUE_CHARS = 200
SUGGESTION_CHARS = 600
VERDICT_SCHEMA = {
    "type": "object",
    "properties": {
        "approved": {"type": "boolean"},
        "score": {"type": "integer", "minimum": 1, "maximum": 10},
        "issues": {"type": "array", "items": {"type": "string", "maxLength": ISSUE_CHARS}, "maxItems": 5},
        "suggestion": {"type": "string", "maxLength": SUGGESTION_CHARS},
    },
    "required": ["approved", "score", "issues", "suggestion"],
    "additionalProperties": False,
}


def _opening(kind: str, history: list[Turn]) -> list[Message]:
    """The system prompt (which names the model of each earlier answer), then a thread's earlier
    turns, each answer an assistant message of its own text only (see ``history``)."""
    system = PRIMARY_SYSTEM.get(kind, DEFAULT_SYSTEM)
    if not history:
        return [Message(role="system", content=system)]
    return [Message(role="system", content=f"{system}\n\n{history_note(history)}"), *history_messages(history)]


def draft_messages(task: str, kind: str, history: list[Turn] | None = None) -> list[Message]:
    return [*_opening(kind, history or []), Message(role="user", content=task)]


def review_messages(task: str, draft: str, history: list[Turn] | None = None) -> list[Message]:
    earlier = f"<conversation>\n{transcript(history)}\n</conversation>\n\n" if history else ""
    return [
        Message(role="system", content=REVIEW_SYSTEM),
        Message(
            role="user",
            content=f"{earlier}<task>\n{task}\n</task>\n\n<answer>\n{draft}\n</answer>\n\nYour JSON verdict:",
        ),
    ]


def revise_messages(task: str, kind: str, draft: str, review: dict, history: list[Turn] | None = None) -> list[Message]:
    """The task, the draft and the review in the last message: a model's context is fitted by leaving
    out the oldest question-answer exchanges first (``providers.llm.context_fit``), and the task with
    its draft as such an exchange was left out first, the draft it revises with it. The last message
    never is left out: past the window the thread's turns are left out first, then that message is
    cut inside its ``<task>`` and ``<answer>`` blocks, the longest first (the draft past the window:
    the task stays whole), each block keeping its tags, its opening and its end."""
    issues = "\n".join(f"- {issue}" for issue in review.get("issues") or []) or "- (none listed)"
    return [
        *_opening(kind, history or []),
        Message(
            role="user",
            content=(
                f"<task>\n{task}\n</task>\n\n<answer>\n{draft}\n</answer>\n\n"
                "A reviewer found these issues in the answer above:\n"
                f"{issues}\nSuggestion: {review.get('suggestion') or '-'}\n\n"
                "Rewrite the answer to fix them. Reply with the full improved answer only."
            ),
        ),
    ]
