"""A job lost at a restart (its input not kept, or its checkpoints past the retention) is listed
with the time it ran, from its start to the last time its server recorded it (or its last step);
list_jobs and job_status said "0.0 s" of a job that had run for 45 s."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from mcp import Client
from mcp_helpers import SlowLLM, use_fake_llm, write_config
from test_review31d_expiry_by_checkpoint import DAY_S, _resumed_by

RAN_S = 45.0


async def test_a_job_lost_at_a_restart_is_listed_with_the_time_it_ran(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.config import state_dir
    from mcp_server.server import build_server

    config = write_config(tmp_path, wait_budget_s=0.3)
    use_fake_llm(monkeypatch, SlowLLM(gate=asyncio.Event()))
    task = "connect with postgresql://app:hunter2-secret-pw@db/prod and list the tables"  # never kept: lost
    async with Client(build_server(str(config))) as client:
        job_id = (await client.call_tool("delegate", {"task": task, "kind": "critical"})).structured_content["job_id"]
    with sqlite3.connect(state_dir() / "jobs.sqlite") as jobs:  # it had run 45 s when its server stopped
        jobs.execute("UPDATE jobs SET created_at = updated_at - ? WHERE job_id = ?", (RAN_S, job_id))
    use_fake_llm(monkeypatch, SlowLLM(text="ran on the masked task"))
    async with Client(build_server(str(config))) as client:
        listed = await client.call_tool("list_jobs", {})
        status = (await client.call_tool("job_status", {"job_id": job_id})).structured_content

    line = next(line for line in listed.content[0].text.splitlines() if line.startswith(job_id))
    assert "FAILED: JobLost" in line and line.endswith(", 45.0 s"), line
    assert status["status"] == "FAILED" and status["elapsed_ms"] == pytest.approx(RAN_S * 1000, abs=1), status


async def test_a_job_expired_by_its_last_checkpoint_ran_until_that_step(tmp_path: Path) -> None:
    """Started 9 days ago, its last step 8 days ago: it ran a day, not 0 s."""
    done, runner, _ = await _resumed_by(tmp_path, 8 * DAY_S)
    assert runner.runs == [] and done["error"]["type"] == "JobExpired", done
    assert done["elapsed_ms"] == pytest.approx(DAY_S * 1000, rel=1e-3), done
