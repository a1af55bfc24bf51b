"""``settle()``: collect once and freeze what survives, when a long-lived process has started.

A door (the RunPod worker, the MCP server, a local worker process) ends its start-up holding
~100k long-lived objects: modules, compiled graphs, config, pydantic schemas. Python's cyclic
collector walks all of them on every full collection, and under load (500 jobs at once) full
collections come every few hundred milliseconds. ``gc.freeze()`` moves them out of the
collector's generations for good, so a collection walks only what jobs made. Objects frozen here
are never collected even if they later become garbage in a cycle: call it once, after start-up,
never per job.
"""

from __future__ import annotations

import gc


def settle() -> int:
    """Collect, then freeze every surviving object; returns how many are frozen now."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
