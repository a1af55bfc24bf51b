"""A thread's earlier turns in a delegation prompt: which model said what, newest turns first kept.

The door sends the thread's stored turns in the job input (``history``); this module cuts them to
``threads.max_chars`` (oldest left out first) and writes them as chat messages, each answer
labelled with the model that wrote it, so whichever model answers now knows who said what.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from providers.base import Message, TraceStep

#: a thread id as ``swarm.threads`` mints it
THREAD_ID_PATTERN = r"^thr-[0-9a-f]{32}$"
HISTORY_NOTE = (
    "Earlier turns of this conversation follow. Each earlier answer starts with the name of the "
    "model that wrote it; you may be a different model. Continue the conversation."
)


class Turn(BaseModel):
    """One stored turn: the user's message or a model's answer (``model`` names who wrote it)."""

    model_config = ConfigDict(extra="ignore")

    n: int = Field(ge=1)
    role: Literal["user", "assistant"]
    model: str | None = Field(default=None, max_length=128)
    content: str


def window(turns: list[Turn], max_chars: int) -> tuple[list[Turn], list[Turn]]:
    """(the newest turns whose text fits in ``max_chars``, the older ones left out)."""
    kept: list[Turn] = []
    used = 0
    for turn in reversed(turns):
        if used + len(turn.content) > max_chars:
            break
        kept.append(turn)
        used += len(turn.content)
    kept.reverse()
    return kept, turns[: len(turns) - len(kept)]


def messages(turns: list[Turn]) -> list[Message]:
    """The turns as chat messages, each answer opening with the model that wrote it (the system
    prompt gets ``HISTORY_NOTE``: see ``prompts.draft_messages``)."""
    out = []
    for turn in turns:
        if turn.role == "assistant":
            out.append(Message(role="assistant", content=f"[{turn.model or 'unknown model'}]: {turn.content}"))
        else:
            out.append(Message(role="user", content=turn.content))
    return out


def transcript(turns: list[Turn]) -> str:
    """The turns as plain text (for a reviewer, who gets one user message)."""
    return "\n".join(f"{'user' if t.role == 'user' else t.model or 'model'}: {t.content}" for t in turns)


def _numbers(turns: list[Turn]) -> str:
    return f"{turns[0].n}-{turns[-1].n}" if len(turns) > 1 else str(turns[0].n)


def history_step(thread_id: str, turns: list[Turn], kept: list[Turn], left_out: list[Turn],
                 max_chars: int) -> dict[str, Any]:
    """The ``thread`` trace step: which turns the prompt carries and which were dropped, and why."""
    started = time.perf_counter()
    parts = [f"thread {thread_id}: " + (f"turns {_numbers(kept)} in the prompt" if kept else "no earlier turns")]
    if turns and turns[0].n > 1:
        parts.append(f"turns 1-{turns[0].n - 1} dropped earlier (threads.max_turns)")
    if left_out:
        parts.append(f"turns {_numbers(left_out)} left out (threads.max_chars={max_chars})")
    return TraceStep(step="thread", kind="node", provider="graph", detail="; ".join(parts),
                     latency_ms=(time.perf_counter() - started) * 1000).model_dump()
