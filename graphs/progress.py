"""Progress events from inside a graph run: one writer for every graph's nodes.

Events go to LangGraph's custom stream (``stream_mode="custom"``), which the graph runner turns
into the job's progress callback (CLI lines, MCP progress notifications).
"""

from __future__ import annotations

from langgraph.config import get_stream_writer

from providers.base import AttemptEvent, AttemptListener


def emit(stage: str, message: str, fraction: float | None = None) -> None:
    """Send one progress event; a no-op outside a streaming run (nobody listens)."""
    try:
        writer = get_stream_writer()
    except RuntimeError:
        return
    writer({"stage": stage, "message": message, "fraction": fraction})


def model_progress(stage: str, verb: str) -> AttemptListener:
    """A listener for ``providers.base.listen_to_attempts`` that names the model really being
    called ("drafting with local (skipped: deepseek-v3.1-q8, ...)") and each one that fails."""

    def listener(event: AttemptEvent, model: str, detail: str) -> None:
        if event == "calling":
            emit(stage, f"{verb} with {model}" + (f" ({detail})" if detail else ""))
        else:
            emit(stage, f"{model} failed ({detail}); trying the next model")

    return listener
