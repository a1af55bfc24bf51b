"""A pruned job id given to another input is a new job, not a rerun (``graphs.tombstones``).

``swarm run --job-id weekly`` with a new task eight days after the last one: the old ``weekly``
job's checkpoints were pruned, and the new job was told "the steps it had finished were run, and
paid for, again", though none of its steps had ever run. The tombstone now keeps the pruned job's
input digest; a tombstone written before it did (no digest) says what it said.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_resume_after_retention import PG_DSN, _config, needs_pg

APPROVE = {"approved": True, "score": 9, "issues": [], "suggestion": ""}
EIGHT_DAYS_S = 8 * 86400
OLD_TABLE = ("CREATE TABLE swarm_pruned_threads (thread_id TEXT PRIMARY KEY, last_step_at DOUBLE PRECISION NOT NULL,"
             " pruned_at DOUBLE PRECISION NOT NULL)")


@pytest.mark.parametrize("kind", ["sqlite", "memory", pytest.param("postgres", marks=needs_pg)])
async def test_a_pruned_job_id_given_a_new_task_is_not_said_to_have_paid_again(tmp_path: Path, kind: str) -> None:
    from graphs.checkpoint import open_checkpointer, prune_checkpoints, pruned_restart
    from graphs.context import JobContext, Providers
    from graphs.run import JOB_INPUT_KEY
    from providers.testing import FunctionLLM
    from swarm.dispatcher import dispatch

    config = _config(tmp_path, kind)
    calls: list[str] = []

    def answer(messages: Any, llm_config: Any) -> Any:
        calls.append(llm_config.step)
        return APPROVE if llm_config.step == "review" else "a draft"

    job_id = f"weekly-{kind}-{time.time_ns()}"  # a shared PostgreSQL keeps earlier runs' tombstones
    async with open_checkpointer(config, prune=False) as saver:
        async def make(job_id: str) -> JobContext:
            return JobContext(job_id=job_id, config=config, checkpointer=saver,
                              providers=Providers(config, {"llm": lambda: FunctionLLM(answer)}))

        last_week = await dispatch({"project": "swarm", "action": "delegate", "job_id": job_id,
                                    "input": {"task": "last week's summary"}}, make)
        assert last_week["status"] == "COMPLETED"
        stored = await saver.aget_tuple({"configurable": {"thread_id": job_id, "checkpoint_ns": ""}})
        digest = stored.metadata[JOB_INPUT_KEY]
        pruned_at = time.time() + EIGHT_DAYS_S
        assert job_id in await prune_checkpoints(config, saver, now=pruned_at)
        this_week = await dispatch({"project": "swarm", "action": "delegate", "job_id": job_id,
                                    "input": {"task": "this week's summary"}}, make)
        assert this_week["status"] == "COMPLETED", this_week["error"]
        assert calls == ["draft", "review", "draft", "review"]
        assert not this_week["output"].get("warnings"), this_week["output"]["warnings"]
        assert not this_week["trace"][-1]["detail"], this_week["trace"][-1]

        # the tombstone still tells a run of the pruned job's own input, or of an unknown one
        again = await pruned_restart(saver, job_id, 7, input_digest=digest, now=pruned_at)
        unknown = await pruned_restart(saver, job_id, 7, now=pruned_at)
    assert again is not None and "paid for, again" in again
    assert unknown is not None and "paid for, again" in unknown


async def test_a_sqlite_tombstone_table_from_before_digests_is_upgraded_in_place(tmp_path: Path) -> None:
    """A store pruned by an earlier release: its table has no digest column. Its tombstones keep
    warning (nothing says the input differs), and the next prune adds the column and records one."""
    from langgraph.checkpoint.base import empty_checkpoint
    from test_review31b_tombstones import _checkpoint

    from graphs.checkpoint import open_checkpointer, prune_checkpoints, pruned_restart

    config = _config(tmp_path, "sqlite")
    now = time.time()
    async with open_checkpointer(config, prune=False) as saver:
        with sqlite3.connect(tmp_path / "cp.sqlite") as conn:
            conn.execute(OLD_TABLE)
            conn.execute("INSERT INTO swarm_pruned_threads VALUES ('old-weekly', ?, ?)", (now - 9 * 86400, now))
        old = await pruned_restart(saver, "old-weekly", 7, input_digest="another input", now=now)
        assert old is not None and "old-weekly's checkpoints were pruned" in old

        await _checkpoint(saver, "new-weekly")
        for digest in ("digest-older", "digest-a"):  # the newest checkpoint's digest is the one kept
            digested = {"configurable": {"thread_id": "digested", "checkpoint_ns": "", "swarm_input": digest}}
            await saver.aput(digested, empty_checkpoint(), {"source": "loop", "step": 1}, {})
        assert sorted(await prune_checkpoints(config, saver, now=now + EIGHT_DAYS_S)) == ["digested", "new-weekly"]
        assert await pruned_restart(saver, "digested", 7, input_digest="digest-b", now=now) is None
        assert await pruned_restart(saver, "digested", 7, input_digest="digest-older", now=now) is None
        assert await pruned_restart(saver, "digested", 7, input_digest="digest-a", now=now) is not None
        assert await pruned_restart(saver, "old-weekly", 7, input_digest="digest-b", now=now) is not None

    with sqlite3.connect(tmp_path / "cp.sqlite") as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(swarm_pruned_threads)")]
        rows = dict(conn.execute("SELECT thread_id, input_digest FROM swarm_pruned_threads").fetchall())
    assert columns == ["thread_id", "last_step_at", "pruned_at", "input_digest"]
    assert rows == {"old-weekly": None, "new-weekly": None, "digested": "digest-a"}


@needs_pg
async def test_a_postgres_tombstone_table_from_before_digests_is_upgraded_when_the_store_opens(tmp_path: Path) -> None:
    """Its own schema (``search_path``), so the shared database's table is left as it is."""
    import psycopg
    from langgraph.checkpoint.base import empty_checkpoint

    from graphs.checkpoint import open_checkpointer, prune_checkpoints, pruned_restart

    schema = f"old_{uuid.uuid4().hex[:12]}"
    now = time.time()
    with psycopg.connect(str(PG_DSN), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(OLD_TABLE.replace("swarm_pruned_threads", f"{schema}.swarm_pruned_threads"))
        conn.execute(f"INSERT INTO {schema}.swarm_pruned_threads VALUES ('old-weekly', %s, %s)", (now - 9 * 86400, now))
    config = _config(tmp_path, "postgres")
    dsn = f"{PG_DSN}{'&' if '?' in str(PG_DSN) else '?'}options=-csearch_path%3D{schema}"
    config = config.model_copy(update={"checkpointer": config.checkpointer.model_copy(update={"dsn": dsn})})
    try:
        async with open_checkpointer(config, prune=False) as saver:
            old = await pruned_restart(saver, "old-weekly", 7, input_digest="another input", now=now)
            assert old is not None and "old-weekly's checkpoints were pruned" in old
            for digest in ("digest-older", "digest-a"):  # the newest checkpoint's digest is the one kept
                digested = {"configurable": {"thread_id": "digested", "checkpoint_ns": "", "swarm_input": digest}}
                await saver.aput(digested, empty_checkpoint(), {"source": "loop", "step": 1}, {})
            assert await prune_checkpoints(config, saver, now=now + EIGHT_DAYS_S) == ["digested"]
            assert await pruned_restart(saver, "digested", 7, input_digest="digest-b", now=now) is None
            assert await pruned_restart(saver, "digested", 7, input_digest="digest-older", now=now) is None
            assert await pruned_restart(saver, "digested", 7, input_digest="digest-a", now=now) is not None
        with psycopg.connect(str(PG_DSN), autocommit=True) as conn:
            rows = dict(conn.execute(f"SELECT thread_id, input_digest FROM {schema}.swarm_pruned_threads").fetchall())
        assert rows == {"old-weekly": None, "digested": "digest-a"}
    finally:
        with psycopg.connect(str(PG_DSN), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
