"""Prompts of the delegation graph. Task text is the user's; it is passed as data."""

from __future__ import annotations

from providers.base import Message

PRIMARY_SYSTEM = {
    "bulk_content": "You are a careful, efficient writer. Complete the task fully and concisely.",
    "critical": (
        "You are a meticulous expert. Complete the task with care: state assumptions, "
        "double-check facts and reasoning, and say plainly what you are unsure of."
    ),
}
DEFAULT_SYSTEM = PRIMARY_SYSTEM["bulk_content"]

REVIEW_SYSTEM = (
    "You review another model's answer to a task. Judge correctness, completeness and "
    "clarity. Reply with JSON only: approved (true/false), score (1-10), issues (a list of "
    "short strings, empty when approved), suggestion (one short paragraph)."
)

VERDICT_SCHEMA = {
    "type": "object",
    "properties": {
        "approved": {"type": "boolean"},
        "score": {"type": "integer", "minimum": 1, "maximum": 10},
        "issues": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
        "suggestion": {"type": "string"},
    },
    "required": ["approved", "score", "issues", "suggestion"],
    "additionalProperties": False,
}


def draft_messages(task: str, kind: str) -> list[Message]:
    return [
        Message(role="system", content=PRIMARY_SYSTEM.get(kind, DEFAULT_SYSTEM)),
        Message(role="user", content=task),
    ]


def review_messages(task: str, draft: str) -> list[Message]:
    return [
        Message(role="system", content=REVIEW_SYSTEM),
        Message(
            role="user",
            content=f"<task>\n{task}\n</task>\n\n<answer>\n{draft}\n</answer>\n\nYour JSON verdict:",
        ),
    ]


def revise_messages(task: str, kind: str, draft: str, review: dict) -> list[Message]:
    issues = "\n".join(f"- {issue}" for issue in review.get("issues") or []) or "- (none listed)"
    return [
        Message(role="system", content=PRIMARY_SYSTEM.get(kind, DEFAULT_SYSTEM)),
        Message(role="user", content=task),
        Message(role="assistant", content=draft),
        Message(
            role="user",
            content=(
                "A reviewer found these issues:\n"
                f"{issues}\nSuggestion: {review.get('suggestion') or '-'}\n\n"
                "Rewrite your answer to fix them. Reply with the full improved answer only."
            ),
        ),
    ]
