"""Small helpers shared by the bench scripts: timing, medians, one JSON record per figure."""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any


async def timed(fn: Callable[[], Awaitable[Any]], repeat: int, warmup: int = 1) -> list[float]:
    """Milliseconds of ``repeat`` runs of ``fn`` after ``warmup`` unrecorded ones."""
    for _ in range(warmup):
        await fn()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def figure(name: str, value: float, unit: str, anchor: str, anchor_value: float, goal: str,
           met: bool | None, command: str, **extra: Any) -> dict[str, Any]:
    """One record: name, value, unit, anchor, anchor_value, ratio, goal, met, command."""
    return {
        "name": name,
        "value": round(value, 3),
        "unit": unit,
        "anchor": anchor,
        "anchor_value": round(anchor_value, 3),
        "ratio": round(value / anchor_value, 3) if anchor_value else None,
        "goal": goal,
        "met": met,
        "command": command,
        **extra,
    }


def median(samples: list[float]) -> float:
    return statistics.median(samples)


def emit(records: list[dict[str, Any]]) -> None:
    json.dump(records, sys.stdout, indent=2)
    sys.stdout.write("\n")


def bare_three_node_graph(state_type: Any, call: Callable[[Any], Awaitable[Any]], last: Callable[[Any], Awaitable[Any]],
                          second: Callable[[Any], Awaitable[Any]] | None = None) -> Any:
    """The anchor graph: START -> call -> call (or ``second``) -> last -> END, no checkpointer."""
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(state_type)
    graph.add_node("one", call)
    graph.add_node("two", second or call)
    graph.add_node("three", last)
    graph.add_edge(START, "one")
    graph.add_edge("one", "two")
    graph.add_edge("two", "three")
    graph.add_edge("three", END)
    return graph.compile()
