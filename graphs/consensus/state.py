"""State of the consensus graph."""

from __future__ import annotations

import operator
from typing import Annotated, Any, NotRequired, TypedDict


class Participant(TypedDict):
    """One model asked: the name as given (a model or a family), its stance, the names that count as it."""

    model: str
    stance: str | None
    accepts: list[str]


class ConsensusState(TypedDict, total=False):
    question: str
    tier: str | None
    participants: list[Participant]
    synthesizer: str
    answers: Annotated[list[dict[str, Any]], operator.add]  # one per participant, in completion order
    synthesis: dict[str, Any]
    trace: Annotated[list[dict[str, Any]], operator.add]


class AskTask(TypedDict):
    """What one ``ask`` branch gets (a LangGraph ``Send``)."""

    index: int
    question: str
    tier: str | None
    participant: Participant
    panel: NotRequired[list[Participant]]  # every participant (a task checkpointed before it had none)
