"""What a pruned job id's tombstone tells a run of that id again (``graphs.checkpoint.pruned_restart``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from test_resume_after_retention import _config, needs_pg

DAY_S = 86400.0


async def _checkpoint(saver: Any, thread_id: str) -> None:
    """One checkpoint of ``thread_id``, minted now (as a job's first step stores it)."""
    from langgraph.checkpoint.base import empty_checkpoint

    config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    await saver.aput(config, empty_checkpoint(), {"source": "input", "step": -1}, {})


@pytest.mark.parametrize("kind", ["sqlite", "memory", pytest.param("postgres", marks=needs_pg)])
async def test_a_tombstone_past_its_366_days_no_longer_says_the_job_was_pruned(tmp_path: Path, kind: str) -> None:
    """A job pruned, then its id given again 400 days later: nothing pruned meanwhile, so nothing
    forgot the tombstone, and the run was told its checkpoints were pruned (a year and more ago),
    past the ``TOMBSTONE_KEEP_DAYS`` the tombstone is kept for."""
    from graphs.checkpoint import TOMBSTONE_KEEP_DAYS, open_checkpointer, prune_checkpoints, pruned_restart

    config = _config(tmp_path, kind)
    job_id = f"yearly-{time.time_ns()}"  # a shared PostgreSQL keeps earlier runs' checkpoints and tombstones
    pruned_at = time.time() + 8 * DAY_S
    async with open_checkpointer(config, prune=False) as saver:
        await _checkpoint(saver, job_id)
        assert job_id in await prune_checkpoints(config, saver, now=pruned_at)
        within = await pruned_restart(saver, job_id, 7, now=pruned_at + (TOMBSTONE_KEEP_DAYS - 1) * DAY_S)
        assert within is not None and f"{job_id}'s checkpoints were pruned" in within
        later = pruned_at + (TOMBSTONE_KEEP_DAYS + 34) * DAY_S
        assert job_id not in await prune_checkpoints(config, saver, now=later)
        assert await pruned_restart(saver, job_id, 7, now=later) is None


async def test_a_job_pruned_under_a_fractional_retention_says_its_age_in_minutes(tmp_path: Path) -> None:
    """retention_days=0.01 (14.4 minutes), a job whose last step ran 30 minutes ago: it said "its
    last step ran 0.0 days ago", younger than the limit it was pruned for."""
    from graphs.checkpoint import open_checkpointer, prune_checkpoints, pruned_restart

    config = _config(tmp_path, "sqlite")
    config = config.model_copy(update={"checkpointer": config.checkpointer.model_copy(update={"retention_days": 0.01})})
    half_an_hour_on = time.time() + 30 * 60
    async with open_checkpointer(config, prune=False) as saver:
        await _checkpoint(saver, "brief")
        assert await prune_checkpoints(config, saver, now=half_an_hour_on) == ["brief"]
        said = await pruned_restart(saver, "brief", 0.01, now=half_an_hour_on)
    assert said is not None and "retention_days=0.01" in said, said
    assert "0.0 days" not in said and "its last step ran 30 minutes ago" in said, said
