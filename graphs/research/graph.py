"""build_graph: the research StateGraph.

plan -> (Send fan-out) search x N -> rank -> read -> write -> check -> review -> (write again
while the reviewer asks for changes, within limits.max_revisions) -> END. ``write`` drafts an
abstractive or an extractive report; ``check`` holds each sentence against its cited passage.
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph

from graphs.research.nodes import ResearchDeps, fan_out, make_nodes
from graphs.research.sources import Fetcher
from graphs.research.state import ResearchState
from graphs.research.writing import after_review, writing_nodes
from providers.base import LLMProvider, SearchProvider


def build_graph(llm: LLMProvider, search: SearchProvider, fetch: Fetcher, checkpointer: Any = None) -> Any:
    """Compile the research graph; nothing is compiled at import time."""
    deps = ResearchDeps(llm=llm, search=search, fetch=fetch)
    nodes = {**make_nodes(deps), **writing_nodes(deps)}
    graph = StateGraph(ResearchState)
    for name, fn in nodes.items():
        graph.add_node(name, fn)
    graph.add_edge(START, "plan")
    graph.add_conditional_edges("plan", fan_out, ["search"])
    graph.add_edge("search", "rank")
    graph.add_edge("rank", "read")
    graph.add_edge("read", "write")
    graph.add_edge("write", "check")
    graph.add_edge("check", "review")
    graph.add_conditional_edges("review", after_review, {"write": "write", "done": END})
    return graph.compile(checkpointer=checkpointer)
