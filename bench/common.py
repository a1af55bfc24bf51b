"""Small helpers shared by the bench scripts: timing, medians, one JSON record per figure.

A suite keeps what it measured by printing each finished part at once (``emit_part``,
``emit_record``): the harness writes it to the results files the moment it arrives, so a suite
cut by its time budget or killed by a crash keeps its finished rows. ``seconds_left`` reads the
budget the harness gave the suite, so slow rows can size themselves to it.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
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


#: Prefix of a stdout line that carries one finished part of a suite: ``bench-part {"key": k, "value": v}``.
PART_PREFIX = "bench-part "
#: Environment variable holding the wall-clock time (``time.time()``) by which the suite must be done.
DEADLINE_ENV = "BENCH_DEADLINE"


def emit_part(key: str, value: Any) -> None:
    """Print one finished part of a suite's summary now, so a later timeout or crash cannot lose it."""
    sys.stdout.write(PART_PREFIX + json.dumps({"key": key, "value": value}) + "\n")
    sys.stdout.flush()


def emit_record(record: dict[str, Any]) -> dict[str, Any]:
    """Print one finished figure record now (a suite that prints records, not a summary)."""
    emit_part(record["name"], record)
    return record


def seconds_left(default: float = float("inf")) -> float:
    """Seconds until the harness's deadline for this suite; ``default`` when run by hand."""
    deadline = os.environ.get(DEADLINE_ENV)
    if not deadline:
        return default
    try:
        return float(deadline) - time.time()
    except ValueError:
        return default


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


@functools.cache
def gpu_name() -> str | None:
    """The CUDA GPU torch sees (``NVIDIA H200``), or None: no torch, no GPU, or a driver that fails.
    torch is imported on the first call only, and the answer kept."""
    import importlib.util

    try:
        if importlib.util.find_spec("torch") is None:
            return None
        import torch

        return str(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else None
    except (ImportError, ValueError, RuntimeError, OSError, AssertionError) as exc:  # a broken driver is "no GPU", said once
        print(f"bench: GPU detection failed ({type(exc).__name__}: {exc}); reporting no GPU", file=sys.stderr)
        return None


def machine() -> str:
    """Which machine made a figure: CPU model and core count (``Intel(R) Xeon(R) ..., 2 cores``)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu_model()}, {cores} cores"


def bare_three_node_graph(state_type: Any, call: Callable[[Any], Awaitable[Any]], last: Callable[[Any], Awaitable[Any]],
                          second: Callable[[Any], Awaitable[Any]] | None = None, checkpointer: Any = None) -> Any:
    """The anchor graph: START -> call -> call (or ``second``) -> last -> END, no checkpointer by default."""
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(state_type)
    graph.add_node("one", call)
    graph.add_node("two", second or call)
    graph.add_node("three", last)
    graph.add_edge(START, "one")
    graph.add_edge("one", "two")
    graph.add_edge("two", "three")
    graph.add_edge("three", END)
    return graph.compile(checkpointer=checkpointer)
