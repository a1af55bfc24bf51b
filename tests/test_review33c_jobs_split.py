"""``mcp_server.jobs`` split: ``submit`` (idempotency keys, queuing on an endpoint, a job refused on
its input) lives in ``mcp_server.jobs_submit``; the names other modules import from
``mcp_server.jobs`` (``calls.py`` catches ``IdempotencyConflict`` from there) still answer, and are
the very objects ``submit`` raises and uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


class _Echo:
    """A local runner: every job completes at once with its input."""

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, job: dict[str, Any], progress: Any) -> dict[str, Any]:
        self.runs += 1
        return {"status": "COMPLETED", "output": job["input"], "trace": [{"provider": "echo"}]}


async def test_an_idempotency_key_reused_for_other_input_raises_what_mcp_server_jobs_names(tmp_path: Path) -> None:
    import mcp_server.jobs as jobs
    import mcp_server.jobs_submit as jobs_submit
    from mcp_server.jobstore import JobStore

    assert jobs.IdempotencyConflict is jobs_submit.IdempotencyConflict
    assert jobs.refused_before_running is jobs_submit.refused_before_running
    runner = _Echo()
    manager = jobs.JobManager(JobStore(tmp_path / "jobs.sqlite"), lambda: runner, wait_budget_s=lambda: 5)
    job = {"project": "swarm", "action": "delegate", "input": {"task": "t"}}
    first = await manager.submit(job, "me", idempotency_key="k1")
    assert first["status"] == "COMPLETED" and first["output"] == {"task": "t"}
    again = await manager.submit(job, "me", idempotency_key="k1")  # a retry: the first job, not a second run
    assert again["job_id"] == first["job_id"] and runner.runs == 1
    with pytest.raises(jobs.IdempotencyConflict, match="idempotency_key 'k1' already names job"):
        await manager.submit({**job, "input": {"task": "other"}}, "me", idempotency_key="k1")
    refused = {"status": "FAILED", "error": {"type": "InputError"}, "trace": [{"provider": "dispatcher"}]}
    assert jobs.refused_before_running(refused) and not jobs.refused_before_running(first)
    await manager.aclose()
