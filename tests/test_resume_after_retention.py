"""A job given again after ``checkpointer.retention_days`` pruned its checkpoints.

It ran again from the start, paying for every model call again, and nothing said so: the result
read like a first run. Now a run of a pruned job id says it started over (a warning in the
output, the dispatch step's detail), and the MCP server no longer runs an unfinished job that old
again on its own when it restarts: the job fails as ``JobExpired`` and says how to run it anew.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp import Client
from mcp_helpers import use_fake_llm, write_config

ROOT = Path(__file__).resolve().parents[1]
APPROVE = {"approved": True, "score": 9, "issues": [], "suggestion": ""}
EIGHT_DAYS_S = 8 * 86400
PG_DSN = os.environ.get("SWARM_TEST_PG_DSN")
needs_pg = pytest.mark.skipif(not PG_DSN, reason="SWARM_TEST_PG_DSN not set (scripts/test starts PostgreSQL)")


def _config(tmp_path: Path, kind: str) -> Any:
    from core.config import load_config

    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["checkpointer"] = {"kind": kind, "path": str(tmp_path / "cp.sqlite"), "retention_days": 7}
    if kind == "postgres":
        raw["checkpointer"] = {"kind": kind, "dsn": PG_DSN, "retention_days": 7}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_config(path)


@pytest.mark.parametrize("kind", ["sqlite", "memory", pytest.param("postgres", marks=needs_pg)])
async def test_a_job_resumed_after_its_checkpoints_were_pruned_says_it_ran_again_from_the_start(
        tmp_path: Path, kind: str) -> None:
    from graphs.checkpoint import open_checkpointer, prune_checkpoints
    from graphs.context import JobContext, Providers
    from providers.testing import FunctionLLM
    from swarm.dispatcher import dispatch

    config = _config(tmp_path, kind)
    calls: list[str] = []
    review_fails = [True]

    def answer(messages: Any, llm_config: Any) -> Any:
        calls.append(llm_config.step)
        if llm_config.step == "review" and review_fails[0]:
            review_fails[0] = False
            raise RuntimeError("the worker died mid-review")
        return APPROVE if llm_config.step == "review" else "a draft"

    job_id = f"old-job-{kind}-{time.time_ns()}"  # a shared PostgreSQL keeps earlier runs' tombstones
    job = {"project": "swarm", "action": "delegate", "job_id": job_id, "input": {"task": "hi"}}
    async with open_checkpointer(config, prune=False) as saver:
        async def make(job_id: str) -> JobContext:
            return JobContext(job_id=job_id, config=config, checkpointer=saver,
                              providers=Providers(config, {"llm": lambda: FunctionLLM(answer)}))

        first = await dispatch(job, make)
        assert first["status"] == "FAILED" and calls == ["draft", "review"]
        assert job_id in await prune_checkpoints(config, saver, now=time.time() + EIGHT_DAYS_S)
        again = await dispatch(job, make)

    assert again["status"] == "COMPLETED", again["error"]
    assert calls == ["draft", "review", "draft", "review"]  # the draft was paid for again ...
    said = "\n".join(again["output"]["warnings"])  # ... and the answer says so
    assert f"{job_id}'s checkpoints were pruned (checkpointer.retention_days=7" in said, said
    assert "ran again from the start" in said and "paid for, again" in said
    dispatch_step = again["trace"][-1]
    assert dispatch_step["step"] == "dispatch" and "checkpoints were pruned" in (dispatch_step["detail"] or "")


async def test_a_job_given_again_that_was_never_pruned_has_no_such_warning(tmp_path: Path) -> None:
    from graphs.checkpoint import open_checkpointer, prune_checkpoints
    from graphs.context import JobContext, Providers
    from providers.testing import FunctionLLM
    from swarm.dispatcher import dispatch

    config = _config(tmp_path, "sqlite")
    llm = FunctionLLM(lambda messages, c: APPROVE if c.step == "review" else "a draft")
    async with open_checkpointer(config, prune=False) as saver:
        async def make(job_id: str) -> JobContext:
            return JobContext(job_id=job_id, config=config, checkpointer=saver,
                              providers=Providers(config, {"llm": lambda: llm}))

        await prune_checkpoints(config, saver, now=time.time() + EIGHT_DAYS_S)  # prunes nothing: no job yet
        fresh = await dispatch({"project": "swarm", "action": "delegate", "job_id": "new-1", "input": {"task": "x"}},
                               make)
    assert fresh["status"] == "COMPLETED"
    assert not fresh["output"].get("warnings") and not fresh["trace"][-1]["detail"]


async def test_an_mcp_job_left_unfinished_past_the_retention_is_not_run_again_unasked(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server stopped with a job unfinished; the next started nine days later. It resumed the job
    from the start (its checkpoints were pruned), paying for the draft again, for nobody who asked."""
    from core.config import load_config, state_dir
    from graphs.checkpoint import prune_checkpoints
    from mcp_server.server import build_server
    from providers.testing import FunctionLLM

    config = write_config(tmp_path, wait_budget_s=0.5)
    never = asyncio.Event()
    calls: list[str] = []

    async def first_server(messages: Any, llm_config: Any) -> Any:
        calls.append(llm_config.step)
        if llm_config.step == "review":
            await never.wait()  # the server stops during the review
        return "a draft"

    use_fake_llm(monkeypatch, FunctionLLM(first_server))
    async with Client(build_server(str(config))) as client:
        handle = (await client.call_tool("delegate", {"task": "survive nine days"})
                  ).structured_content
        assert handle["status"] == "IN_PROGRESS"
        for _ in range(200):
            if "review" in calls:
                break
            await asyncio.sleep(0.02)
    assert calls == ["draft", "review"]
    job_id = handle["job_id"]

    # nine days pass: the row was last written then, and the checkpoints' pruning ran meanwhile
    jobs = sqlite3.connect(state_dir() / "jobs.sqlite")
    with jobs:
        jobs.execute("UPDATE jobs SET updated_at = updated_at - ?, created_at = created_at - ? WHERE job_id = ?",
                     (9 * 86400, 9 * 86400, job_id))
    jobs.close()
    assert await prune_checkpoints(load_config(config), now=time.time() + 9 * 86400) == [job_id]

    def second_server(messages: Any, llm_config: Any) -> Any:
        calls.append(llm_config.step)
        return APPROVE if llm_config.step == "review" else "a draft paid for twice"

    use_fake_llm(monkeypatch, FunctionLLM(second_server))
    async with Client(build_server(str(config))) as client:
        done = await client.call_tool("job_result", {"job_id": job_id, "wait_s": 10})
    result = done.structured_content
    assert calls == ["draft", "review"], calls  # nothing was run (nor paid for) again
    assert result["status"] == "FAILED" and result["error"]["type"] == "JobExpired", result
    said = result["error"]["message"]
    assert "checkpointer.retention_days=7" in said and "stopped unfinished 9.0 days ago" in said, said
    assert "call the tool again with the same arguments" in said



def test_a_checkpoint_id_gives_back_the_time_it_was_minted() -> None:
    """The tombstone says when a pruned job's last step ran, read from its newest checkpoint id."""
    from langgraph.checkpoint.base.id import uuid6

    from graphs.checkpoint import checkpoint_id_floor, checkpoint_id_time

    before = time.time()
    minted = checkpoint_id_time(str(uuid6()))
    assert before - 0.01 <= minted <= time.time() + 0.01
    assert checkpoint_id_time(checkpoint_id_floor(1_700_000_000.5)) == pytest.approx(1_700_000_000.5, abs=1e-6)


async def test_a_job_taken_over_from_a_gone_server_past_the_retention_is_not_run_again(tmp_path: Path) -> None:
    """B, a server that lives on, is asked for the result of A's job; A died nine days ago. B took
    the job over and ran it from the start (its checkpoints pruned), paying again: it expires now,
    as at a restart."""
    from test_mcp_jobs import _CountingRunner, _RunsUntilCancelled

    from mcp_server.jobs import JobManager
    from mcp_server.jobstore import JobStore

    hangs, finishes = _RunsUntilCancelled(), _CountingRunner(0.1)
    first = JobManager(JobStore(tmp_path / "jobs.sqlite"), lambda: hangs, wait_budget_s=lambda: 0)
    second = JobManager(JobStore(tmp_path / "jobs.sqlite"), lambda: finishes, wait_budget_s=lambda: 0,
                        retention_days=lambda: 7)
    handle = await first.submit({"project": "swarm", "action": "delegate", "input": {"task": "t"}}, "me", wait_s=0)
    await hangs.started.wait()
    first._closing = True
    for task in list(first._tasks.values()):
        task.cancel()
    first.store.lease.close()  # A's process is gone ...
    with sqlite3.connect(tmp_path / "jobs.sqlite") as jobs:  # ... nine days ago
        jobs.execute("UPDATE jobs SET updated_at = updated_at - ? WHERE job_id = ?", (9 * 86400, handle["job_id"]))
    done = await second.result(handle["job_id"], "me", wait_s=5)
    assert finishes.runs == []  # nothing run (nor paid for) again
    assert done["status"] == "FAILED" and done["error"]["type"] == "JobExpired", done
    assert "checkpointer.retention_days=7" in done["error"]["message"]
