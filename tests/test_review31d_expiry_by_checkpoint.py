"""An unfinished job judged by its last checkpoint, not only by its row (``mcp_server.jobresume``).

A job checkpointed on day 0; a restart on day 6 claimed it (its row's ``updated_at`` moved to day 6)
and was stopped before the next step; a restart on day 8 with ``retention_days=7`` saw a row two
days old, not expired, while the day-0 checkpoint was pruned: the job ran again from the start,
paying for every step again, with only a warning.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from mcp import Client
from mcp_helpers import use_fake_llm, write_config
from test_mcp_jobs import _CountingRunner

DAY_S = 86400.0
JOB = {"project": "swarm", "action": "delegate", "input": {"task": "survive a week"}}


async def _checkpoint_minted(saver: Any, thread_id: str, at: float) -> None:
    """A checkpoint of ``thread_id`` as a step stores it, its id minted at Unix time ``at``."""
    from langgraph.checkpoint.base import empty_checkpoint

    from graphs.checkpoint import checkpoint_id_floor

    checkpoint = {**empty_checkpoint(), "id": checkpoint_id_floor(at)}
    config = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
    await saver.aput(config, checkpoint, {"source": "loop", "step": 1}, {})


def _left_unfinished(jobs_file: Path, job_id: str, *, created_s_ago: float, touched_s_ago: float) -> None:
    """A local job row IN_PROGRESS whose server process is gone: created ``created_s_ago``, its
    row last written ``touched_s_ago`` (a restart that claimed it, then was stopped)."""
    from mcp_server.jobstore import JobStore

    store = JobStore(jobs_file)
    store.create(job_id, "local", JOB)
    store.close()  # its lease with it: the process that ran it is gone
    with sqlite3.connect(jobs_file) as jobs:
        jobs.execute("UPDATE jobs SET created_at = ?, updated_at = ? WHERE job_id = ?",
                     (time.time() - created_s_ago, time.time() - touched_s_ago, job_id))


async def test_a_restart_does_not_rerun_a_job_whose_day_0_checkpoint_was_pruned(
        tmp_path: Path, monkeypatch: Any) -> None:
    """Day 0: the draft checkpointed. Day 6: a restart claimed the job and was stopped. Day 8: the
    next restart prunes the day-0 checkpoint and must not run the job again from the start."""
    from core.config import load_config, state_dir
    from graphs.checkpoint import open_checkpointer
    from mcp_server.server import build_server
    from providers.testing import FunctionLLM

    config = write_config(tmp_path, wait_budget_s=0.5)
    job_id = "job-checkpointed-day-0"
    async with open_checkpointer(load_config(config), prune=False) as saver:
        await _checkpoint_minted(saver, job_id, time.time() - 8 * DAY_S)
    _left_unfinished(state_dir() / "jobs.sqlite", job_id, created_s_ago=8 * DAY_S, touched_s_ago=2 * DAY_S)

    calls: list[str] = []

    def paid(messages: Any, llm_config: Any) -> Any:
        calls.append(llm_config.step)
        return {"approved": True, "score": 9, "issues": [], "suggestion": ""} if llm_config.step == "review" else "x"

    use_fake_llm(monkeypatch, FunctionLLM(paid))
    async with Client(build_server(str(config))) as client:
        done = (await client.call_tool("job_result", {"job_id": job_id, "wait_s": 10})).structured_content
    assert calls == [], calls  # nothing was run (nor paid for) again
    assert done["status"] == "FAILED" and done["error"]["type"] == "JobExpired", done
    said = done["error"]["message"]
    assert "its last step ran 8.0 days ago" in said and "checkpoints were pruned" in said, said
    assert "checkpointer.retention_days=7" in said and "call the tool again with the same arguments" in said


async def _resumed_by(tmp_path: Path, step_s_ago: float | None, *, prune: bool = False) -> tuple[Any, Any, list[str]]:
    """(the job's envelope, the runner, the job ids looked up) of a job left unfinished, its row
    touched 2 days ago and its last step ``step_s_ago`` (None: none), taken up by a restart with
    ``retention_days=7`` over a real saver (its checkpoint pruned first with ``prune``)."""
    from core.config import load_config
    from graphs.checkpoint import last_step, open_checkpointer, prune_checkpoints
    from mcp_server.jobs import JobManager
    from mcp_server.jobstore import JobStore

    config = load_config(write_config(tmp_path))
    config = config.model_copy(update={"checkpointer": config.checkpointer.model_copy(
        update={"kind": "sqlite", "path": str(tmp_path / "cp.sqlite")})})
    job_id, looked_up = "job-left", []
    _left_unfinished(tmp_path / "jobs.sqlite", job_id, created_s_ago=9 * DAY_S, touched_s_ago=2 * DAY_S)
    async with open_checkpointer(config, prune=False) as saver:
        if step_s_ago is not None:
            await _checkpoint_minted(saver, job_id, time.time() - step_s_ago)
        if prune:
            assert await prune_checkpoints(config, saver) == [job_id]

        async def step_of(thread_id: str) -> Any:
            looked_up.append(thread_id)
            return await last_step(saver, thread_id)

        runner = _CountingRunner(0.01)
        manager = JobManager(JobStore(tmp_path / "jobs.sqlite"), lambda: runner, wait_budget_s=lambda: 0,
                             retention_days=lambda: 7, last_step=step_of)
        assert manager.resume_unfinished() == [job_id]
        done = await manager.result(job_id, "local", wait_s=5)
    return done, runner, looked_up


async def test_a_job_taken_up_whose_last_checkpoint_is_past_the_retention_is_not_run(tmp_path: Path) -> None:
    """Its checkpoint not pruned yet (the store prunes once a day): its age says it all the same."""
    done, runner, looked_up = await _resumed_by(tmp_path, 8 * DAY_S)
    assert runner.runs == [] and looked_up == ["job-left"]
    assert done["status"] == "FAILED" and done["error"]["type"] == "JobExpired", done
    said = done["error"]["message"]
    assert "its last step ran 8.0 days ago" in said and "checkpoints are pruned after" in said, said


async def test_a_job_taken_up_whose_checkpoints_left_a_tombstone_is_not_run(tmp_path: Path) -> None:
    done, runner, _ = await _resumed_by(tmp_path, 8 * DAY_S, prune=True)
    assert runner.runs == []
    assert done["error"]["type"] == "JobExpired" and "checkpoints were pruned" in done["error"]["message"], done


async def test_a_job_taken_up_whose_last_checkpoint_is_within_the_retention_resumes(tmp_path: Path) -> None:
    done, runner, _ = await _resumed_by(tmp_path, 3 * DAY_S)
    assert runner.runs == ["job-left"] and done["status"] == "COMPLETED", done


async def test_a_job_taken_up_before_any_step_finished_is_judged_by_its_row(tmp_path: Path) -> None:
    """No checkpoint, no tombstone: its row (2 days old) is all there is, and it resumes."""
    done, runner, looked_up = await _resumed_by(tmp_path, None)
    assert looked_up == ["job-left"] and runner.runs == ["job-left"] and done["status"] == "COMPLETED", done


async def test_a_restart_with_nothing_unfinished_reads_no_checkpoint(tmp_path: Path) -> None:
    """The restart path stays cheap: no lookup without an unfinished job; a job its row already
    expires is refused without one."""
    from mcp_server.jobs import JobManager
    from mcp_server.jobstore import JobStore

    looked_up: list[str] = []

    async def step_of(thread_id: str) -> Any:
        looked_up.append(thread_id)
        return None

    def manager() -> Any:
        return JobManager(JobStore(tmp_path / "jobs.sqlite"), lambda: _CountingRunner(0.01), wait_budget_s=lambda: 0,
                          retention_days=lambda: 7, last_step=step_of)

    assert manager().resume_unfinished() == []
    _left_unfinished(tmp_path / "jobs.sqlite", "row-expired", created_s_ago=9 * DAY_S, touched_s_ago=9 * DAY_S)
    assert manager().resume_unfinished() == []
    assert looked_up == []
