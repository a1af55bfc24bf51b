"""What a job only happens to open first and then serves every job (the checkpoint store, its pool's
background tasks, the daily pruning) logs as the server's own work: no job id, and no MCP client's
log (its records went to the client of whichever job came first, for as long as it stayed connected)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from swarm.logs import job_id_var, log_audience


async def test_the_store_and_its_background_tasks_belong_to_no_client(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import graphs.checkpoint
    import graphs.image.retention
    from swarm.runtime import Runtime

    monkeypatch.setenv("SWARM_HOME", str(tmp_path))
    seen: dict[str, Any] = {}

    async def background() -> None:  # a pool's reconnect task, started while the store opens
        seen["pool task"] = (log_audience.get(), job_id_var.get())

    @contextlib.asynccontextmanager
    async def store(config: Any) -> AsyncIterator[object]:
        seen["opening"] = (log_audience.get(), job_id_var.get())
        await asyncio.create_task(background())
        yield object()

    async def prune(*args: Any) -> None:
        seen["pruning"] = (log_audience.get(), job_id_var.get())

    monkeypatch.setattr(graphs.checkpoint, "open_checkpointer", store)
    monkeypatch.setattr(graphs.image.retention, "prune_if_due", prune)
    runtime = Runtime()
    client, job = object(), "job-of-the-first-client"
    audience, bound = log_audience.set(client), job_id_var.set(job)
    try:
        await runtime.checkpointer(runtime.config)
        await asyncio.gather(*runtime.housekeeping)
        assert (log_audience.get(), job_id_var.get()) == (client, job)  # the job's own context is back
    finally:
        job_id_var.reset(bound)
        log_audience.reset(audience)
        await runtime.aclose()
    assert seen == {"opening": (None, None), "pool task": (None, None), "pruning": (None, None)}, seen
