"""MCP prompts users reach for: a research brief and a delegate-and-review request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, get_args

from core.errors import InputError
from core.rules import check_text_limit, shown

#: how deep ``research_brief`` asks the research to go
Depth = Literal["quick", "standard", "deep"]
#: the audiences ``research_brief`` suggests (any other is taken as written)
AUDIENCES = ("an engineer new to the topic", "a decision maker", "an expert")


def suggestions(kinds_of: Callable[[], list[str]]) -> dict[str, dict[str, Callable[[], list[str]]]]:
    """What completion suggests for each prompt's arguments: prompt -> argument -> values now
    (``kinds_of()``: the delegation kinds of the config in effect). An argument not here gets none."""
    return {
        "research_brief": {"audience": lambda: list(AUDIENCES), "depth": lambda: list(get_args(Depth))},
        "delegate_and_review": {"kind": kinds_of},
    }


def register(server: Any, kinds_of: Callable[[], list[str]] | None = None, limits_of: Callable[[], Any] | None = None) -> None:
    """Add the prompts to ``server``; ``kinds_of()``: the delegation kinds ``delegate_and_review``
    takes now (read at each render: a hot-swapped config's new kind counts at once; a prompt
    naming an unknown one would send the model to a call that fails); ``limits_of()``: the config's
    ``limits`` in effect, which the topic and the task are held to (the tool would refuse them)."""

    def within(value: str, key: str, field: str) -> None:
        if limits_of is not None:
            try:
                check_text_limit(value, limits_of(), key, field)
            except InputError as exc:
                raise ValueError(str(exc)) from None

    @server.prompt(name="research_brief", title="Research brief",
                   description="Ask for a cited research report on a topic, for a given audience and depth.")
    def research_brief(topic: str, audience: str = AUDIENCES[0], depth: Depth = "standard") -> str:
        if not topic.strip():
            raise ValueError("topic: must not be empty")
        within(topic, "max_question_chars", "topic")
        return (
            f"Research this topic with the `research` tool (depth={depth!r}): {topic}\n\n"
            f"Then write a brief for {audience}: a three-sentence summary, the key findings as "
            "bullets, each with its [n] citations kept, open questions, and the sources list. "
            "Do not add claims the report does not support. If the tool returns status "
            "IN_PROGRESS, call `job_result` with its job_id until it is COMPLETED."
        )

    @server.prompt(name="delegate_and_review", title="Delegate and review",
                   description="Hand a task to the swarm, then check the reviewer's verdict and the trace.")
    def delegate_and_review(task: str, kind: str = "bulk_content", criteria: str = "correctness and completeness") -> str:
        if not task.strip():
            raise ValueError("task: must not be empty")
        within(task, "max_task_chars", "task")
        kinds = kinds_of() if kinds_of is not None else None
        if kinds is not None and kind not in kinds:
            raise ValueError(f"kind: unknown kind {shown(kind)}; valid: {', '.join(kinds)}")
        return (
            f"Use the `delegate` tool with kind={kind!r} for this task:\n\n{task}\n\n"
            f"When it returns, judge the answer on {criteria}. Report: the answer, the reviewer's "
            "verdict and issues (if any), which models ran (from the trace) and the total cost. "
            "If the review found problems the revision did not fix, say so plainly."
        )
