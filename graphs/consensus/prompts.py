"""Prompts of the consensus graph. The question is the user's; it is passed as data."""

from __future__ import annotations

from typing import Any

from providers.base import Message

POSITION_SYSTEM = (
    "You are one of several models asked the same question independently. Give your own answer: "
    "a clear position, the reasons for it, and the main risk or caveat. Be concise."
)
STANCES = {
    "for": "Take the supporting side: make the strongest honest case for it, and still name real risks.",
    "against": "Take the critical side: make the strongest honest case against it, and still concede real merits.",
    "neutral": "Weigh both sides evenly before you conclude.",
}
SYNTHESIS_SYSTEM = (
    "You combine the answers several models gave to one question. Write Markdown with three sections: "
    "'## Agreements', '## Disagreements' and '## Recommendation'. Name the model behind every point in "
    "parentheses, e.g. (model-a, model-b). Report only positions the models took."
)


def position_messages(question: str, stance: str | None) -> list[Message]:
    system = POSITION_SYSTEM + (f" {STANCES[stance]}" if stance else "")
    return [Message(role="system", content=system), Message(role="user", content=question)]


def synthesis_messages(question: str, answers: list[dict[str, Any]], failed: list[dict[str, Any]]) -> list[Message]:
    blocks = [
        f"<answer model=\"{a['model']}\"" + (f" stance=\"{a['stance']}\"" if a.get("stance") else "")
        + (f" in_place_of=\"{a['asked']}\"" if a.get("status") == "stand_in" else "") + f">\n{a['text']}\n</answer>"
        for a in answers
    ]
    missing = "".join(f"\n{f['asked']} did not answer ({f['error_type']})." for f in failed)
    missing += "".join(f"\n{a['asked']} did not answer; {a['model']} answered in its place." for a in answers
                       if a.get("status") == "stand_in")
    body = f"<question>\n{question}\n</question>\n\n" + "\n\n".join(blocks) + missing + "\n\nYour synthesis:"
    return [Message(role="system", content=SYNTHESIS_SYSTEM), Message(role="user", content=body)]
