"""build_graph: the consensus StateGraph (every model at once via ``Send``, then one synthesis)."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from graphs.consensus.nodes import make_nodes
from graphs.consensus.state import ConsensusState
from providers.base import LLMProvider


def fan_out(state: ConsensusState) -> list[Send]:
    """One ``ask`` branch per participant; LangGraph runs the branches of a step concurrently."""
    return [
        Send("ask", {"index": i, "question": state["question"], "tier": state.get("tier"), "participant": who,
                     "panel": state["participants"]})
        for i, who in enumerate(state["participants"])
    ]


def build_graph(llm: LLMProvider, checkpointer: Any = None) -> Any:
    """Compile the consensus graph over ``llm``; nothing is compiled at import time."""
    nodes = make_nodes(llm)
    graph: Any = StateGraph(ConsensusState)
    graph.add_node("ask", nodes["ask"])
    graph.add_node("synthesize", nodes["synthesize"])
    graph.add_conditional_edges(START, fan_out, ["ask"])
    graph.add_edge("ask", "synthesize")
    graph.add_edge("synthesize", END)
    return graph.compile(checkpointer=checkpointer)
