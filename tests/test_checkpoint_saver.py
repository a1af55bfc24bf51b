"""LoopSqliteSaver: upstream's SqliteSaver schema and SQL, run on the event loop's thread.

Every check reads back through a second, independent reader (upstream's ``SqliteSaver`` or a
plain ``sqlite3`` connection on the same file), so a saver that kept rows in memory, skipped a
commit or changed the schema fails here.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.sqlite import SqliteSaver

from graphs.sqlite_saver import LoopSqliteSaver


def _checkpoint(values: dict[str, Any]) -> Any:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = values
    checkpoint["channel_versions"] = {name: 1 for name in values}
    return checkpoint


def _config(thread: str, checkpoint_id: str | None = None) -> dict[str, Any]:
    configurable: dict[str, Any] = {"thread_id": thread, "checkpoint_ns": ""}
    if checkpoint_id:
        configurable["checkpoint_id"] = checkpoint_id
    return {"configurable": configurable}


@contextlib.contextmanager
def upstream(path: Path) -> Iterator[SqliteSaver]:
    with SqliteSaver.from_conn_string(str(path)) as saver:
        yield saver


def _rows(path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql, args).fetchall()


async def test_what_it_writes_upstream_reads_back_the_same(tmp_path: Path) -> None:
    path = tmp_path / "cp.sqlite"
    first = _checkpoint({"task": "rivers", "trace": [{"step": "draft"}]})
    second = _checkpoint({"task": "rivers", "draft": "two lines", "trace": [{"step": "review"}]})
    with LoopSqliteSaver.open(str(path)) as saver:
        one = await saver.aput(_config("t1"), first, {"source": "input", "step": -1}, {})
        two = await saver.aput(one, second, {"source": "loop", "step": 0}, {})
        await saver.aput_writes(two, [("draft", "pending text"), ("trace", [{"step": "x"}])], task_id="task-a")
        ours = await saver.aget_tuple(_config("t1"))
        ours_listed = [t async for t in saver.alist(_config("t1"))]
    with upstream(path) as theirs:
        latest = theirs.get_tuple(_config("t1"))
        listed = list(theirs.list(_config("t1")))
        by_id = theirs.get_tuple(_config("t1", first["id"]))
    assert latest is not None and by_id is not None and ours is not None
    assert latest.config["configurable"]["checkpoint_id"] == second["id"]
    assert latest.checkpoint["channel_values"] == second["channel_values"]
    assert latest.metadata["source"] == "loop" and latest.metadata["step"] == 0
    assert latest.parent_config is not None
    assert latest.parent_config["configurable"]["checkpoint_id"] == first["id"]
    assert [(w[1], w[2]) for w in latest.pending_writes] == [("draft", "pending text"), ("trace", [{"step": "x"}])]
    assert by_id.checkpoint["channel_values"] == first["channel_values"]
    assert [t.config["configurable"]["checkpoint_id"] for t in listed] == [second["id"], first["id"]]
    # ...and our own reads agree with upstream's
    assert ours.checkpoint == latest.checkpoint and ours.pending_writes == latest.pending_writes
    assert [t.checkpoint for t in ours_listed] == [t.checkpoint for t in listed]


async def test_it_reads_a_database_upstream_wrote(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    checkpoint = _checkpoint({"final": "from an existing store"})
    with upstream(path) as theirs:
        stored = theirs.put(_config("old"), checkpoint, {"source": "loop", "step": 3}, {})
        theirs.put_writes(stored, [("final", "w")], task_id="task-b")
    with LoopSqliteSaver.open(str(path)) as saver:
        found = await saver.aget_tuple(_config("old"))
        await saver.adelete_thread("old")
        assert await saver.aget_tuple(_config("old")) is None
    assert found is not None
    assert found.checkpoint["channel_values"] == {"final": "from an existing store"}
    assert found.metadata["step"] == 3
    assert [(w[1], w[2]) for w in found.pending_writes] == [("final", "w")]
    assert _rows(path, "SELECT count(*) FROM checkpoints") == [(0,)]
    assert _rows(path, "SELECT count(*) FROM writes") == [(0,)]


async def test_delete_thread_leaves_other_threads(tmp_path: Path) -> None:
    path = tmp_path / "cp.sqlite"
    with LoopSqliteSaver.open(str(path)) as saver:
        for thread in ("keep", "drop"):
            stored = await saver.aput(_config(thread), _checkpoint({"task": thread}), {"step": 0}, {})
            await saver.aput_writes(stored, [("task", thread)], task_id="t")
        await saver.adelete_thread("drop")
    with upstream(path) as theirs:
        assert theirs.get_tuple(_config("drop")) is None
        kept = theirs.get_tuple(_config("keep"))
    assert kept is not None and kept.checkpoint["channel_values"] == {"task": "keep"}
    assert _rows(path, "SELECT DISTINCT thread_id FROM writes") == [("keep",)]


async def test_a_checkpoint_is_committed_when_aput_returns(tmp_path: Path) -> None:
    path = tmp_path / "cp.sqlite"
    with LoopSqliteSaver.open(str(path)) as saver, contextlib.closing(sqlite3.connect(path)) as other:
        checkpoint = _checkpoint({"task": "durable"})
        stored = await saver.aput(_config("d"), checkpoint, {"step": 0}, {})
        # no await in between: nothing could commit later on the loop's behalf
        seen = other.execute("SELECT checkpoint_id FROM checkpoints WHERE thread_id = 'd'").fetchall()
        await saver.aput_writes(stored, [("task", "w1"), ("trace", [])], task_id="task-c")
        writes = other.execute("SELECT channel FROM writes WHERE thread_id = 'd' ORDER BY idx").fetchall()
        assert not saver.conn.in_transaction
    assert seen == [(checkpoint["id"],)]
    assert writes == [("task",), ("trace",)]


def _delegation_graph(saver: Any) -> Any:
    from graphs.delegation.graph import build_graph
    from providers.testing import FunctionLLM

    verdict = {"approved": True, "score": 9, "issues": [], "suggestion": ""}

    async def answer(messages: Any, config: Any) -> Any:
        await asyncio.sleep(0.01)  # every job is mid-flight at once
        return verdict if config.step == "review" else f"draft for {messages[-1].content[-12:]}"

    return build_graph(FunctionLLM(answer), saver)


def _initial(task: str) -> dict[str, Any]:
    return {"task": task, "kind": "bulk_content", "tier": None, "primary": "p", "reviewer": "r",
            "max_revisions": 1, "trace": []}


async def test_concurrent_graph_runs_on_one_saver_each_keep_their_own_state(tmp_path: Path) -> None:
    path = tmp_path / "cp.sqlite"
    jobs = 40
    with LoopSqliteSaver.open(str(path)) as saver:
        graph = _delegation_graph(saver)
        finals = await asyncio.gather(*(
            graph.ainvoke(_initial(f"task number {i:03d}"), _config(f"job-{i}"), durability="sync")
            for i in range(jobs)
        ))
    assert all(f["final"].endswith(f"number {i:03d}") for i, f in enumerate(finals))
    with upstream(path) as theirs:
        for i in range(jobs):
            stored = theirs.get_tuple(_config(f"job-{i}"))
            assert stored is not None
            assert stored.checkpoint["channel_values"]["final"] == finals[i]["final"]
            assert stored.metadata["step"] == 2  # input, draft, review (which ends the job)
    counts = _rows(path, "SELECT count(DISTINCT thread_id), count(*) FROM checkpoints")
    assert counts == [(jobs, jobs * 4)]


async def test_a_locked_database_waits_without_blocking_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "cp.sqlite"
    with LoopSqliteSaver.open(str(path)) as saver, contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        put = asyncio.create_task(saver.aput(_config("w"), _checkpoint({"task": "w"}), {"step": 0}, {}))
        ticks = 0
        for _ in range(20):
            await asyncio.sleep(0.005)
            ticks += 1
        assert not put.done()
        assert ticks == 20  # the loop kept running other work meanwhile
        other.execute("COMMIT")
        stored = await asyncio.wait_for(put, timeout=5)
    assert stored["configurable"]["thread_id"] == "w"
    assert _rows(path, "SELECT thread_id FROM checkpoints") == [("w",)]


async def test_a_lock_held_past_the_busy_timeout_fails_the_write_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "cp.sqlite"
    with LoopSqliteSaver.open(str(path), busy_timeout_s=0.05) as saver, \
            contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            await saver.aput(_config("x"), _checkpoint({"task": "x"}), {"step": 0}, {})
        assert not saver.conn.in_transaction
        other.execute("COMMIT")
        await saver.aput(_config("x"), _checkpoint({"task": "x"}), {"step": 0}, {})  # usable again
    assert _rows(path, "SELECT count(*) FROM checkpoints") == [(1,)]


async def test_the_sqlite_checkpointer_kind_opens_this_saver_in_wal(tmp_path: Path, config_file: Path) -> None:
    import yaml

    from core.config import load_config
    from graphs.checkpoint import open_checkpointer

    raw = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    raw["checkpointer"] = {"kind": "sqlite", "path": str(tmp_path / "kind.sqlite")}
    config_file.write_text(yaml.safe_dump(raw), encoding="utf-8")
    async with open_checkpointer(load_config(config_file), prune=False) as saver:
        assert isinstance(saver, LoopSqliteSaver)
        assert saver.conn.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    assert _rows(tmp_path / "kind.sqlite", "PRAGMA journal_mode") == [("wal",)]


async def test_writes_of_concurrent_jobs_share_commits(tmp_path: Path) -> None:
    path = tmp_path / "cp.sqlite"
    with LoopSqliteSaver.open(str(path)) as saver:
        await asyncio.gather(*(
            saver.aput(_config(f"g{i}"), _checkpoint({"task": str(i)}), {"step": 0}, {}) for i in range(30)
        ))
        assert saver.writes == 30
        assert saver.commits == 1  # all 30 were issued in one loop iteration
    assert _rows(path, "SELECT count(*) FROM checkpoints") == [(30,)]


async def test_a_failing_write_fails_only_its_own_caller(tmp_path: Path) -> None:
    path = tmp_path / "cp.sqlite"
    with LoopSqliteSaver.open(str(path)) as saver:
        saver.conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON checkpoints WHEN NEW.thread_id = 'bad'"
            " BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END"
        )
        results = await asyncio.gather(
            *(saver.aput(_config(t), _checkpoint({"task": t}), {"step": 0}, {}) for t in ("a", "bad", "b")),
            return_exceptions=True,
        )
    assert isinstance(results[1], sqlite3.IntegrityError) and "refused by trigger" in str(results[1])
    assert [r["configurable"]["thread_id"] for r in (results[0], results[2])] == ["a", "b"]  # type: ignore[index]
    assert _rows(path, "SELECT thread_id FROM checkpoints ORDER BY thread_id") == [("a",), ("b",)]


async def test_a_steps_writes_commit_with_the_checkpoint_that_follows_them(tmp_path: Path) -> None:
    path = tmp_path / "cp.sqlite"
    with LoopSqliteSaver.open(str(path)) as saver:
        final = await _delegation_graph(saver).ainvoke(_initial("one job alone"), _config("solo"), durability="sync")
        commits, writes = saver.commits, saver.writes
    assert final["final"].endswith("job alone")
    assert writes == 7  # 4 checkpoints (input, start, draft, review: it ends the job) + 3 tasks' writes
    assert commits == 4  # each task's writes rode in the commit of its step's checkpoint
    assert _rows(path, "SELECT count(DISTINCT task_id) FROM writes WHERE thread_id = 'solo'") == [(3,)]


async def test_the_wal_is_checkpointed_on_a_thread_not_in_a_jobs_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import graphs.sqlite_saver as module

    monkeypatch.setattr(module, "WAL_CHECKPOINT_COMMITS", 10)
    path = tmp_path / "cp.sqlite"
    with LoopSqliteSaver.open(str(path)) as saver:
        assert saver.conn.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)  # never inside a commit
        empty_size = path.stat().st_size
        for i in range(9):
            await saver.aput(_config(f"w{i}"), _checkpoint({"task": "x" * 20_000}), {"step": 0}, {})
        assert saver.wal is not None and saver.wal.runs == 0
        assert path.stat().st_size == empty_size  # 9 commits, all still in the WAL only
        await saver.aput(_config("w9"), _checkpoint({"task": "x" * 20_000}), {"step": 0}, {})
        saver.wal.close()  # wait for the background checkpoint the 10th commit started
        assert saver.wal.runs == 1 and saver.wal.failures == 0
        assert path.stat().st_size > empty_size + 10 * 20_000  # the pages were copied into the file
    assert _rows(path, "SELECT count(*) FROM checkpoints") == [(10,)]
