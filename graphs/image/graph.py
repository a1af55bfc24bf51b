"""build_graph: the image StateGraph (upscale | remove_background | remove_background -> upscale
| remove_background_batch)."""

from __future__ import annotations

from functools import partial
from typing import Any

from langgraph.graph import END, START, StateGraph

from graphs.context import JobContext
from graphs.image.nodes import (
    BATCH_STEP,
    after,
    finalize,
    finalize_batch,
    first_step,
    make_batch_step,
    make_step,
)
from graphs.image.state import ImageState
from graphs.run import lean_checkpointer
from providers.base import StorageProvider

STEPS = ("remove_background", "upscale")


def build_graph(provider_for: Any, storage: StorageProvider, checkpointer: Any = None) -> Any:
    """Compile the image graph.

    Args:
        provider_for: ``kind -> ImageProvider`` (``ctx.providers.image``).
        storage: where inputs, intermediates and outputs live.
        checkpointer: optional LangGraph checkpointer (resume by job id).
    """
    graph: Any = StateGraph(ImageState)  # langgraph's add_node overloads do not see TypedDict nodes
    for step in STEPS:
        graph.add_node(step, make_step(step, provider_for, storage))
    graph.add_node("finalize", partial(finalize, storage=storage))
    graph.add_node(BATCH_STEP, make_batch_step("remove_background", provider_for, storage))
    graph.add_node("finalize_batch", partial(finalize_batch, storage=storage))
    graph.add_conditional_edges(START, first_step, [*STEPS, BATCH_STEP])
    graph.add_edge(BATCH_STEP, "finalize_batch")
    graph.add_edge("finalize_batch", END)
    graph.add_conditional_edges("remove_background", after("remove_background"), ["upscale", "finalize"])
    graph.add_conditional_edges("upscale", after("upscale"), ["finalize"])
    graph.add_edge("finalize", END)
    return graph.compile(checkpointer=checkpointer)


def image_graph(ctx: JobContext) -> Any:
    """The compiled image graph, built once per providers and checkpointer."""
    providers = ctx.providers
    return providers.memo(
        ("graph:image", id(ctx.checkpointer)),
        lambda: build_graph(providers.image, providers.storage, lean_checkpointer(ctx)),
    )
