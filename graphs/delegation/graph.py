"""build_graph: the delegation StateGraph (draft -> review -> bounded revise loop)."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph

from graphs.delegation.nodes import after_draft, after_review, make_nodes
from graphs.delegation.state import DelegationState
from providers.base import LLMProvider


def build_graph(llm: LLMProvider, checkpointer: Any = None) -> Any:
    """Compile the delegation graph over ``llm``; nothing is compiled at import time."""
    nodes = make_nodes(llm)
    graph: Any = StateGraph(DelegationState)  # langgraph's add_node overloads do not see TypedDict nodes
    for name, fn in nodes.items():
        graph.add_node(name, fn)
    graph.add_edge(START, "draft")
    graph.add_conditional_edges("draft", after_draft, ["review", "finalize"])
    graph.add_conditional_edges("review", after_review, ["revise", "finalize"])
    graph.add_edge("revise", "review")
    graph.add_edge("finalize", END)
    return graph.compile(checkpointer=checkpointer)
