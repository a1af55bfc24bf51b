"""The ``swarm/delegate`` action: route a task to a primary model and an optional reviewer."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.errors import InputError
from core.rules import Tier
from graphs.context import JobContext


class DelegateInput(BaseModel):
    """Input of ``delegate``: the task, its kind (a key of routing.delegation) and a tier."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, description="what to do, in plain words")
    kind: str = Field(default="bulk_content", description="a key of routing.delegation in config")
    tier: Tier | None = Field(
        default=None, description="model tier; default: providers.llm.default"
    )

    @field_validator("task")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty or only whitespace")
        return value


async def delegate(inp: DelegateInput, ctx: JobContext) -> dict[str, Any]:
    """Draft with the route's primary, review with its reviewer, revise within the limit."""
    config = ctx.config
    routes = config.routing.delegation
    if len(inp.task) > config.limits.max_task_chars:
        raise InputError(
            f"is {len(inp.task)} characters; the limit is {config.limits.max_task_chars}"
            " (limits.max_task_chars in config)",
            field="task",
        )
    route = routes.get(inp.kind)
    if route is None:
        raise InputError(f"unknown kind {inp.kind!r}; valid: {', '.join(sorted(routes))}", field="kind")
    if route.primary.endswith("+search"):
        return await _research_route(inp, ctx)

    from graphs.delegation.graph import build_graph
    from graphs.run import run_graph

    providers = ctx.providers
    graph = providers.memo(("graph:delegation", id(ctx.checkpointer)), lambda: build_graph(providers.llm, ctx.checkpointer))
    await ctx.progress("route", f"{inp.kind}: primary {route.primary}, reviewer {route.reviewer or 'none'}", None)
    state = await run_graph(
        graph,
        {
            "task": inp.task,
            "kind": inp.kind,
            "tier": inp.tier,
            "primary": route.primary,
            "reviewer": route.reviewer,
            "max_revisions": config.limits.max_revisions,
            "trace": [],
        },
        ctx,
    )
    return {
        "text": state.get("final", state.get("draft", "")),
        "model": state.get("drafted_by"),
        "kind": inp.kind,
        "review": state.get("review"),
        "revisions": state.get("revisions", 0),
        "trace": state.get("trace", []),
    }


async def _research_route(inp: DelegateInput, ctx: JobContext) -> dict[str, Any]:
    try:
        from graphs.research.action import ResearchInput, research
    except ModuleNotFoundError:
        raise InputError(
            f"kind {inp.kind!r} needs the research graph, which is not available in this installation",
            field="kind",
        ) from None
    result = await research(ResearchInput(question=inp.task), ctx)
    return {
        "text": result.get("report", ""),
        "model": None,
        "kind": inp.kind,
        "review": result.get("review"),
        "revisions": 0,
        "sources": result.get("sources", []),
        "trace": result.get("trace", []),
    }
