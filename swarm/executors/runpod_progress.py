"""Progress of a job on a RunPod endpoint, from its ``/status`` polls and ``/stream`` chunks."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any, Protocol

import httpx

from core.redact import redact
from graphs.context import ProgressFn

#: how often a job still waiting for a worker is reported (the first report comes at once)
QUEUE_NOTICE_S = 10.0


class Endpoint(Protocol):
    """What a relay needs of the runner (``RunPodExecutor``): whose queue, and its streams."""

    endpoint_id: str
    follow_stream: bool

    async def stream(self, job_id: str, http: httpx.AsyncClient | None = None) -> dict[str, Any]: ...


class ProgressRelay:
    """Progress from a job's ``/status`` polls: "queued, no worker has taken it yet (N s)" every
    ``QUEUE_NOTICE_S`` while it waits, then what the worker reports (``progress_update``: the status
    ``output`` while IN_PROGRESS, each change once) and, when the runner follows streams, the
    ``/stream`` chunks. Used by the runner's own wait and by the MCP server's follower alike."""

    def __init__(self, runner: Endpoint, progress: ProgressFn | None, since: float) -> None:
        self._runner, self._progress, self._since = runner, progress, since
        self._told_at = -math.inf
        self._last: Any = None

    async def saw(self, job_id: str, state: Mapping[str, Any], http: httpx.AsyncClient | None = None) -> None:
        progress, status = self._progress, state.get("status")
        if progress is None:
            return
        if status == "IN_QUEUE" and time.perf_counter() - self._told_at >= QUEUE_NOTICE_S:
            self._told_at = time.perf_counter()
            await progress("queued", f"queued on endpoint {self._runner.endpoint_id}, no worker has taken it yet"
                           f" ({max(0.0, time.time() - self._since):.0f} s)", None)
        if status != "IN_PROGRESS":
            return
        if self._runner.follow_stream:
            for chunk in (await self._runner.stream(job_id, http)).get("stream") or []:
                await forward_progress(progress, chunk.get("output") if isinstance(chunk, dict) else chunk)
        update = state.get("output")
        if update is not None and update != self._last:
            self._last = update
            await forward_progress(progress, update)


async def forward_progress(progress: ProgressFn, update: Any) -> None:
    """One update a worker sent (``{stage, message, fraction}``, or anything else, shown redacted)."""
    if isinstance(update, dict) and "stage" in update:
        await progress(str(update["stage"]), str(update.get("message", "")), update.get("fraction"))
    elif update is not None:
        await progress("worker", redact(str(update))[:200], None)

