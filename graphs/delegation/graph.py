"""build_graph: the delegation StateGraph (draft -> review -> bounded revise loop).

A node that ends the job sets ``final`` itself and routes to END: a separate ``finalize`` node
would cost LangGraph one more step (a task, and a durable checkpoint with a saver) per job to
copy one string.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.types import Command

from graphs.delegation.nodes import FINALIZE, Node, after_draft, after_review, finalize, make_nodes
from graphs.delegation.state import DelegationState
from providers.base import LLMProvider

#: node -> (router, where it may go). The node itself routes (a ``Command``): a conditional edge
#: would cost LangGraph a fresh state read and a runnable call per step (~15% of a job's CPU).
ROUTES: dict[str, tuple[Callable[[DelegationState], str], tuple[str, ...]]] = {
    "draft": (after_draft, ("review", END)),
    "review": (after_review, ("revise", END)),
}


def _routed(node: Node, route: Callable[[DelegationState], str]) -> Callable[[DelegationState], Any]:
    async def run(state: DelegationState) -> Command[str]:
        update = await node(state)
        # a shallow merge is the state the router would read: routers read plain (non-reducer) keys
        merged: DelegationState = {**state, **update}  # type: ignore[typeddict-item]
        goto = route(merged)
        if goto == FINALIZE:
            return Command(update={**update, **finalize(merged)}, goto=END)
        return Command(update=update, goto=goto)

    return run


def build_graph(llm: LLMProvider, checkpointer: Any = None) -> Any:
    """Compile the delegation graph over ``llm``; nothing is compiled at import time."""
    graph: Any = StateGraph(DelegationState)  # langgraph's add_node overloads do not see TypedDict nodes
    for name, fn in make_nodes(llm).items():
        if name in ROUTES:
            route, ends = ROUTES[name]
            graph.add_node(name, _routed(fn, route), destinations=ends)
        else:
            graph.add_node(name, fn)
    graph.add_edge(START, "draft")
    graph.add_edge("revise", "review")
    # reached only by a job checkpointed by an earlier version, whose next step was `finalize`:
    # after a deploy it still finishes (no edge leads here, so a new job never pays for it)
    graph.add_node(FINALIZE, _finalize_node)
    graph.add_edge(FINALIZE, END)
    return graph.compile(checkpointer=checkpointer)


async def _finalize_node(state: DelegationState) -> dict[str, Any]:
    return finalize(state)
