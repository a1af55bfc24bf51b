"""A job its dead server left unfinished past ``checkpointer.retention_days``, as another live
server's clients see it (``mcp_server.jobresume._expired``)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from test_mcp_jobs import _CountingRunner, _RunsUntilCancelled

JOB = {"project": "swarm", "action": "delegate", "input": {"task": "t"}}


async def _left_by_a_dead_server(tmp_path: Path, age_s: float, retention_days: float = 7) -> tuple[Any, Any, str]:
    """(B, B's runner, the job id): A started the job and died ``age_s`` ago; B lives on."""
    from mcp_server.jobs import JobManager
    from mcp_server.jobstore import JobStore

    hangs, finishes = _RunsUntilCancelled(), _CountingRunner(0.1)
    first = JobManager(JobStore(tmp_path / "jobs.sqlite"), lambda: hangs, wait_budget_s=lambda: 0)
    second = JobManager(JobStore(tmp_path / "jobs.sqlite"), lambda: finishes, wait_budget_s=lambda: 0,
                        retention_days=lambda: retention_days)
    handle = await first.submit(dict(JOB), "me", wait_s=0)
    await hangs.started.wait()
    first._closing = True
    for task in list(first._tasks.values()):
        task.cancel()
    first.store.lease.close()  # A's process is gone ...
    with sqlite3.connect(tmp_path / "jobs.sqlite") as jobs:  # ... since ``age_s``
        jobs.execute("UPDATE jobs SET updated_at = updated_at - ? WHERE job_id = ?", (age_s, handle["job_id"]))
    return second, finishes, handle["job_id"]


async def test_job_status_of_a_job_that_expires_on_the_call_says_failed_not_in_progress(tmp_path: Path) -> None:
    """job_status took the job over, stored it FAILED (JobExpired), and answered IN_PROGRESS:
    the client kept polling a job that had ended."""
    second, finishes, job_id = await _left_by_a_dead_server(tmp_path, 9 * 86400)
    status = second.status(job_id, "me")
    assert finishes.runs == []
    assert status["status"] == "FAILED" and status["error"]["type"] == "JobExpired", status


async def test_list_jobs_of_a_job_that_expires_on_the_call_lists_it_failed(tmp_path: Path) -> None:
    second, finishes, job_id = await _left_by_a_dead_server(tmp_path, 9 * 86400)
    listed = {row["job_id"]: row for row in second.list("me")}
    assert finishes.runs == []
    assert listed[job_id]["status"] == "FAILED" and listed[job_id]["error"]["type"] == "JobExpired", listed


async def test_a_job_that_expires_on_a_call_tells_the_subscribers_it_ended(tmp_path: Path) -> None:
    """A job that ends is announced (``on_finished``: the resource's subscribers re-read it); one
    that expired at a take-over was not, and a subscriber waited for good."""
    second, _, job_id = await _left_by_a_dead_server(tmp_path, 9 * 86400)
    told: list[str] = []

    async def on_finished(finished: str) -> None:
        told.append(finished)

    second._on_finished = on_finished
    done = await second.result(job_id, "me", wait_s=1)
    assert done["error"]["type"] == "JobExpired"
    for _ in range(50):  # announced on the server's loop, without waiting for it
        if told:
            break
        await asyncio.sleep(0.01)
    assert told == [job_id]


async def test_an_expiry_under_a_fractional_retention_says_an_age_past_the_limit(tmp_path: Path) -> None:
    """retention_days=0.01 (14.4 minutes), a job 30 minutes old: it said "stopped unfinished 0.0
    days ago", younger than the limit it was expired for."""
    second, _, job_id = await _left_by_a_dead_server(tmp_path, 30 * 60, retention_days=0.01)
    done = await second.result(job_id, "me", wait_s=1)
    said = done["error"]["message"]
    assert done["error"]["type"] == "JobExpired", done
    assert "0.0 days" not in said and "30 minutes ago" in said, said
    assert "checkpointer.retention_days=0.01" in said, said


async def test_a_job_younger_than_the_retention_is_taken_over_and_run(tmp_path: Path) -> None:
    """The control: a day old under a 7-day retention, it runs here (status says so at once)."""
    second, finishes, job_id = await _left_by_a_dead_server(tmp_path, 86400)
    assert second.status(job_id, "me")["running_here"] is True
    done = await second.result(job_id, "me", wait_s=5)
    assert done["status"] == "COMPLETED" and finishes.runs == [job_id]
