"""One run at a time of a given job id on this machine: two ``swarm ... --job-id X`` started
together both ran (and paid for) the whole job, and with two inputs the last to write won."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from providers.testing import FunctionLLM
from swarm.dispatcher import dispatch

ROOT = Path(__file__).resolve().parents[1]
APPROVE = {"approved": True, "score": 9, "issues": [], "suggestion": ""}


def _job(job_id: str, task: str = "hi") -> dict[str, Any]:
    return {"project": "swarm", "action": "delegate", "job_id": job_id, "input": {"task": task}}


async def test_a_job_id_running_in_another_process_is_refused_until_it_ends(make_context: Any, swarm_home: Path) -> None:
    calls: list[str] = []

    async def answer(messages: Any, config: Any) -> Any:
        calls.append(config.step)
        return APPROVE if config.step == "review" else "a draft"

    holder = subprocess.Popen(  # another run of job "dup-1": it holds the id's lock until told to stop
        [sys.executable, "-c", "import sys\nfrom graphs.job_lock import running\nwith running('dup-1'):\n"
                               "    print('held', flush=True)\n    sys.stdin.readline()\n"],
        cwd=ROOT, env={**os.environ, "SWARM_HOME": str(swarm_home)}, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        make = make_context(FunctionLLM(answer))
        refused = await dispatch(_job("dup-1"), make)
        assert refused["status"] == "FAILED" and refused["error"]["type"] == "StillRunning", refused["error"]
        assert "job 'dup-1' is running now in another run on this machine" in refused["error"]["message"]
        assert calls == []  # nothing was paid for twice
        other = await dispatch(_job("dup-2"), make)  # another id is not held up
        assert other["status"] == "COMPLETED"
    finally:
        holder.communicate("\n", timeout=30)
    calls.clear()
    done = await dispatch(_job("dup-1"), make)
    assert done["status"] == "COMPLETED" and calls == ["draft", "review"]


async def test_the_same_job_id_twice_at_once_in_one_process_runs_once(make_context: Any) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def answer(messages: Any, config: Any) -> Any:
        if config.step == "draft":
            started.set()
            await release.wait()
        return APPROVE if config.step == "review" else "a draft"

    make = make_context(FunctionLLM(answer))
    first = asyncio.create_task(dispatch(_job("twice-1"), make))
    await started.wait()
    second = await dispatch(_job("twice-1"), make)
    assert second["error"]["type"] == "StillRunning", second
    release.set()
    assert (await first)["status"] == "COMPLETED"
    assert (await dispatch(_job("twice-1"), make))["status"] == "COMPLETED"  # replayed, not refused


def test_without_fcntl_runs_are_kept_apart_in_the_process(monkeypatch: Any) -> None:
    """``import fcntl`` at the top of the module broke every job where there is none (Windows)."""
    import pytest

    from core.errors import StillRunning
    from graphs import job_lock

    monkeypatch.setitem(sys.modules, "fcntl", None)  # "import fcntl" raises ImportError
    assert job_lock._fcntl() is None
    with job_lock.running("nofcntl-1"):
        with pytest.raises(StillRunning):
            with job_lock.running("nofcntl-1"):
                pass
    with job_lock.running("nofcntl-1"):  # released
        pass


_PG_DSN = os.environ.get("SWARM_TEST_PG_DSN")


async def test_a_job_id_running_on_another_machine_sharing_postgres_is_refused(tmp_path: Path, monkeypatch: Any) -> None:
    """The file lock is one machine's: two workers on one PostgreSQL store both ran job X (another
    machine here: another process with a state folder of its own)."""
    import pytest
    import yaml

    if not _PG_DSN:
        pytest.skip("SWARM_TEST_PG_DSN is unset: run through scripts/test, which starts PostgreSQL (scripts/services)")
    from swarm.runtime import Runtime

    raw = yaml.safe_load((ROOT / "config.yaml").read_text())
    raw["checkpointer"] = {"kind": "postgres", "dsn": "${SWARM_TEST_PG_DSN}"}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    job_id = f"pg-dup-{os.getpid()}-{id(tmp_path)}"
    holder = subprocess.Popen(  # the other machine: its own SWARM_HOME, the same database
        [sys.executable, "-c", "import asyncio, sys\nfrom core.config import load_config\n"
                               "from graphs.checkpoint import open_checkpointer\nfrom graphs.job_lock import everywhere\n"
                               "async def main():\n"
                               f"    async with open_checkpointer(load_config({str(config)!r})) as saver:\n"
                               f"        async with everywhere(saver, {job_id!r}):\n"
                               "            print('held', flush=True)\n"
                               "            await asyncio.to_thread(sys.stdin.readline)\n"
                               "asyncio.run(main())\n"],
        cwd=ROOT, env={**os.environ, "SWARM_HOME": str(tmp_path / "other-machine")},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    calls: list[str] = []

    async def answer(messages: Any, config: Any) -> Any:
        calls.append(config.step)
        return APPROVE if config.step == "review" else "a draft"

    monkeypatch.setenv("SWARM_CONFIG", str(config))
    runtime = Runtime(providers={"llm": FunctionLLM(answer)})
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        refused = await runtime.run(_job(job_id))
        assert refused["status"] == "FAILED" and refused["error"]["type"] == "StillRunning", refused["error"]
        assert "running now on another machine that shares this PostgreSQL checkpoint store" in refused["error"]["message"]
        assert calls == []
        holder.communicate("\n", timeout=30)
        done = await runtime.run(_job(job_id))  # the other machine let go: it runs
        assert done["status"] == "COMPLETED", done["error"]
        assert (await runtime.run(_job(job_id)))["status"] == "COMPLETED"  # replayed, the lock given back
        assert calls == ["draft", "review"]
    finally:
        if holder.poll() is None:
            holder.kill()
        await runtime.aclose()


async def test_the_shared_locks_outlive_a_dropped_connection_and_a_cancelled_caller() -> None:
    """Review: after PostgreSQL dropped the lock connection, the next job failed as "PostgreSQL is
    unreachable" (the dead connection was used once more), and a caller cancelled mid-query made
    psycopg close the connection every job's lock lived on."""
    import pytest

    if not _PG_DSN:
        pytest.skip("SWARM_TEST_PG_DSN is unset: run through scripts/test, which starts PostgreSQL (scripts/services)")
    import psycopg

    from graphs.job_lock import SharedJobLocks

    mine, other = SharedJobLocks(_PG_DSN, connect_timeout=10), SharedJobLocks(_PG_DSN, connect_timeout=10)
    try:
        assert await mine.acquire("held-1")
        async with await psycopg.AsyncConnection.connect(_PG_DSN, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", (mine._conn.info.backend_pid,))
        await asyncio.sleep(0.2)
        assert await mine.acquire("next-1")  # on a new connection, not failed on the dead one
        assert not await other.acquire("held-1")  # taken again with the new connection
        waiter = asyncio.create_task(mine.acquire("cancelled-1"))
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert not await other.acquire("next-1")  # the cancelled caller closed no connection
        await mine.release("held-1")
        assert await other.acquire("held-1")
    finally:
        await mine.aclose()
        await other.aclose()
